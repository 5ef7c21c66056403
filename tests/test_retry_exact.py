"""Exact values of the retry decisions: reasons, events, pushback parsing, hedging steps.

:mod:`tests.test_retry_unit` checks rules that hold for any sequence; this file pins what
each rule gives for one known input: the text of every :class:`~resilientrpc.retry.Stop`
reason and budget refusal (callers read them in the final error's details), each
:class:`~resilientrpc.retry.RetryEvent` a run emits, a ``google.rpc.RetryInfo`` carried in
a ``grpc-status-details-bin`` trailer, the live-percentile window, and a hedged call's
schedule answer by answer. Values sit on both sides of each boundary. No network.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TypeAlias

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from resilientrpc.config import HedgingPolicy, RetryPolicy
from resilientrpc.retry import (
    MAX_TRANSPARENT_RETRIES,
    NO_RETRY,
    PREVIOUS_ATTEMPTS_HEADER,
    PUSHBACK_HEADER,
    Attempt,
    Budgets,
    HedgeAction,
    HedgeRun,
    LatencyWindow,
    RatioBudget,
    Retry,
    RetryEvent,
    RetryRun,
    Stop,
    Throttle,
    _Tried,
    annotated_details,
    attempt_timeout,
    capped,
    never_reached_server,
    plan,
    server_pushback,
    with_previous_attempts,
)
from tests.fakes import Clock

Code: TypeAlias = grpc.StatusCode
DETAILS = "grpc-status-details-bin"
REFUSED = "failed to connect to all addresses; last error: connection refused"
ONE = "127.0.0.1:1"
TWO = "127.0.0.1:2"


def _policy(attempts: int = 3, per_attempt: float | None = None) -> RetryPolicy:
    """Backoff 0.1 s, doubling, capped at 0.3 s; UNAVAILABLE is retryable."""
    return RetryPolicy(
        max_attempts=attempts,
        initial_backoff=0.1,
        max_backoff=0.3,
        backoff_multiplier=2.0,
        retryable_status_codes=frozenset({Code.UNAVAILABLE}),
        per_attempt_recv_timeout=per_attempt,
    )


def _status(*details: object) -> bytes:
    """A serialized ``google.rpc.Status`` whose details pack the given messages."""
    packed = []
    for message in details:
        item = any_pb2.Any()
        item.Pack(message)  # type: ignore[arg-type]
        packed.append(item)
    payload: bytes = status_pb2.Status(code=14, message="busy", details=packed).SerializeToString()
    return payload


def _retry_info(seconds: int, nanos: int) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )


# ------------------------------------------------------------------- pushback trailers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("250", 0.25),
        (b"1500", 1.5),
        (str(2**31 - 1), 2147483.647),
        (str(2**31), NO_RETRY),
        ("-0", 0.0),
        ("-1", NO_RETRY),
        (b"\xff12", NO_RETRY),
        ("12 ", NO_RETRY),
        (" 12", NO_RETRY),
        ("1e3", NO_RETRY),
    ],
)
def test_pushback_header_values(value: str | bytes, expected: object) -> None:
    assert server_pushback(((PUSHBACK_HEADER, value),)) == expected


def test_pushback_header_read_from_bytes_that_are_not_ascii() -> None:
    # undecodable bytes are replaced, not raised: the value is unparseable, "do not retry"
    assert server_pushback((("other", "x"), (PUSHBACK_HEADER, b"5\x80"))) is NO_RETRY


def test_no_trailers_is_no_pushback() -> None:
    assert server_pushback(None) is None
    assert server_pushback(()) is None
    assert server_pushback((("grpc-retry-pushback", "5"), ("other", b"1"))) is None


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [(1, 500_000_000, 1.5), (0, 250_000_000, 0.25), (2, 0, 2.0), (0, 0, 0.0), (-3, 0, None)],
)
def test_retry_info_in_status_details(seconds: int, nanos: int, expected: float | None) -> None:
    """The RetryInfo delay is read; a negative one is ignored (the policy's backoff applies)."""
    payload = _status(_retry_info(seconds, nanos))
    assert server_pushback(((DETAILS, payload),)) == expected
    # grpc hands binary trailers over as bytes; a str value is read as latin-1
    assert server_pushback(((DETAILS, payload.decode("latin-1")),)) == expected


def test_retry_info_is_found_among_other_details() -> None:
    debug = error_details_pb2.DebugInfo(detail="stack")
    payload = _status(debug, _retry_info(0, 300_000_000), _retry_info(9, 0))
    assert server_pushback(((DETAILS, payload),)) == 0.3  # the first RetryInfo


def test_status_details_without_retry_info_or_unreadable_say_nothing() -> None:
    assert server_pushback(((DETAILS, _status(error_details_pb2.DebugInfo())),)) is None
    assert server_pushback(((DETAILS, b""),)) is None
    assert server_pushback(((DETAILS, b"\xff\xff\xff"),)) is None


def test_the_pushback_header_wins_over_retry_info_in_either_order() -> None:
    details = (DETAILS, _status(_retry_info(7, 0)))
    assert server_pushback((details, (PUSHBACK_HEADER, "100"))) == 0.1
    assert server_pushback(((PUSHBACK_HEADER, "100"), details)) == 0.1
    assert server_pushback((details, (PUSHBACK_HEADER, "-1"))) is NO_RETRY


def test_the_last_status_details_trailer_is_read() -> None:
    first = (DETAILS, _status(_retry_info(7, 0)))
    last = (DETAILS, _status(_retry_info(0, 200_000_000)))
    assert server_pushback((first, last)) == 0.2


# ------------------------------------------------------------------------ small helpers


def test_never_reached_server() -> None:
    assert never_reached_server(Code.UNAVAILABLE, REFUSED)
    assert never_reached_server(Code.UNAVAILABLE, "failed to connect to all addresses")
    assert not never_reached_server(Code.UNAVAILABLE, "x failed to connect to all addresses")
    assert not never_reached_server(Code.UNAVAILABLE, None)
    assert not never_reached_server(Code.UNAVAILABLE, "")
    assert not never_reached_server(Code.DEADLINE_EXCEEDED, REFUSED)


def test_with_previous_attempts() -> None:
    assert with_previous_attempts(None, 2) == ((PREVIOUS_ATTEMPTS_HEADER, "2"),)
    metadata = (("a", "1"), (PREVIOUS_ATTEMPTS_HEADER, "1"), ("b", b"2"))
    assert with_previous_attempts(metadata, 3) == (
        ("a", "1"),
        ("b", b"2"),
        (PREVIOUS_ATTEMPTS_HEADER, "3"),
    )


@pytest.mark.parametrize(
    ("timeout", "cap", "expected"),
    [(None, None, None), (2.0, None, 2.0), (None, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 2.0, 1.0)],
)
def test_capped(timeout: float | None, cap: float | None, expected: float | None) -> None:
    assert capped(timeout, cap) == expected


def test_annotated_details() -> None:
    tried = [_Tried(ONE, Code.UNAVAILABLE), _Tried(None, Code.INTERNAL)]
    assert annotated_details("boom", tried, "it stopped") == (
        "boom [resilientrpc: 2 attempts: 127.0.0.1:1 UNAVAILABLE, INTERNAL; it stopped]"
    )
    assert annotated_details(None, tried[:1], "r") == (
        "[resilientrpc: 1 attempt: 127.0.0.1:1 UNAVAILABLE; r]"
    )
    assert annotated_details("", [_Tried("", Code.ABORTED)], "r") == (
        "[resilientrpc: 1 attempt: ABORTED; r]"
    )


# --------------------------------------------------------------------------------- plan


def _plan(
    attempt: Attempt,
    *,
    attempts: int = 1,
    transparent: int = 0,
    backoff_retry: int = 1,
    now: float = 10.0,
    deadline: float | None = None,
    policy: RetryPolicy | None = None,
) -> Retry | Stop:
    return plan(
        policy or _policy(),
        attempt,
        attempts=attempts,
        transparent=transparent,
        backoff_retry=backoff_retry,
        now=now,
        deadline=deadline,
        rng=lambda: 0.5,
    )


def test_plan_stop_reasons() -> None:
    assert _plan(Attempt(Code.OK)) == Stop("the call succeeded")
    assert _plan(Attempt(Code.UNAVAILABLE, committed=True)) == Stop(
        "committed: response messages had arrived, the requests outgrew the buffer, "
        "or the request iterator raised"
    )
    assert _plan(Attempt(Code.INTERNAL)) == Stop("INTERNAL is not a retryable status code")
    assert _plan(Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "-1"),))) == (
        Stop("the server's pushback said not to retry")
    )
    assert _plan(Attempt(Code.UNAVAILABLE), attempts=3) == Stop("maxAttempts (3) reached")
    assert _plan(Attempt(Code.UNAVAILABLE), attempts=2) == Retry(0.05)


