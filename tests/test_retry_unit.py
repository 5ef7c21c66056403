"""Property tests of the retry decisions (gRFC A6): random policies and failure sequences.

:class:`resilientrpc.retry.RetryRun` is stepped by hand with a fake clock and a scripted
random source, and checked against the rules it must keep whatever happens: attempts
within ``maxAttempts`` (plus the bounded transparent resends), no retry of a
non-retryable code, of a committed attempt, or past the deadline, backoff within A6's
full-jitter bound (reset by a pushback). The budgets are checked against small models
written from their specification (A6's token bucket; the ratio budget's window), the
hedging schedule against maxAttempts and its stop rules, and failover picks against
real :class:`~resilientrpc.endpoint.Endpoint` objects. No network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilientrpc.config import HedgingPolicy, RetryPolicy
from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Picker
from resilientrpc.retry import (
    MAX_TRANSPARENT_RETRIES,
    NO_RETRY,
    PUSHBACK_HEADER,
    Attempt,
    Budgets,
    HedgeAction,
    HedgeRun,
    RatioBudget,
    RetryRun,
    Throttle,
    backoff,
    server_pushback,
)
from tests.fakes import ready_endpoints

Code: TypeAlias = grpc.StatusCode
_FAILURES = [code for code in Code if code is not Code.OK]
_NEVER_REACHED = "failed to connect to all addresses; last error: refused"


def _policy(attempts: int, initial: float, maximum: float, multiplier: float) -> RetryPolicy:
    """A policy that retries UNAVAILABLE only."""
    return RetryPolicy(
        max_attempts=attempts,
        initial_backoff=initial,
        max_backoff=maximum,
        backoff_multiplier=multiplier,
        retryable_status_codes=frozenset({Code.UNAVAILABLE}),
    )


policies = st.builds(
    lambda attempts, initial, extra, multiplier, codes, per_attempt: RetryPolicy(
        max_attempts=attempts,
        initial_backoff=initial,
        max_backoff=initial + extra,
        backoff_multiplier=multiplier,
        retryable_status_codes=frozenset(codes),
        per_attempt_recv_timeout=per_attempt,
    ),
    st.integers(2, 5),
    st.floats(0.001, 2.0),
    st.floats(0.0, 5.0),
    st.floats(1.0, 4.0),
    st.sets(st.sampled_from(_FAILURES), max_size=4).map(lambda c: {Code.UNAVAILABLE, *c}),
    st.none() | st.floats(0.01, 1.0),
)

pushbacks = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.integers(0, 5000).map(str),
    st.sampled_from(["-1", "-250", "abc", "", "007", "1.5", str(2**31)]),
)


@dataclass(frozen=True)
class Failure:
    """One scripted attempt outcome."""

    code: Code
    pushback: str | None
    committed: bool
    never_reached: bool
    timed_out: bool
    advance: float  # seconds the attempt took

    def attempt(self) -> Attempt:
        trailers = () if self.pushback is None else ((PUSHBACK_HEADER, self.pushback),)
        return Attempt(
            self.code,
            _NEVER_REACHED if self.never_reached else "scripted",
            trailers,
            address=f"127.0.0.1:{1000 + int(self.advance * 10)}",
            committed=self.committed,
            timed_out=self.timed_out,
            can_fail_over=True,
        )


failures = st.builds(
    Failure,
    # mostly retryable failures, so that runs often reach maxAttempts and the deadline
    st.sampled_from([*_FAILURES, Code.OK, *[Code.UNAVAILABLE] * 20]),
    pushbacks,
    st.sampled_from([False, False, False, True]),
    st.sampled_from([False, False, True]),
    st.sampled_from([False, False, False, True]),
    st.floats(0.0, 2.0),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scripted(draws: list[float]) -> Callable[[], float]:
    values = iter(draws)
    return lambda: next(values, 0.5)


def _is_transparent(failure: Failure) -> bool:
    return failure.code is Code.UNAVAILABLE and failure.never_reached


@settings(max_examples=300, deadline=None)
@given(
    policies,
    st.lists(failures, min_size=1, max_size=14),
    st.none() | st.floats(0.0, 20.0),
    st.lists(st.floats(0.0, 0.999), min_size=14, max_size=14),
)
def test_a_retry_run_keeps_a6_rules(
    policy: RetryPolicy, script: list[Failure], timeout: float | None, draws: list[float]
) -> None:
    clock = Clock()
    deadline = None if timeout is None else clock.now + timeout
    run = RetryRun(policy, Budgets(), deadline=deadline, clock=clock, rng=_scripted(list(draws)))
    counted = transparent = 0
    backoff_step = 1
    draw = iter(draws)
    for failure in script:
        attempt = failure.attempt()
        clock.now += failure.advance
        resend = _is_transparent(failure) and transparent < MAX_TRANSPARENT_RETRIES
        counted += 0 if resend else 1
        delay = run.step(attempt)
        assert run.attempts == counted <= policy.max_attempts
        assert len(run.tried) <= policy.max_attempts + MAX_TRANSPARENT_RETRIES
        if delay is None:
            assert run.final is attempt
            break
        # a retry: never of a success, a committed attempt, past the deadline
        assert failure.code is not Code.OK
        assert not failure.committed
        if deadline is not None:
            assert clock.now < deadline
        if resend:
            assert delay == 0.0
            transparent += 1
            continue
        # never of a non-retryable code, nor against a "do not retry" pushback
        assert failure.code in policy.retryable_status_codes or failure.timed_out
        pushed = server_pushback(attempt.trailing_metadata)
        assert pushed is not NO_RETRY
        assert counted < policy.max_attempts
        if deadline is not None:
            assert clock.now + delay < deadline
        if isinstance(pushed, float):
            assert delay == pushed
            backoff_step = 1  # A6: a pushback resets the backoff
        else:
            ceiling = min(
                policy.initial_backoff * policy.backoff_multiplier ** (backoff_step - 1),
                policy.max_backoff,
            )
            assert 0.0 <= delay <= ceiling
            assert delay == pytest.approx(next(draw) * ceiling, rel=1e-12, abs=0)
            backoff_step += 1
        clock.now += delay
    else:
        assert run.final is None  # the script ran out while the run still wanted more


@given(failures)
def test_a_stop_verdict_holds_for_every_first_failure(failure: Failure) -> None:
    """The first failure alone: a non-retryable, committed or pushed-back one is final."""
    policy = _policy(3, 0.1, 1.0, 2.0)
    delay = RetryRun(policy, Budgets(), deadline=None, clock=Clock()).step(failure.attempt())
    final = (
        failure.code is Code.OK
        or failure.committed
        or (
            not _is_transparent(failure)
            and (
                (failure.code is not Code.UNAVAILABLE and not failure.timed_out)
                or server_pushback(failure.attempt().trailing_metadata) is NO_RETRY
            )
        )
    )
    assert (delay is None) is final


@pytest.mark.parametrize("value", ["-1", "-250", "abc", "", "1.5", "007", str(2**31), "+5"])
def test_a_negative_or_invalid_pushback_stops(value: str) -> None:
    policy = _policy(5, 0.1, 1.0, 2.0)
    run = RetryRun(policy, Budgets(), deadline=None, clock=Clock())
    assert run.step(Attempt(Code.UNAVAILABLE, "x", ((PUSHBACK_HEADER, value),))) is None
    assert "pushback" in run.reason


def test_backoff_is_full_jitter_capped() -> None:
    policy = _policy(5, 0.1, 0.5, 3.0)
    assert [backoff(policy, n, lambda: 1.0) for n in (1, 2, 3)] == pytest.approx([0.1, 0.3, 0.5])
    assert backoff(policy, 2, lambda: 0.5) == pytest.approx(0.15)
    assert backoff(policy, 7, lambda: 0.0) == 0.0


# ------------------------------------------------------------------------------ budgets


@settings(max_examples=200)
@given(
    st.integers(1, 20),
    st.floats(0.01, 2.0),
    st.lists(st.sampled_from([Code.OK, Code.UNAVAILABLE, Code.INTERNAL]), max_size=60),
)
def test_throttle_is_a6_token_bucket(max_tokens: int, ratio: float, codes: list[Code]) -> None:
    """Tokens start full; a retryable failure takes 1, a success gives ``tokenRatio``
    (capped); retries only while tokens > maxTokens / 2. Driven through RetryRun as a
    driver does: each call's first failure feeds a run."""
    throttle = Throttle(max_tokens, ratio)
    budgets = Budgets(throttle)
    policy = _policy(5, 0.01, 0.01, 1.0)
    tokens = float(max_tokens)
    for code in codes:
        if code is Code.OK:
            budgets.record(code, False)
            tokens = min(tokens + ratio, max_tokens)
            assert throttle.token_count == pytest.approx(tokens)
            continue
        run = RetryRun(policy, budgets, deadline=None, clock=Clock())
        delay = run.step(Attempt(code, "x"))
        if code is Code.UNAVAILABLE:
            tokens = max(tokens - 1.0, 0.0)
            assert (delay is not None) is (tokens > max_tokens / 2)
            if delay is None:
                assert "retries throttled" in run.reason
        else:
            assert delay is None
        assert throttle.token_count == pytest.approx(tokens)
        assert throttle.permits() is (tokens > max_tokens / 2)


