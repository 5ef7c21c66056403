"""Endpoint transitions in the balancer, as a pure state machine: health, ejection,
half-open, readmission, panic mode, slow start, and the events each one records."""

from __future__ import annotations

import random
from collections import Counter

import grpc
import pytest

from resilientrpc import events
from resilientrpc.balancer import SLOW_START_MIN_WEIGHT, Balancer
from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.events import EndpointEvent
from resilientrpc.picker import Picker
from resilientrpc.strategies import RoundRobinStrategy
from tests.fakes import Clock

C = grpc.ChannelConnectivity
ADDRESSES = [f"127.0.0.1:{10000 + i}" for i in range(10)]


def ready_balancer(
    count: int,
    *,
    panic_threshold: float = 50.0,
    health_checked: bool = False,
    slow_start_window: float = 0.0,
    clock: Clock | None = None,
) -> tuple[Balancer, list[EndpointEvent]]:
    seen: list[EndpointEvent] = []
    balancer = Balancer(
        RoundRobinStrategy(rng=random.Random(1)),
        clock=clock or Clock(),
        wall_clock=lambda: 1_700_000_000.0,
        panic_threshold=panic_threshold,
        health_checked=health_checked,
        slow_start_window=slow_start_window,
        rng=random.Random(2),
    )
    balancer.add_event_listener(seen.append)
    balancer.set_addresses(ADDRESSES[:count])
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, C.READY)
    return balancer, seen


def picked(picker: Picker, count: int) -> Counter[str]:
    result: Counter[str] = Counter()
    for _ in range(count):
        pick = picker.pick()
        assert pick is not None
        result[pick.endpoint.address] += 1
        pick.done(Outcome(grpc.StatusCode.OK, 0.001))
    return result


def kinds(seen: list[EndpointEvent]) -> list[str]:
    return [event.kind for event in seen if event.kind != events.CONNECTIVITY]


# -- health -----------------------------------------------------------------------------


def test_an_unhealthy_endpoint_leaves_the_picker_and_comes_back() -> None:
    balancer, seen = ready_balancer(3)
    first = balancer.endpoints[0]
    balancer.set_health(first, False, "health: NOT_SERVING")
    assert first not in balancer.picker.endpoints
    assert first.reason == "health: NOT_SERVING"
    assert first.since == 1_700_000_000.0
    balancer.set_health(first, True, "health: SERVING")
    assert first in balancer.picker.endpoints
    assert kinds(seen) == [events.HEALTH, events.HEALTH]
    assert [e.reason for e in first.events][-2:] == ["health: NOT_SERVING", "health: SERVING"]
    status = first.status()
    assert status.reason == "health: SERVING" and status.events[-1].kind == events.HEALTH


def test_a_repeated_verdict_records_nothing() -> None:
    balancer, seen = ready_balancer(2)
    first = balancer.endpoints[0]
    balancer.set_health(first, False, "dead", kind=events.HEARTBEAT_MISSED)
    balancer.set_health(first, False, "dead again", kind=events.HEARTBEAT_MISSED)
    assert kinds(seen) == [events.HEARTBEAT_MISSED]


def test_with_health_checking_only_a_serving_report_lets_an_endpoint_take_calls() -> None:
    balancer, _seen = ready_balancer(2, health_checked=True)
    assert balancer.picker.state is C.TRANSIENT_FAILURE  # connected, no report yet
    first, second = balancer.endpoints
    balancer.set_health(first, True, "health: SERVING")
    assert balancer.picker.endpoints == (first,)
    balancer.set_health(second, None, "reconnecting")
    assert balancer.picker.endpoints == (first,)


def test_health_of_a_removed_endpoint_is_ignored() -> None:
    balancer, seen = ready_balancer(2)
    gone = balancer.endpoints[1]
    balancer.set_addresses(ADDRESSES[:1])
    balancer.set_health(gone, False, "late report")
    assert balancer.eject(gone, "late") is False
    balancer.half_open(gone, "late")
    balancer.readmit(gone, "late")
    assert kinds(seen) == []


