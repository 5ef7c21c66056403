"""Endpoint transitions in the balancer, as a pure state machine: health, ejection,
half-open, readmission, panic mode, slow start, and the events each one records."""

from __future__ import annotations

import math
import random
from collections import Counter

import grpc
import pytest

from resilientrpc import events
from resilientrpc.balancer import SLOW_START_MIN_WEIGHT, Balancer, _slow_start_chooser
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


# -- exact records (each field of each event; mutation testing found these loose) ---------


def test_every_transition_records_one_exact_event(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(now=50.0)
    balancer, seen = ready_balancer(2, clock=clock)
    first = balancer.endpoints[0]
    seen.clear()
    caplog.set_level("INFO", logger="resilientrpc.events")
    clock.now = 51.0
    balancer.set_state(first, C.TRANSIENT_FAILURE, "refused")
    balancer.set_state(first, C.READY)
    assert balancer.eject(first, "5 consecutive failures")
    assert first.ejected is True and first.half_open is False
    balancer.half_open(first, "ejection time over")
    assert first.ejected is False and first.half_open is True
    balancer.readmit(first, "trials passed")
    assert first.ejected is False and first.half_open is False
    wall = 1_700_000_000.0
    address = first.address
    assert seen == [
        EndpointEvent(events.CONNECTIVITY, address, "TRANSIENT_FAILURE: refused", wall, 51.0),
        EndpointEvent(events.CONNECTIVITY, address, "READY", wall, 51.0),
        EndpointEvent(events.EJECTED, address, "5 consecutive failures", wall, 51.0),
        EndpointEvent(events.HALF_OPEN, address, "ejection time over", wall, 51.0),
        EndpointEvent(events.READMITTED, address, "trials passed", wall, 51.0),
    ]
    assert list(first.events)[-5:] == seen
    assert [r.getMessage() for r in caplog.records if r.name == "resilientrpc.events"] == [
        f"{address} connectivity: TRANSIENT_FAILURE: refused",
        f"{address} connectivity: READY",
        f"{address} ejected: 5 consecutive failures",
        f"{address} half_open: ejection time over",
        f"{address} readmitted: trials passed",
    ]


def test_connectivity_events_only_into_or_out_of_ready() -> None:
    balancer, seen = ready_balancer(1)
    (endpoint,) = balancer.endpoints
    seen.clear()
    balancer.set_state(endpoint, C.IDLE)
    balancer.set_state(endpoint, C.CONNECTING)
    assert [e.reason for e in seen] == ["IDLE"]  # out of READY; CONNECTING is no news


def test_a_channel_wide_event_is_logged_as_the_channels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="resilientrpc.events")
    balancer, seen = ready_balancer(2)
    for endpoint in balancer.endpoints:
        balancer.set_health(endpoint, False, "NOT_SERVING")
    balancer.set_health(balancer.endpoints[0], True, "SERVING")
    panic = [e for e in seen if e.kind in (events.PANIC_ENTERED, events.PANIC_LEFT)]
    assert [(e.kind, e.address, e.reason) for e in panic] == [
        (events.PANIC_ENTERED, "", "0 of 2 endpoints available, below the panic threshold of 50 %"),
        (events.PANIC_LEFT, "", "1 of 2 endpoints available"),
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "resilientrpc.events"]
    assert "channel panic_left: 1 of 2 endpoints available" in messages


def test_a_failing_event_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    balancer, _seen = ready_balancer(1, panic_threshold=0.0)

    def broken(event: EndpointEvent) -> None:
        raise RuntimeError("listener bug")

    balancer.add_event_listener(broken)
    later: list[EndpointEvent] = []
    balancer.add_event_listener(later.append)
    balancer.set_health(balancer.endpoints[0], False, "x")
    assert [e.reason for e in later] == ["x"]
    failures = [r.getMessage() for r in caplog.records if r.name == "resilientrpc.balancer"]
    assert failures == [f"event listener {broken!r} failed"]
    balancer.remove_event_listener(later.append)
    balancer.remove_event_listener(later.append)  # twice: no error
    balancer.set_health(balancer.endpoints[0], True, "y")
    assert [e.reason for e in later] == ["x"]


