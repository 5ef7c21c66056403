"""An endpoint's arithmetic pinned exactly: peak-EWMA latency, its decay, cost, the failure
ratio, window and streak counters, the observer, and the status snapshot.

Pure tests for ``make mutate`` (docs/mutation.md): one hand-built :class:`Endpoint` with a
hand-moved clock, fed a known sequence of outcomes. A decay of 2 s keeps every branch of
the estimate in play: a sample 0.5 s after the last keeps exp(-0.25) ~ 0.78 of the
estimate, one 0.1 s after is capped at 0.9 (``MIN_SAMPLE_WEIGHT``), 3 s after keeps
exp(-1.5) ~ 0.22.
"""

from __future__ import annotations

import math

import grpc
import pytest

from resilientrpc.endpoint import (
    KEPT_EVENTS,
    MIN_SAMPLE_WEIGHT,
    UNSAMPLED_PENALTY,
    Endpoint,
    EndpointStatus,
    Outcome,
)
from resilientrpc.events import HEALTH, EndpointEvent
from tests.fakes import Clock

C = grpc.ChannelConnectivity
ADDRESS = "127.0.0.1:10000"
DECAY = 2.0
#: The most an estimate keeps of itself per sample.
KEEP = 1.0 - MIN_SAMPLE_WEIGHT


def endpoint_at(clock: Clock) -> Endpoint:
    return Endpoint(ADDRESS, decay=DECAY, clock=clock)


def record(endpoint: Endpoint, code: str, latency: float, error: str | None = None) -> None:
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode[code], latency, error=error))


def blend(previous: float, sample: float, elapsed: float) -> float:
    """The estimate after a sample no higher than it, ``elapsed`` s after the last one."""
    keep = min(math.exp(-elapsed / DECAY), KEEP)
    return previous * keep + sample * (1.0 - keep)


# -- latency: peak-EWMA -------------------------------------------------------------------


def test_the_latency_estimate_after_a_known_sequence() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    assert endpoint.latency() is None
    record(endpoint, "OK", 0.010)
    expected = 0.010  # the first sample, whole
    assert endpoint.latency(clock.now) == expected
    steps = [
        (0.5, "OK", 0.004),  # keeps exp(-0.25)
        (0.1, "OK", 0.002),  # exp(-0.05) > 0.9: keeps 0.9
        (3.0, "OK", 0.001),  # keeps exp(-1.5)
    ]
    for elapsed, code, latency in steps:
        clock.now += elapsed
        record(endpoint, code, latency)
        expected = blend(expected, latency, elapsed)
        assert endpoint.latency(clock.now) == pytest.approx(expected, rel=1e-12), elapsed
    record(endpoint, "OK", 0.050)  # slower: taken whole at once (the peak)
    assert endpoint.latency(clock.now) == 0.050
    clock.now += 0.1
    record(endpoint, "UNAVAILABLE", 0.001)  # a fast failure counts as the estimate
    assert endpoint.latency(clock.now) == pytest.approx(0.050, rel=1e-12)
    record(endpoint, "DEADLINE_EXCEEDED", 0.300)  # a slow one as itself, a peak
    assert endpoint.latency(clock.now) == 0.300


def test_the_latency_estimate_decays_with_time_since_the_last_sample() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    record(endpoint, "OK", 0.040)
    assert endpoint.latency(100.5) == pytest.approx(0.040 * math.exp(-0.25), rel=1e-12)
    assert endpoint.latency(104.0) == pytest.approx(0.040 * math.exp(-2.0), rel=1e-12)
    assert endpoint.latency(90.0) == 0.040  # a reading before the sample: no decay
    clock.now = 101.0
    assert endpoint.latency() == pytest.approx(0.040 * math.exp(-0.5), rel=1e-12)


def test_cost_is_the_decayed_latency_times_calls_in_flight_plus_one() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    assert endpoint.cost(100.0) == 0.0  # unsampled and idle: free
    endpoint.begin()
    endpoint.begin()
    assert endpoint.cost(100.0) == UNSAMPLED_PENALTY + 2  # unsampled and busy
    endpoint.record(Outcome(grpc.StatusCode.OK, 0.040))
    assert endpoint.cost(100.0) == pytest.approx(0.040 * 2, rel=1e-12)  # one still in flight
    endpoint.begin()
    assert endpoint.cost(100.5) == pytest.approx(0.040 * math.exp(-0.25) * 3, rel=1e-12)
    assert endpoint.cost(99.0) == pytest.approx(0.040 * 3, rel=1e-12)


# -- failure ratio ------------------------------------------------------------------------