# -- ejection ---------------------------------------------------------------------------


def test_eject_half_open_readmit() -> None:
    balancer, seen = ready_balancer(3)
    first = balancer.endpoints[0]
    assert balancer.eject(first, "5 consecutive failures")
    assert first.ejected and first not in balancer.picker.endpoints
    balancer.half_open(first, "ejection time over")
    assert first.half_open and not first.ejected and first in balancer.picker.endpoints
    balancer.readmit(first, "3 trial calls succeeded")
    assert not first.half_open and not first.ejected
    assert kinds(seen) == [events.EJECTED, events.HALF_OPEN, events.READMITTED]
    balancer.readmit(first, "again")  # not ejected: nothing to do
    assert kinds(seen) == [events.EJECTED, events.HALF_OPEN, events.READMITTED]


def test_the_observer_hears_half_open_outcomes_and_the_streak_that_reaches_the_limit() -> None:
    heard: list[tuple[str, bool]] = []
    balancer = Balancer(RoundRobinStrategy())
    balancer.observer = lambda endpoint, outcome, failed: heard.append((outcome.code.name, failed))
    balancer.streak_limit = 2
    balancer.set_addresses(ADDRESSES[:1])
    (endpoint,) = balancer.endpoints
    for code in ("OK", "UNAVAILABLE", "NOT_FOUND", "UNAVAILABLE", "INTERNAL", "UNKNOWN"):
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode[code], 0.001))
    # NOT_FOUND is no failure and does not break the streak count of failures... it does:
    # any non-failure resets it, so only UNAVAILABLE, INTERNAL reach 2.
    assert heard == [("INTERNAL", True)]
    endpoint.half_open = True
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.OK, 0.001))
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.CANCELLED, 0.001))  # the caller's: not heard
    assert heard[1:] == [("OK", False)]


# -- panic ------------------------------------------------------------------------------


def test_below_the_panic_threshold_calls_spread_over_every_connected_endpoint() -> None:
    balancer, seen = ready_balancer(4)
    a, b, c, d = balancer.endpoints
    balancer.set_health(a, False, "NOT_SERVING")
    assert balancer.eject(b, "failing")
    assert not balancer.panic  # 2 of 4 = 50 %: not below
    balancer.set_state(d, C.TRANSIENT_FAILURE, "refused")
    assert balancer.panic  # 1 of 4 available
    assert set(balancer.picker.endpoints) == {a, b, c}  # connected; never d
    assert set(picked(balancer.picker, 30)) == {a.address, b.address, c.address}
    assert kinds(seen)[-1] == events.PANIC_ENTERED
    assert "1 of 4 endpoints available" in seen[-1].reason and seen[-1].address == ""
    balancer.set_health(a, True, "SERVING")
    assert not balancer.panic and set(balancer.picker.endpoints) == {a, c}
    assert kinds(seen)[-1] == events.PANIC_LEFT


def test_panic_threshold_zero_turns_panic_off() -> None:
    balancer, _seen = ready_balancer(4, panic_threshold=0.0)
    for endpoint in balancer.endpoints[:3]:
        balancer.set_health(endpoint, False, "NOT_SERVING")
    assert not balancer.panic
    assert balancer.picker.endpoints == balancer.endpoints[3:]


def test_panic_never_sends_to_an_endpoint_waiting_for_its_first_health_report() -> None:
    balancer, _seen = ready_balancer(4, health_checked=True)
    a, b, _c, _d = balancer.endpoints
    balancer.set_health(a, True, "SERVING")
    balancer.set_health(b, False, "NOT_SERVING")
    assert balancer.panic
    assert set(balancer.picker.endpoints) == {a, b}  # c, d: no report yet


@pytest.mark.parametrize("threshold", [50.0, 100.0])
def test_no_panic_when_every_connected_endpoint_is_available(threshold: float) -> None:
    balancer, _seen = ready_balancer(4, panic_threshold=threshold)
    for endpoint in balancer.endpoints[1:]:
        balancer.set_state(endpoint, C.TRANSIENT_FAILURE, "refused")
    assert not balancer.panic
    assert balancer.picker.endpoints == balancer.endpoints[:1]