@pytest.mark.parametrize(
    ("threshold", "available", "members", "panic"),
    [
        (1.0, 0, 4, True),  # any threshold above zero panics with none available
        (50.5, 1, 2, True),  # 50 % < 50.5 %
        (50.0, 1, 2, False),  # 50 % is not below 50 %
        (0.0, 0, 4, False),
    ],
)
def test_the_panic_threshold_boundary(
    threshold: float, available: int, members: int, panic: bool
) -> None:
    balancer, _seen = ready_balancer(members, panic_threshold=threshold)
    for endpoint in balancer.endpoints[available:]:
        balancer.set_health(endpoint, False, "NOT_SERVING")
    assert balancer.panic is panic


def test_defaults_no_slow_start_no_streak_observer() -> None:
    heard: list[object] = []
    balancer = Balancer(RoundRobinStrategy(rng=random.Random(1)))
    balancer.observer = lambda *args: heard.append(args)  # no streak_limit set
    balancer.set_addresses(ADDRESSES[:2])
    first, _second = balancer.endpoints
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, C.READY)
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")  # back: no ramp by default
    assert picked(balancer.picker, 100)[first.address] == 50
    for _ in range(3):
        first.begin()
        first.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.001))
    assert heard == []


class CancellableTimers:
    def __init__(self) -> None:
        self.scheduled: list[tuple[float, object]] = []
        self.cancelled: list[int] = []

    def __call__(self, delay: float, function: object) -> object:
        index = len(self.scheduled)
        self.scheduled.append((delay, function))
        outer = self

        class Handle:
            def cancel(self) -> None:
                outer.cancelled.append(index)

        return Handle()


def test_slow_start_keeps_one_timer_for_the_earliest_end_and_it_rebuilds() -> None:
    clock = Clock()
    timers = CancellableTimers()
    balancer, _seen = ready_balancer(3, slow_start_window=10.0, clock=clock)
    balancer.start(timers)
    first, second, _third = balancer.endpoints
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")  # first ramps from 100.0
    clock.now += 4.0
    balancer.set_health(second, False, "x")  # rebuilds: the pending timer is replaced
    balancer.set_health(second, True, "y")
    delays = [delay for delay, _function in timers.scheduled]
    assert delays[0] == pytest.approx(10.001)
    assert delays[-1] == pytest.approx(6.001)  # the earliest end: first's, 6 s away
    assert timers.cancelled == list(range(len(timers.scheduled) - 1))
    clock.now += 6.5  # first is done ramping, second is not
    rebuild = timers.scheduled[-1][1]
    assert callable(rebuild)
    rebuild()
    assert timers.scheduled[-1][0] == pytest.approx(10.0 - 6.5 + 0.001)
    clock.now += 3.25  # a quarter of a second left: the timer is not rounded up
    rebuild()
    assert timers.scheduled[-1][0] == pytest.approx(0.25 + 0.001)


def test_slow_start_ends_exactly_at_the_window() -> None:
    clock = Clock()
    balancer, _seen = ready_balancer(2, slow_start_window=10.0, clock=clock)
    first = balancer.endpoints[0]
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")
    clock.now += 10.0
    balancer.rebuild()
    assert picked(balancer.picker, 100)[first.address] == 50


def test_slow_start_passes_the_calls_metadata_to_the_strategy() -> None:
    seen_metadata: list[object] = []
    clock = Clock()
    first = Endpoint(ADDRESSES[0], clock=clock)

    def recording(metadata: object) -> Endpoint | None:
        seen_metadata.append(metadata)
        return first

    ramped = _slow_start_chooser(recording, {first: clock.now}, 10.0, clock, random.Random(5))
    for _ in range(20):
        ramped((("k", "v"),))
    assert seen_metadata and all(m == (("k", "v"),) for m in seen_metadata)
    assert len(seen_metadata) > 20  # some picks were tried again, with the same metadata