def test_plan_backoff_step_and_random_draw() -> None:
    assert _plan(Attempt(Code.UNAVAILABLE), backoff_retry=2) == Retry(0.1)
    assert _plan(Attempt(Code.UNAVAILABLE), backoff_retry=3) == Retry(0.15)  # 0.5 x the cap
    verdict = plan(
        _policy(),
        Attempt(Code.UNAVAILABLE),
        attempts=1,
        transparent=0,
        backoff_retry=1,
        now=0.0,
        deadline=None,
        rng=lambda: 0.25,
    )
    assert verdict == Retry(0.025, transparent=False, pushback=False)


def test_a_timed_out_attempt_is_retried_whatever_its_code() -> None:
    attempt = Attempt(Code.DEADLINE_EXCEEDED, timed_out=True)
    assert _plan(attempt) == Retry(0.05)


def test_plan_pushback_at_and_past_the_longest_server_delay() -> None:
    def pushed(milliseconds: int) -> Attempt:
        return Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, str(milliseconds)),))

    assert _plan(pushed(60_000)) == Retry(60.0, pushback=True)
    assert _plan(pushed(60_001)) == Stop("the server asked for a retry in 60.001 s, more than 60 s")
    assert _plan(pushed(0)) == Retry(0.0, pushback=True)
    # maxAttempts is checked before the size of the pushback
    assert _plan(pushed(60_001), attempts=3) == Stop("maxAttempts (3) reached")