# -- slow start -------------------------------------------------------------------------


def test_slow_start_ramps_a_returning_endpoints_share_up_over_the_window() -> None:
    clock = Clock()
    timers: list[tuple[float, object]] = []
    balancer, _seen = ready_balancer(2, slow_start_window=10.0, clock=clock)
    balancer.start(lambda delay, function: timers.append((delay, function)))
    first, second = balancer.endpoints
    balancer.set_health(first, False, "NOT_SERVING")
    clock.now += 1.0
    balancer.set_health(first, True, "SERVING")
    assert first.available_since == clock.now
    assert timers and timers[-1][0] == pytest.approx(10.0, abs=0.01)
    start = picked(balancer.picker, 2000)
    share = start[first.address] / 2000
    # Round robin gives it 1/2 of the first choices; the ramp keeps 10 % of those.
    expected = 0.5 * SLOW_START_MIN_WEIGHT
    assert expected * 0.5 < share < expected * 2
    clock.now += 5.0  # half way: weight 0.5
    half = picked(balancer.picker, 2000)[first.address] / 2000
    assert 0.15 < half < 0.35
    clock.now += 6.0  # the window is over: the timer's rebuild drops the ramp
    balancer.rebuild()
    full = picked(balancer.picker, 2000)[first.address] / 2000
    assert full == pytest.approx(0.5, abs=0.01)
    assert second.available_since is not None


def test_slow_start_off_by_default_and_never_at_channel_start() -> None:
    balancer, _seen = ready_balancer(2, slow_start_window=10.0)
    counts = picked(balancer.picker, 1000)
    assert counts[ADDRESSES[0]] == counts[ADDRESSES[1]] == 500
    plain, _ = ready_balancer(2)
    first = plain.endpoints[0]
    plain.set_health(first, False, "x")
    plain.set_health(first, True, "y")
    assert picked(plain.picker, 1000)[first.address] == 500


# -- failure ratio ------------------------------------------------------------------------


def test_failures_raise_the_failure_ratio_and_never_lower_the_latency() -> None:
    clock = Clock()
    endpoint = Endpoint(ADDRESSES[0], clock=clock, decay=10.0)
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.OK, 0.010))
    assert endpoint.failure_ratio() == 0.0 and endpoint.failure_level == 0.0
    for _ in range(20):
        clock.now += 0.001
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.0001))
    assert endpoint.failure_ratio() > 0.8
    latency = endpoint.latency()
    assert latency is not None and latency > 0.009  # fast failures did not make it "fast"
    clock.now += 60.0  # decays with the time constant
    assert endpoint.failure_ratio() < 0.01
    for code in ("NOT_FOUND", "CANCELLED", "INVALID_ARGUMENT"):
        other = Endpoint(ADDRESSES[1], clock=clock)
        other.begin()
        other.record(Outcome(grpc.StatusCode[code], 0.001))
        assert other.failure_level == 0.0, code


def test_the_failure_ratio_snaps_to_zero_once_negligible() -> None:
    clock = Clock()
    endpoint = Endpoint(ADDRESSES[0], clock=clock)
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.001))
    assert endpoint.failure_level > 0
    for _ in range(200):
        clock.now += 0.001
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode.OK, 0.001))
    assert endpoint.failure_level == 0.0


def test_take_window_returns_and_resets_the_counts() -> None:
    endpoint = Endpoint(ADDRESSES[0], clock=Clock())
    for code, latency in (("OK", 0.002), ("OK", 0.004), ("INTERNAL", 0.001), ("NOT_FOUND", 0.003)):
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode[code], latency))
    successes, failures, latency_sum = endpoint.take_window()
    assert (successes, failures) == (3, 1)
    assert latency_sum == pytest.approx(0.009)
    assert endpoint.take_window() == (0, 0, 0.0)