def test_a_do_not_retry_pushback_takes_a_token_whatever_the_code() -> None:
    # A6, "Throttling Retry Attempts and Hedged RPCs": the RPCs counted as failures are
    # those failing with a retryable or non-fatal code, "or that receive a pushback
    # response indicating not to retry". (grpc core counts retryable codes only; the
    # project follows the proposal's text.)
    throttle = Throttle(10, 1)
    policy = _policy(3, 0.01, 0.01, 1.0)
    run = RetryRun(policy, Budgets(throttle), deadline=None, clock=Clock())
    run.step(Attempt(Code.INTERNAL, "x", ((PUSHBACK_HEADER, "-1"),)))
    assert throttle.token_count == 9
    run = RetryRun(policy, Budgets(throttle), deadline=None, clock=Clock())
    run.step(Attempt(Code.INTERNAL, "x"))  # non-retryable, no pushback: no token
    assert throttle.token_count == 9


def test_a_transparent_resend_takes_no_token() -> None:
    throttle = Throttle(4, 1)
    policy = _policy(2, 0.01, 0.01, 1.0)
    run = RetryRun(policy, Budgets(throttle), deadline=None, clock=Clock())
    attempt = Attempt(Code.UNAVAILABLE, _NEVER_REACHED, address="a", can_fail_over=True)
    assert run.step(attempt) == 0.0
    assert throttle.token_count == 4
    assert run.attempts == 0