def test_plan_against_the_deadline() -> None:
    # backoff 0.05 s at 10.0: a deadline at 10.05 would pass before the retry
    assert _plan(Attempt(Code.UNAVAILABLE), deadline=10.05) == Stop(
        "the deadline would pass before a retry in 50 ms"
    )
    assert _plan(Attempt(Code.UNAVAILABLE), deadline=10.0501) == Retry(0.05)
    pushed = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "1234"),))
    assert _plan(pushed, deadline=11.0) == Stop("the deadline would pass before a retry in 1234 ms")


def test_plan_transparent_resends() -> None:
    never = Attempt(Code.UNAVAILABLE, REFUSED, can_fail_over=True)
    assert _plan(never, attempts=3) == Retry(0.0, transparent=True)
    last = MAX_TRANSPARENT_RETRIES - 1
    assert _plan(never, transparent=last, attempts=3) == Retry(0.0, transparent=True)
    # out of transparent resends: an ordinary retry, counted against maxAttempts
    assert _plan(never, transparent=MAX_TRANSPARENT_RETRIES) == Retry(0.05)
    assert _plan(never, transparent=MAX_TRANSPARENT_RETRIES, attempts=3) == Stop(
        "maxAttempts (3) reached"
    )
    # not without a driver that can fail over, nor at or past the deadline
    assert _plan(Attempt(Code.UNAVAILABLE, REFUSED), attempts=3) == Stop("maxAttempts (3) reached")
    assert _plan(never, attempts=3, deadline=10.0) == Stop("maxAttempts (3) reached")
    assert _plan(never, attempts=3, deadline=10.001) == Retry(0.0, transparent=True)
    # a refused connection is resent even when UNAVAILABLE is not retryable
    other = RetryPolicy(
        max_attempts=2,
        initial_backoff=0.1,
        max_backoff=0.1,
        backoff_multiplier=1.0,
        retryable_status_codes=frozenset({Code.ABORTED}),
    )
    assert _plan(never, policy=other) == Retry(0.0, transparent=True)