# -- second mutation pass: defaults, short windows, the exact ramp boundary ---------------


def ramped_share(weight: float) -> float:
    """The share round robin over two gives the one ramping at ``weight``: when it is
    turned down the retry takes the other, and round robin's next choice is it again."""
    return weight / (1.0 + weight)


def test_slow_start_works_with_the_default_random_source() -> None:
    clock = Clock()
    balancer = Balancer(RoundRobinStrategy(), clock=clock, slow_start_window=10.0)
    balancer.set_addresses(ADDRESSES[:2])
    first, _second = balancer.endpoints
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, C.READY)
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")
    share = picked(balancer.picker, 2000)[first.address] / 2000
    assert share == pytest.approx(ramped_share(SLOW_START_MIN_WEIGHT), abs=0.05)


def test_a_half_open_endpoint_without_an_observer_records_outcomes() -> None:
    balancer, _seen = ready_balancer(2)
    first = balancer.endpoints[0]
    assert balancer.eject(first, "failing")
    balancer.half_open(first, "trial")
    for code in ("OK", "UNAVAILABLE"):
        first.begin()
        first.record(Outcome(grpc.StatusCode[code], 0.001))
    assert (first.calls, first.failures) == (2, 1)


def test_a_slow_start_window_under_a_second_still_ramps() -> None:
    clock = Clock()
    balancer, _seen = ready_balancer(2, slow_start_window=0.5, clock=clock)
    first = balancer.endpoints[0]
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")
    share = picked(balancer.picker, 2000)[first.address] / 2000
    assert share == pytest.approx(ramped_share(SLOW_START_MIN_WEIGHT), abs=0.05)


def test_an_endpoint_whose_window_just_ended_no_longer_ramps() -> None:
    # first ramps from 100, second from 105; at 110 first is done (not ramping, though
    # its window ends exactly now), so only second is damped, at weight 0.5.
    clock = Clock()
    balancer, _seen = ready_balancer(2, slow_start_window=10.0, clock=clock)
    first, second = balancer.endpoints
    balancer.set_health(first, False, "x")
    balancer.set_health(first, True, "y")
    clock.now = 105.0
    balancer.set_health(second, False, "x")
    balancer.set_health(second, True, "y")
    clock.now = 110.0
    balancer.rebuild()
    share = picked(balancer.picker, 4000)[second.address] / 4000
    assert share == pytest.approx(ramped_share(0.5), abs=0.05)  # undamped: 0.5


def test_slow_start_draws_from_the_balancers_random_source() -> None:
    def ramp_picks() -> list[str]:
        clock = Clock()
        balancer, _seen = ready_balancer(2, slow_start_window=10.0, clock=clock)  # Random(2)
        first = balancer.endpoints[0]
        balancer.set_health(first, False, "x")
        clock.now += 5.0  # weight 0.5: a coin toss for each of its picks
        balancer.set_health(first, True, "y")
        clock.now += 5.0
        result = []
        for _ in range(200):
            pick = balancer.picker.pick()
            assert pick is not None
            result.append(pick.endpoint.address)
        return result

    assert ramp_picks() == ramp_picks()  # the same seed, the same choices


def test_a_first_member_that_comes_up_after_the_grace_ramps_up() -> None:
    clock = Clock()
    balancer = Balancer(
        RoundRobinStrategy(rng=random.Random(1)),
        clock=clock,
        slow_start_window=10.0,
        rng=random.Random(2),
    )
    balancer.set_addresses(ADDRESSES[:3])
    early, in_grace, late = balancer.endpoints
    balancer.set_state(early, C.READY)
    clock.now += 0.19  # within the start-up grace: still a first member
    balancer.set_state(in_grace, C.READY)
    clock.now += 5.0
    balancer.set_state(late, C.READY)
    assert early.available_since == in_grace.available_since == -math.inf
    assert late.available_since == clock.now
    counts = picked(balancer.picker, 3000)
    assert counts[late.address] < 0.1 * 3000 < counts[early.address]