class _Window:
    """The ratio budget's specification: events in the last ten slots of ttl / 10."""

    def __init__(self, ratio: float, per_second: float, ttl: float) -> None:
        self.ratio, self.per_second, self.ttl = ratio, per_second, ttl
        self.span = ttl / RatioBudget.BUCKETS
        self.calls: list[int] = []
        self.retries: list[int] = []

    def _live(self, slots: list[int], now: float) -> int:
        current = math.floor(now / self.span)
        return sum(1 for slot in slots if current - RatioBudget.BUCKETS < slot <= current)

    def spend(self, now: float) -> bool:
        allowed = self.per_second * self.ttl + self.ratio * self._live(self.calls, now)
        if self._live(self.retries, now) + 1 > allowed:
            return False
        self.retries.append(math.floor(now / self.span))
        return True


@settings(max_examples=200)
@given(
    st.floats(0.0, 2.0),
    st.integers(0, 3),
    st.sampled_from([1.0, 2.0, 10.0]),
    st.lists(st.tuples(st.booleans(), st.floats(0.0, 3.0)), max_size=80),
)
def test_ratio_budget_window_arithmetic(
    ratio: float, per_second: int, ttl: float, events: list[tuple[bool, float]]
) -> None:
    clock = Clock()
    budget = RatioBudget(ratio, per_second, ttl, clock)
    model = _Window(ratio, per_second, ttl)
    for is_call, advance in events:
        clock.now += advance
        if is_call:
            budget.called()
            model.calls.append(math.floor(clock.now / model.span))
        else:
            assert budget.try_spend() is model.spend(clock.now)