# ------------------------------------------------------------------------------ budgets


def test_throttle_exact() -> None:
    throttle = Throttle(3, 0.5)
    assert (throttle.max_tokens, throttle.token_ratio, throttle.threshold) == (3.0, 0.5, 1.5)
    assert throttle.token_count == 3.0
    throttle.succeeded()
    assert throttle.token_count == 3.0  # capped
    throttle.failed()
    assert throttle.token_count == 2.0
    assert throttle.permits()
    throttle.succeeded()
    assert throttle.token_count == 2.5
    for _ in range(4):
        throttle.failed()
    assert throttle.token_count == 0.0  # floored
    assert not throttle.permits()
    throttle.succeeded()
    throttle.succeeded()
    throttle.succeeded()
    assert throttle.token_count == 1.5
    assert not throttle.permits()  # at the threshold: none


def test_budgets_record_and_refusal_texts() -> None:
    assert not Budgets()
    assert Budgets(Throttle(2, 1))
    assert Budgets(budget=RatioBudget(0.1, 1, 10.0, Clock()))
    Budgets().called()  # no budget: nothing to count
    Budgets().record(Code.UNAVAILABLE, True)
    assert Budgets().refusal() is None

    throttle = Throttle(4, 0.5)
    budgets = Budgets(throttle)
    budgets.record(Code.UNAVAILABLE, False)
    assert throttle.token_count == 4.0  # not a failure by A6's rule
    budgets.record(Code.INTERNAL, True)
    budgets.record(Code.UNAVAILABLE, True)
    assert throttle.token_count == 2.0
    assert budgets.refusal() == (
        "retries throttled: 2 of 4 tokens left (retryThrottling sends none at or below 2)"
    )
    budgets.record(Code.OK, True)
    assert throttle.token_count == 2.5
    assert budgets.refusal() is None

    clock = Clock(now=0.0)
    ratio = RatioBudget(0.25, 0, 10.0, clock)
    budgets = Budgets(budget=ratio)
    for _ in range(4):
        budgets.called()
    assert budgets.refusal() is None
    assert budgets.refusal() == (
        "retry budget spent: at most 0.25 retries per call plus 0/s over 10 s (retryBudget)"
    )


def test_a_throttle_refusal_spends_nothing_from_the_ratio_budget() -> None:
    throttle = Throttle(2, 1)
    throttle.failed()
    clock = Clock(now=0.0)
    ratio = RatioBudget(0.0, 1, 1.0, clock)  # one retry a second
    budgets = Budgets(throttle, ratio)
    assert budgets.refusal() is not None
    throttle.succeeded()
    assert budgets.refusal() is None  # the ratio budget's one retry was still there
    assert budgets.refusal() is not None


def test_ratio_budget_window_starts_at_the_clock() -> None:
    # slots of 2 s from a clock at 100 s: the first retry leaves the window at 120 s
    clock = Clock(now=100.0)
    budget = RatioBudget(0.0, 0.05, 20.0, clock)  # one retry per 20 s
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now = 119.9
    assert not budget.try_spend()
    clock.now = 120.0
    assert budget.try_spend()


def test_ratio_budget_counts_by_slot() -> None:
    clock = Clock(now=0.0)
    budget = RatioBudget(1.0, 0, 10.0, clock)  # slots of 1 s
    budget.called()
    clock.now = 5.5
    budget.called()
    assert budget.try_spend()
    clock.now = 9.9
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now = 10.0  # the call at 0.0 left the window, the retries at 5.5 and 9.9 did not
    budget.called()
    assert not budget.try_spend()
    clock.now = 15.5  # the call and retry of slot 5 left: one call, the retry at 9.9
    assert not budget.try_spend()
    clock.now = 19.9  # the retry of slot 9 left
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now = 40.0  # everything left at once
    budget.called()
    assert budget.try_spend()
    assert not budget.try_spend()