def test_the_failure_ratio_after_a_known_sequence() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    record(endpoint, "OK", 0.001)
    assert endpoint.failure_ratio() == 0.0
    clock.now = 100.1  # the success 0.1 s ago is recent evidence: one failure weighs 0.1
    record(endpoint, "UNAVAILABLE", 0.001)
    expected = 1.0 - KEEP
    assert endpoint.failure_level == expected
    clock.now = 100.6
    record(endpoint, "INTERNAL", 0.001)
    keep = math.exp(-0.25)
    expected = expected * keep + (1.0 - keep)
    assert endpoint.failure_level == pytest.approx(expected, rel=1e-12)
    clock.now = 101.6
    record(endpoint, "NOT_FOUND", 0.001)  # the application's answer: a success here
    expected *= math.exp(-0.5)
    assert endpoint.failure_level == pytest.approx(expected, rel=1e-12)
    assert endpoint.failure_ratio(101.6) == pytest.approx(expected, rel=1e-12)
    assert endpoint.failure_ratio(102.1) == pytest.approx(expected * math.exp(-0.25), rel=1e-12)
    assert endpoint.failure_ratio(90.0) == pytest.approx(expected, rel=1e-12)
    clock.now = 103.6
    assert endpoint.failure_ratio() == pytest.approx(expected * math.exp(-1.0), rel=1e-12)


def test_a_first_failure_weighs_against_the_quiet_since_the_endpoint_appeared() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)  # appears at 100.0
    clock.now = 100.001
    record(endpoint, "UNAVAILABLE", 0.001)  # right away: one failure among many
    assert endpoint.failure_ratio() == pytest.approx(1.0 - 0.9)
    late_clock = Clock(now=100.0)
    late = endpoint_at(late_clock)
    late_clock.now = 1000.0
    record(late, "UNAVAILABLE", 0.001)  # long after: the only evidence there is
    assert late.failure_ratio() == pytest.approx(1.0)


def test_a_ratio_of_exactly_the_negligible_bar_is_kept() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    record(endpoint, "UNAVAILABLE", 0.001)
    endpoint.failure_level = 1e-3 / KEEP  # a success at once keeps 0.9 of it: 1e-3 exactly
    record(endpoint, "OK", 0.001)
    assert endpoint.failure_level == 1e-3
    record(endpoint, "OK", 0.001)  # 0.9e-3: below the bar, exactly zero
    assert endpoint.failure_level == 0.0
    assert endpoint.failure_ratio() == 0.0


# -- counters -----------------------------------------------------------------------------


def test_counters_windows_and_streaks() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    assert endpoint.begin() == 100.0  # the attempt's start, on the endpoint's clock
    assert endpoint.outstanding == 1
    endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.001, error="refused"))
    record(endpoint, "INTERNAL", 0.001)  # no error text: the last one stays
    assert endpoint.consecutive_failures == 2
    record(endpoint, "NOT_FOUND", 0.003, error="no such key")
    assert endpoint.consecutive_failures == 0
    record(endpoint, "CANCELLED", 0.002, error="caller gave up")  # not the endpoint's
    record(endpoint, "DATA_LOSS", 0.001)
    record(endpoint, "OK", 0.004)
    record(endpoint, "UNKNOWN", 0.001)
    assert endpoint.consecutive_failures == 1
    # ``failures`` counts every error the endpoint answered (NOT_FOUND too); the window
    # counts only ``failure_codes`` as failures, the rest as successes.
    assert (endpoint.outstanding, endpoint.calls, endpoint.failures) == (0, 7, 5)
    assert endpoint.last_error == "no such key"
    successes, failures, latency = endpoint.take_window()
    assert (successes, failures) == (2, 4)
    assert latency == pytest.approx(0.007, rel=1e-12)
    assert endpoint.take_window() == (0, 0, 0.0)


# -- the observer -------------------------------------------------------------------------


def listening(endpoint: Endpoint) -> list[tuple[Endpoint, Outcome, bool]]:
    heard: list[tuple[Endpoint, Outcome, bool]] = []

    def observer(endpoint: Endpoint, outcome: Outcome, failed: bool) -> None:
        heard.append((endpoint, outcome, failed))

    endpoint.observer = observer
    return heard


def test_the_observer_hears_the_failure_that_reaches_the_streak_limit_with_the_endpoint() -> None:
    clock = Clock()
    endpoint = endpoint_at(clock)
    heard = listening(endpoint)
    endpoint.streak_limit = 2
    first = Outcome(grpc.StatusCode.UNAVAILABLE, 0.001)
    second = Outcome(grpc.StatusCode.INTERNAL, 0.001)
    for outcome in (first, second, first):  # the third goes past the limit: not heard
        endpoint.begin()
        endpoint.record(outcome)
    assert heard == [(endpoint, second, True)]
    assert heard[0][0] is endpoint and heard[0][1] is second
    record(endpoint, "OK", 0.001)
    record(endpoint, "UNAVAILABLE", 0.001)
    record(endpoint, "UNAVAILABLE", 0.001)  # a new streak reaches the limit again
    assert len(heard) == 2