def test_ratio_budget_by_hand() -> None:
    clock = Clock()
    clock.now = 0.0
    budget = RatioBudget(0.5, 0, 10.0, clock)
    for _ in range(4):
        budget.called()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.now = 9.99  # still in the window
    assert not budget.try_spend()
    clock.now = 10.0  # the first slot fell out: calls and retries alike
    assert not budget.try_spend()
    budget.called()
    budget.called()
    assert budget.try_spend()
    clock.now = 100.0
    assert not budget.try_spend()
    assert RatioBudget(0.0, 1, 2.0, clock).try_spend()


# ------------------------------------------------------------------------------ hedging

_HEDGE_CODES = [Code.OK, Code.UNAVAILABLE, Code.UNAVAILABLE, Code.INTERNAL, Code.ABORTED]


@settings(max_examples=300)
@given(
    st.integers(2, 5),
    st.sets(st.sampled_from([Code.UNAVAILABLE, Code.ABORTED]), max_size=2),
    st.lists(st.tuples(st.sampled_from(_HEDGE_CODES), pushbacks, st.booleans()), max_size=12),
)
def test_a_hedge_run_keeps_its_limits(
    max_attempts: int,
    non_fatal: set[Code],
    script: list[tuple[Code, str | None, bool]],
) -> None:
    policy = HedgingPolicy(
        max_attempts=max_attempts, hedging_delay=0.05, non_fatal_status_codes=frozenset(non_fatal)
    )
    run = HedgeRun(policy, Budgets())
    assert run.may_send() is None
    run.on_send()
    answered = 0
    for code, pushback, timer_first in script:
        if timer_first and run.next_delay() is not None and run.may_send() is None:
            run.on_send()  # the hedging timer fired before the next answer
        assert run.sent <= max_attempts
        if run.outstanding == 0:
            break
        trailers = () if pushback is None else ((PUSHBACK_HEADER, pushback),)
        action = run.on_answer(Attempt(code, "x", trailers))
        answered += 1  # noqa: SIM113 - counts answers, not loop steps (the loop may break)
        assert run.outstanding == run.sent - answered
        assert len(run.tried) == answered
        if code is Code.OK or code not in non_fatal:
            assert action is HedgeAction.FINAL  # a success or a fatal code ends the call
            break
        if pushback is not None and server_pushback(trailers) is NO_RETRY:
            assert run.next_delay() is None
            assert run.may_send() is not None
            assert action in (HedgeAction.LOSE, HedgeAction.WAIT)
        if action is HedgeAction.SEND_NOW:
            assert run.may_send() is None
            run.on_send()
        elif action is HedgeAction.LOSE:
            assert run.outstanding == 0
            break
        assert run.sent <= max_attempts
    assert run.sent <= max_attempts


def test_a_budget_refusal_stops_hedges() -> None:
    throttle = Throttle(2, 1)
    throttle.failed()  # 1 token: at the threshold
    run = HedgeRun(HedgingPolicy(max_attempts=3, hedging_delay=0.01), Budgets(throttle))
    assert run.may_send() is None  # the first attempt never asks the budget
    run.on_send()
    assert run.may_send() is not None
    assert "throttled" in run.reason()
    assert run.next_delay() is None


# ----------------------------------------------------------------------------- failover


@settings(max_examples=300)
@given(st.integers(1, 6), st.data())
def test_pick_avoiding_prefers_an_untried_endpoint(count: int, data: st.DataObject) -> None:
    endpoints = ready_endpoints(count)
    tried = {e.address for e in data.draw(st.sets(st.sampled_from(endpoints)))}
    # a strategy that answers from a drawn list (e.g. ring hash: the same one every time)
    answers = data.draw(st.lists(st.sampled_from(endpoints), min_size=1, max_size=5))
    cycle = iter(answers * 10)

    def choose(metadata: object) -> Endpoint | None:
        return next(cycle)

    picker = Picker(grpc.ChannelConnectivity.READY, endpoints, endpoints, choose)
    result = picker.pick_avoiding(None, frozenset(tried))
    assert result is not None
    if len(tried) < count:
        assert result.endpoint.address not in tried
    assert result.endpoint.outstanding == 1


def test_pick_avoiding_with_no_endpoint_is_none() -> None:
    picker = Picker(grpc.ChannelConnectivity.CONNECTING, (), (), lambda metadata: None)
    assert picker.pick_avoiding(None, frozenset({"127.0.0.1:1"})) is None