# ------------------------------------------------------------------------ a retry run


class _Events(list[RetryEvent]):
    def __call__(self, event: RetryEvent) -> None:
        self.append(event)


def _run(
    policy: RetryPolicy | None = None,
    budgets: Budgets | None = None,
    *,
    deadline: float | None = None,
    clock: Clock | None = None,
    draw: float = 1.0,
) -> tuple[RetryRun, _Events]:
    events = _Events()
    run = RetryRun(
        policy or _policy(),
        budgets or Budgets(),
        deadline=deadline,
        clock=clock or Clock(),
        rng=lambda: draw,
        events=events,
    )
    return run, events


def test_a_run_to_maxattempts_events_and_annotation() -> None:
    run, events = _run()
    assert run.step(Attempt(Code.UNAVAILABLE, "a", address=ONE)) == 0.1
    assert (run.previous, run.attempts, run.final, run.reason) == (1, 1, None, "")
    assert run.step(Attempt(Code.UNAVAILABLE, "b", address=TWO)) == 0.2
    last = Attempt(Code.UNAVAILABLE, "c", address=ONE)
    assert run.step(last) is None
    assert run.final is last
    assert run.reason == "maxAttempts (3) reached"
    assert run.previous == 3
    assert run.tried_addresses == frozenset({ONE, TWO})
    assert events == [
        RetryEvent("retry", 1, Code.UNAVAILABLE, ONE, delay=0.1),
        RetryEvent("retry", 2, Code.UNAVAILABLE, TWO, delay=0.2),
        RetryEvent("stopped", 3, Code.UNAVAILABLE, ONE, reason="maxAttempts (3) reached"),
    ]
    assert run.annotate("c") == (
        "c [resilientrpc: 3 attempts: 127.0.0.1:1 UNAVAILABLE, 127.0.0.1:2 UNAVAILABLE,"
        " 127.0.0.1:1 UNAVAILABLE; maxAttempts (3) reached]"
    )


def test_a_run_that_succeeds() -> None:
    run, events = _run()
    assert run.step(Attempt(Code.UNAVAILABLE, address=ONE)) == 0.1
    ok = Attempt(Code.OK, address=TWO)
    assert run.step(ok) is None
    assert run.final is ok
    assert run.reason == ""
    assert [event.kind for event in events] == ["retry"]
    assert run.tried_addresses == frozenset({ONE, TWO})


def test_a_run_without_addresses_or_listener() -> None:
    run = RetryRun(_policy(), Budgets(), deadline=None, clock=Clock(), rng=lambda: 1.0)
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.1
    assert run.step(Attempt(Code.INTERNAL)) is None
    assert run.tried_addresses == frozenset()
    assert run.reason == "INTERNAL is not a retryable status code"


def test_a_pushback_resets_the_backoff() -> None:
    run, _ = _run(_policy(attempts=5))
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.1
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.2
    pushed = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "40"),))
    assert run.step(pushed) == 0.04
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.1  # the backoff starts again


def test_transparent_resends_do_not_step_the_backoff() -> None:
    run, events = _run()
    never = Attempt(Code.UNAVAILABLE, REFUSED, address=ONE, can_fail_over=True)
    assert run.step(Attempt(Code.UNAVAILABLE, address=TWO)) == 0.1
    assert run.step(never) == 0.0
    assert (run.attempts, run.transparent, run.previous) == (1, 1, 2)
    assert run.step(Attempt(Code.UNAVAILABLE, address=TWO)) == 0.2
    assert events[1] == RetryEvent("transparent", 1, Code.UNAVAILABLE, ONE)