def test_without_a_streak_limit_failures_are_not_heard() -> None:
    endpoint = endpoint_at(Clock())
    heard = listening(endpoint)
    for _ in range(3):
        record(endpoint, "UNAVAILABLE", 0.001)
    assert heard == []


def test_half_open_every_outcome_is_heard_but_the_callers_cancellations() -> None:
    endpoint = endpoint_at(Clock())
    heard = listening(endpoint)
    endpoint.half_open = True
    for code in ("OK", "NOT_FOUND", "UNAVAILABLE", "CANCELLED"):
        record(endpoint, code, 0.001)
    assert [(e is endpoint, o.code.name, f) for e, o, f in heard] == [
        (True, "OK", False),
        (True, "NOT_FOUND", False),
        (True, "UNAVAILABLE", True),
    ]


def test_half_open_with_no_observer_just_records() -> None:
    endpoint = endpoint_at(Clock())
    endpoint.half_open = True
    record(endpoint, "OK", 0.001)
    record(endpoint, "UNAVAILABLE", 0.001)
    assert (endpoint.calls, endpoint.failures) == (2, 1)


# -- availability, status, repr -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "ejected", "health_checked", "healthy", "available"),
    [
        (C.READY, False, False, None, True),
        (C.READY, False, False, True, True),
        (C.READY, False, False, False, False),
        (C.READY, False, True, None, False),
        (C.READY, False, True, True, True),
        (C.READY, False, True, False, False),
        (C.READY, True, False, None, False),
        (C.READY, True, True, True, False),
        (C.CONNECTING, False, False, None, False),
        (C.IDLE, False, True, True, False),
        (C.TRANSIENT_FAILURE, False, False, True, False),
    ],
)
def test_available(
    state: grpc.ChannelConnectivity,
    ejected: bool,
    health_checked: bool,
    healthy: bool | None,
    available: bool,
) -> None:
    endpoint = endpoint_at(Clock())
    endpoint.state = state
    endpoint.ejected = ejected
    endpoint.health_checked = health_checked
    endpoint.healthy = healthy
    assert endpoint.available is available


def test_a_new_endpoints_status() -> None:
    assert endpoint_at(Clock()).status() == EndpointStatus(
        address=ADDRESS,
        state="IDLE",
        available=False,
        healthy=None,
        ejected=False,
        outstanding=0,
        latency_ms=None,
        weight=1.0,
        calls=0,
        failures=0,
        last_error=None,
        half_open=False,
        failure_ratio=0.0,
        reason=None,
        since=None,
        events=(),
    )
    assert Endpoint(ADDRESS, static_weight=2.5).status().weight == 2.5


def test_a_busy_endpoints_status() -> None:
    clock = Clock(now=100.0)
    endpoint = endpoint_at(clock)
    endpoint.state = C.READY
    endpoint.healthy = True
    endpoint.half_open = True
    endpoint.reason, endpoint.since = "ejection time over", 1_700_000_000.0
    kept = [EndpointEvent(HEALTH, ADDRESS, f"report {i}", float(i), float(i)) for i in range(10)]
    endpoint.events.extend(kept)
    record(endpoint, "OK", 0.020)
    clock.now = 100.5
    record(endpoint, "UNAVAILABLE", 0.001, error="refused")
    endpoint.begin()
    clock.now = 101.0
    latency = endpoint.latency(101.0)
    assert latency is not None
    assert endpoint.status() == EndpointStatus(
        address=ADDRESS,
        state="READY",
        available=True,
        healthy=True,
        ejected=False,
        outstanding=1,
        latency_ms=latency * 1000.0,
        weight=1.0,
        calls=2,
        failures=1,
        last_error="refused",
        half_open=True,
        failure_ratio=endpoint.failure_ratio(101.0),
        reason="ejection time over",
        since=1_700_000_000.0,
        events=tuple(kept[-KEPT_EVENTS:]),
    )
    assert latency == pytest.approx(0.020 * math.exp(-0.25), rel=1e-12)
    keep = math.exp(-0.25)
    assert endpoint.status().failure_ratio == pytest.approx((1.0 - keep) * keep, rel=1e-12)
    endpoint.connect_error = "connection refused"  # the connection's error comes first
    endpoint.ejected = True
    status = endpoint.status()
    assert (status.last_error, status.ejected, status.available) == (
        "connection refused",
        True,
        False,
    )


def test_repr() -> None:
    endpoint = endpoint_at(Clock())
    endpoint.begin()
    assert repr(endpoint) == "Endpoint('127.0.0.1:10000', state=IDLE, outstanding=1)"