def test_transparent_resends_are_bounded() -> None:
    run, _ = _run(_policy(attempts=2))
    never = Attempt(Code.UNAVAILABLE, REFUSED, can_fail_over=True)
    for count in range(1, MAX_TRANSPARENT_RETRIES + 1):
        assert run.step(never) == 0.0
        assert (run.attempts, run.transparent) == (0, count)
    assert run.step(never) == 0.1  # counted now, an ordinary retry
    assert (run.attempts, run.transparent) == (1, MAX_TRANSPARENT_RETRIES)
    assert run.step(never) is None
    assert run.reason == "maxAttempts (2) reached"


def test_a_refused_retry_is_an_event_and_the_reason() -> None:
    throttle = Throttle(2, 1)
    run, events = _run(budgets=Budgets(throttle))
    assert run.step(Attempt(Code.UNAVAILABLE, address=ONE)) is None
    reason = "retries throttled: 1 of 2 tokens left (retryThrottling sends none at or below 1)"
    assert run.reason == reason
    assert events == [
        RetryEvent("refused", 1, Code.UNAVAILABLE, ONE, reason=reason),
        RetryEvent("stopped", 1, Code.UNAVAILABLE, ONE, reason=reason),
    ]


def test_a_transparent_resend_asks_no_budget() -> None:
    throttle = Throttle(2, 1)
    throttle.failed()
    run, events = _run(budgets=Budgets(throttle))
    assert run.step(Attempt(Code.UNAVAILABLE, REFUSED, can_fail_over=True)) == 0.0
    assert [event.kind for event in events] == ["transparent"]


def test_budgets_hear_of_each_attempt() -> None:
    throttle = Throttle(10, 0.5)
    run, _ = _run(_policy(attempts=5), Budgets(throttle))
    run.step(Attempt(Code.UNAVAILABLE))
    assert throttle.token_count == 9.0
    run.step(Attempt(Code.DEADLINE_EXCEEDED, timed_out=True))
    assert throttle.token_count == 8.0
    run.step(Attempt(Code.UNAVAILABLE, REFUSED, can_fail_over=True))  # transparent: nothing
    assert throttle.token_count == 8.0
    run.step(Attempt(Code.OK))
    assert throttle.token_count == 8.5


def test_a_failing_listener_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def listener(event: RetryEvent) -> None:
        raise RuntimeError("listener")

    run = RetryRun(_policy(), Budgets(), deadline=None, clock=Clock(), events=listener)
    with caplog.at_level(logging.ERROR, logger="resilientrpc.retry"):
        assert run.step(Attempt(Code.UNAVAILABLE)) is not None
    assert [record.getMessage() for record in caplog.records] == [
        f"retry event listener {listener!r} raised"
    ]


def test_a_run_stepped_from_another_thread() -> None:
    # a future's attempts end on whichever thread grpc runs their callbacks
    run, _ = _run()
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.1
    delays: list[float | None] = []
    worker = threading.Thread(target=lambda: delays.append(run.step(Attempt(Code.UNAVAILABLE))))
    worker.start()
    worker.join(10.0)
    assert delays == [0.2]
    assert run.step(Attempt(Code.UNAVAILABLE)) is None


def test_the_asyncio_step() -> None:
    events = _Events()

    async def scenario() -> list[float | None]:
        run = RetryRun(
            _policy(),
            Budgets(),
            deadline=None,
            clock=Clock(),
            rng=lambda: 1.0,
            events=events,
            asynchronous=True,
        )
        delays = [await run.astep(Attempt(Code.UNAVAILABLE, address=ONE)) for _ in range(3)]
        assert run.reason == "maxAttempts (3) reached"
        return delays

    assert asyncio.run(scenario()) == [0.1, 0.2, None]
    assert [event.kind for event in events] == ["retry", "retry", "stopped"]


def test_attempt_timeout() -> None:
    assert attempt_timeout(None, 10.0, None) == (None, False)
    assert attempt_timeout(None, 10.0, 2.0) == (2.0, True)
    assert attempt_timeout(11.5, 10.0, 2.0) == (1.5, False)
    assert attempt_timeout(12.0, 10.0, 2.0) == (2.0, False)  # equal: the call's own deadline
    assert attempt_timeout(13.0, 10.0, None) == (3.0, False)
    assert attempt_timeout(13.0, 14.0, None) == (0.0, False)
    assert attempt_timeout(13.0, 10.0, 2.0) == (2.0, True)


def test_the_deadline_stops_a_run_by_the_clock() -> None:
    clock = Clock(now=10.0)
    run, _ = _run(deadline=10.15, clock=clock)
    assert run.step(Attempt(Code.UNAVAILABLE)) == 0.1
    clock.now = 10.1
    assert run.step(Attempt(Code.UNAVAILABLE)) is None
    assert run.reason == "the deadline would pass before a retry in 200 ms"


# ------------------------------------------------------------------------------ hedging


def test_latency_window_percentiles() -> None:
    window = LatencyWindow(90.0)
    assert window.quantile == 0.9
    for value in range(19):
        window.add(float(value))
    assert window.percentile() is None  # 19 samples
    window.add(19.0)
    assert window.percentile() == 18.0  # index int(0.9 * 20) = 18
    window.add(100.0)  # cached until REFRESH more samples
    assert window.percentile() == 18.0
    for _ in range(48):
        window.add(100.0)
    assert window.percentile() == 18.0  # 49 since the sort
    window.add(100.0)
    assert window.percentile() == 100.0  # 50: sorted again


def test_latency_window_keeps_the_last_thousand() -> None:
    window = LatencyWindow(10.0)
    for value in range(1000):
        window.add(float(value))
    assert window.percentile() == 100.0
    for _ in range(1000):
        window.add(5000.0)
    assert window.percentile() == 5000.0  # the first thousand are gone
    top = LatencyWindow(100.0)  # the index is clamped to the last sample
    for value in range(20):
        top.add(float(value))
    assert top.percentile() == 19.0


def _hedging(attempts: int = 3, non_fatal: frozenset[Code] | None = None) -> HedgingPolicy:
    return HedgingPolicy(
        max_attempts=attempts,
        hedging_delay=0.05,
        non_fatal_status_codes=frozenset({Code.UNAVAILABLE}) if non_fatal is None else non_fatal,
    )


def test_hedge_delay_from_the_window() -> None:
    window = LatencyWindow(50.0)
    run = HedgeRun(_hedging(), Budgets(), window)
    assert run.delay() == 0.05
    for _ in range(20):
        window.add(0.2)
    assert run.delay() == 0.2
    assert run.next_delay() == 0.2


def test_a_hedged_call_that_loses() -> None:
    run = HedgeRun(_hedging(), Budgets())
    assert (run.sent, run.outstanding, run.stopped, run.pushback_delay) == (0, 0, "", None)
    assert run.may_send() is None
    run.on_send()
    assert run.next_delay() == 0.05
    assert run.may_send() is None
    run.on_send()
    assert (run.sent, run.outstanding) == (2, 2)
    assert run.on_answer(Attempt(Code.UNAVAILABLE, address=ONE)) is HedgeAction.SEND_NOW
    assert run.outstanding == 1
    run.on_send()
    assert run.next_delay() is None
    assert run.may_send() == "maxAttempts (3) reached"
    assert not run.may_send_more()
    assert run.on_answer(Attempt(Code.UNAVAILABLE, address=TWO)) is HedgeAction.WAIT
    assert run.on_answer(Attempt(Code.UNAVAILABLE)) is HedgeAction.LOSE
    assert run.outstanding == 0
    assert run.reason() == "all 3 hedged attempts failed"
    assert run.annotate("x") == (
        "x [resilientrpc: 3 attempts: 127.0.0.1:1 UNAVAILABLE, 127.0.0.1:2 UNAVAILABLE,"
        " UNAVAILABLE; all 3 hedged attempts failed]"
    )


def test_a_hedged_call_ends_on_success_or_a_fatal_code() -> None:
    for code in (Code.OK, Code.INTERNAL):
        throttle = Throttle(10, 0.5)
        run = HedgeRun(_hedging(), Budgets(throttle))
        run.on_send()
        run.on_send()
        assert run.on_answer(Attempt(code)) is HedgeAction.FINAL
        assert run.outstanding == 1
        assert throttle.token_count == 10.0  # a fatal code takes no token; OK is capped
    throttle = Throttle(10, 0.5)
    run = HedgeRun(_hedging(), Budgets(throttle))
    run.on_send()
    assert run.on_answer(Attempt(Code.UNAVAILABLE)) is HedgeAction.SEND_NOW
    assert throttle.token_count == 9.0  # a non-fatal code does
    run.on_send()
    assert run.on_answer(Attempt(Code.OK)) is HedgeAction.FINAL
    assert throttle.token_count == 9.5  # and a success gives tokenRatio back


def test_hedge_pushbacks() -> None:
    run = HedgeRun(_hedging(4), Budgets())
    run.on_send()
    pushed = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "300"),))
    assert run.on_answer(pushed) is HedgeAction.WAIT
    assert run.pushback_delay == 0.3
    assert run.next_delay() == 0.3  # once
    assert run.pushback_delay is None
    assert run.next_delay() == 0.05

    run = HedgeRun(_hedging(4), Budgets())
    run.on_send()
    run.on_send()
    stop = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "-1"),))
    assert run.on_answer(stop) is HedgeAction.WAIT  # one still out
    assert run.stopped == "the server's pushback said not to hedge again"
    assert run.may_send() == "the server's pushback said not to hedge again"
    assert run.next_delay() is None
    assert run.reason() == "the server's pushback said not to hedge again"
    assert run.on_answer(Attempt(Code.UNAVAILABLE)) is HedgeAction.LOSE

    run = HedgeRun(_hedging(4), Budgets())
    run.on_send()
    far = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "60001"),))
    assert run.on_answer(far) is HedgeAction.LOSE
    assert run.stopped == "the server asked for 60.001 s, more than 60 s"
    assert run.pushback_delay is None

    run = HedgeRun(_hedging(4), Budgets())
    run.on_send()
    edge = Attempt(Code.UNAVAILABLE, trailing_metadata=((PUSHBACK_HEADER, "60000"),))
    assert run.on_answer(edge) is HedgeAction.WAIT
    assert run.pushback_delay == 60.0


def test_hedges_spend_the_budget_after_the_first() -> None:
    clock = Clock(now=0.0)
    ratio = RatioBudget(0.0, 1, 1.0, clock)  # one hedge a second
    run = HedgeRun(_hedging(4), Budgets(budget=ratio))
    assert run.may_send() is None  # the first attempt spends nothing
    run.on_send()
    assert run.may_send() is None
    run.on_send()
    refusal = "retry budget spent: at most 0 retries per call plus 1/s over 1 s (retryBudget)"
    assert run.may_send() == refusal
    assert run.stopped == refusal
    clock.now = 5.0
    assert run.may_send() == refusal  # refused once, stopped for good
    assert run.reason() == refusal


def test_events_name_the_method_of_the_run() -> None:
    heard: list[RetryEvent] = []
    run = RetryRun(
        _policy(2), Budgets(), deadline=None, clock=Clock(), events=heard.append, method="/s/M"
    )
    run.step(Attempt(Code.UNAVAILABLE, "x", address="a"))
    run.step(Attempt(Code.UNAVAILABLE, "x", address="b"))
    assert [(e.kind, e.method) for e in heard] == [("retry", "/s/M"), ("stopped", "/s/M")]


def test_tried_addresses_mark_only_those_never_reached() -> None:
    never = "failed to connect to all addresses; last error: refused"
    run = RetryRun(_policy(5), Budgets(), deadline=None, clock=Clock())
    run.step(Attempt(Code.UNAVAILABLE, never, address="a", can_fail_over=True))
    run.step(Attempt(Code.UNAVAILABLE, "reached", address="b", can_fail_over=True))
    run.step(Attempt(Code.UNAVAILABLE, never, address=None, can_fail_over=True))
    tried = run.tried_addresses
    assert sorted(tried) == ["a", "b"]
    assert tried.unreachable == frozenset({"a"})
