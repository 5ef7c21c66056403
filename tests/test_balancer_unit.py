"""The balancer as a pure state machine: hand-fed membership and connectivity, no network."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import grpc
import pytest

from resilientrpc.balancer import STARTUP_GRACE, Balancer
from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Picker
from resilientrpc.strategies import (
    PeakEwmaStrategy,
    PickFirstStrategy,
    RoundRobinStrategy,
    Strategy,
    WeightedRoundRobinStrategy,
)
from tests.fakes import Clock

C = grpc.ChannelConnectivity
ADDRESSES = ["127.0.0.1:10000", "127.0.0.1:10001", "127.0.0.1:10002"]


class Timers:
    """A balancer timer that only records; the test fires what it wants, when it wants."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, function: Callable[[], None]) -> object:
        self.scheduled.append((delay, function))
        return None


class Flaky(RoundRobinStrategy):
    """Round robin that raises ``error`` (when set) building choosers and refreshing."""

    name = "flaky"
    error: Exception | None = None

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        if self.error is not None:
            raise self.error
        return super().chooser(ready, members)

    def refresh(self, members: tuple[Endpoint, ...]) -> None:
        if self.error is not None:
            raise self.error


def balancer_of(count: int = 3, strategy: RoundRobinStrategy | None = None) -> Balancer:
    balancer = Balancer(strategy or RoundRobinStrategy(rng=random.Random(1)))
    balancer.set_addresses(ADDRESSES[:count])
    return balancer


def all_ready(balancer: Balancer) -> None:
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, C.READY)


def addresses(picker: Picker, count: int) -> list[str]:
    result = []
    for _ in range(count):
        pick = picker.pick()
        assert pick is not None
        result.append(pick.endpoint.address)
    return result


# -- membership -------------------------------------------------------------------------


def test_set_addresses_reports_added_and_removed_and_keeps_the_rest() -> None:
    balancer = Balancer(WeightedRoundRobinStrategy(weights={ADDRESSES[1]: 3.0}))
    added, removed = balancer.set_addresses(ADDRESSES[:2])
    assert [e.address for e in added] == ADDRESSES[:2] and removed == []
    assert [e.static_weight for e in added] == [1.0, 3.0]
    kept = added[1]
    added, removed = balancer.set_addresses(ADDRESSES[1:])
    assert [e.address for e in added] == ADDRESSES[2:]
    assert [e.address for e in removed] == ADDRESSES[:1]
    assert removed[0].state is C.SHUTDOWN
    assert balancer.endpoints == (kept, added[0])
    assert [s.address for s in balancer.statuses()] == ADDRESSES[1:]


def test_endpoints_take_the_strategys_decay() -> None:
    balancer = Balancer(PeakEwmaStrategy(decay=3.0))
    (endpoint,), _ = balancer.set_addresses(ADDRESSES[:1])
    assert endpoint._decay == 3.0


def test_the_first_resolution_publishes_even_when_empty() -> None:
    balancer = Balancer(RoundRobinStrategy())
    assert balancer.picker.state is C.IDLE
    balancer.set_addresses([])
    assert balancer.picker.state is C.TRANSIENT_FAILURE


@pytest.mark.parametrize("change", [ADDRESSES, ADDRESSES[:1]])
def test_a_membership_change_publishes_a_picker_with_the_new_members(change: list[str]) -> None:
    balancer = balancer_of(2)
    all_ready(balancer)
    balancer.set_addresses(change)
    assert [e.address for e in balancer.picker.members] == change


def test_an_unchanged_resolution_keeps_the_picker() -> None:
    balancer = balancer_of()
    all_ready(balancer)
    picker = balancer.picker
    balancer.set_addresses(list(reversed(ADDRESSES)))
    assert balancer.picker is picker


def test_a_resolution_after_a_resolver_error_clears_it() -> None:
    balancer = Balancer(RoundRobinStrategy())
    balancer.set_resolution_error("no such host")
    assert (balancer.picker.state, balancer.picker.error) == (C.TRANSIENT_FAILURE, "no such host")
    balancer.set_addresses([])
    assert balancer.picker.error is None
    balancer.set_resolution_error("no such host")
    balancer.set_addresses(ADDRESSES[:1])
    assert (balancer.picker.state, balancer.picker.error) == (C.CONNECTING, None)


# -- connectivity -----------------------------------------------------------------------


def test_set_state_records_errors_and_publishes_changes_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    balancer = balancer_of(1)
    (endpoint,) = balancer.endpoints
    with caplog.at_level(logging.DEBUG, logger="resilientrpc.balancer"):
        balancer.set_state(endpoint, C.TRANSIENT_FAILURE, "refused")
    assert caplog.messages == ["endpoint 127.0.0.1:10000: IDLE -> TRANSIENT_FAILURE"]
    assert endpoint.connect_error == "refused"
    picker = balancer.picker
    balancer.set_state(endpoint, C.CONNECTING)  # sticky: still failed
    balancer.set_state(endpoint, C.TRANSIENT_FAILURE)
    assert balancer.picker is picker and endpoint.connect_error == "refused"
    balancer.set_state(endpoint, C.READY)
    assert endpoint.connect_error is None and balancer.picker.state is C.READY
    balancer.set_state(endpoint, C.CONNECTING, "lost")
    assert (endpoint.state, endpoint.connect_error) == (C.CONNECTING, "lost")


def test_set_state_of_a_removed_endpoint_changes_nothing() -> None:
    balancer = balancer_of(2)
    gone = balancer.endpoints[0]
    balancer.set_addresses(ADDRESSES[1:2])
    picker = balancer.picker
    balancer.set_state(gone, C.READY, "late")
    assert balancer.picker is picker and gone.state is C.SHUTDOWN and gone.connect_error is None


def test_the_ready_picker_picks_among_available_endpoints_knowing_all_members() -> None:
    balancer = balancer_of()
    first, second, third = balancer.endpoints
    balancer.set_state(first, C.READY)
    balancer.set_state(second, C.TRANSIENT_FAILURE)
    balancer.set_state(third, C.READY)
    picker = balancer.picker
    assert (picker.state, picker.endpoints, picker.members) == (
        C.READY,
        (first, third),
        (first, second, third),
    )
    balancer.set_state(first, C.TRANSIENT_FAILURE)
    balancer.set_state(third, C.TRANSIENT_FAILURE)
    assert (balancer.picker.state, balancer.picker.members) == (
        C.TRANSIENT_FAILURE,
        (first, second, third),
    )


# -- start-up grace ---------------------------------------------------------------------


def starting(
    count: int, grace: float = STARTUP_GRACE, strategy: Strategy | None = None
) -> tuple[Balancer, Timers]:
    """A balancer with a timer and ``count`` addresses, none of which has answered yet."""
    timers = Timers()
    balancer = Balancer(strategy or RoundRobinStrategy(), startup_grace=grace)
    balancer.start(timers)
    balancer.set_addresses(ADDRESSES[:count])
    return balancer, timers


def test_the_first_ready_picker_waits_for_every_first_answer() -> None:
    balancer, timers = starting(3, grace=0.5)
    first, second, third = balancer.endpoints
    balancer.set_state(first, C.READY)
    assert (balancer.picker.state, balancer.picker.members) == (
        C.CONNECTING,
        (first, second, third),
    )
    balancer.set_state(second, C.TRANSIENT_FAILURE)
    assert balancer.picker.state is C.CONNECTING
    assert [delay for delay, _ in timers.scheduled] == [0.5]  # one grace, from the first READY
    balancer.set_state(third, C.READY)  # every one has answered
    assert balancer.picker.endpoints == (first, third)
    # Start-up is over for good: a newcomer does not hold the picker back.
    balancer.set_addresses([*ADDRESSES, "127.0.0.1:10003"])
    assert balancer.picker.state is C.READY
    timers.scheduled[0][1]()  # the grace timer firing late changes nothing
    assert balancer.picker.endpoints == (first, third)


def test_the_grace_ends_with_the_endpoints_ready_by_then() -> None:
    balancer, timers = starting(2)
    first, second = balancer.endpoints
    balancer.set_state(first, C.READY)
    ((delay, end_grace),) = timers.scheduled
    assert delay == STARTUP_GRACE == 0.2
    end_grace()
    assert (balancer.picker.state, balancer.picker.endpoints) == (C.READY, (first,))
    balancer.set_state(second, C.READY)
    assert balancer.picker.endpoints == (first, second)


def test_an_endpoint_removed_during_start_up_is_not_waited_for() -> None:
    balancer, _timers = starting(2)
    balancer.set_state(balancer.endpoints[0], C.READY)
    assert balancer.picker.state is C.CONNECTING
    balancer.set_addresses(ADDRESSES[:1])
    assert balancer.picker.state is C.READY


def test_without_a_timer_there_is_no_grace() -> None:
    balancer = balancer_of(2)
    balancer.set_state(balancer.endpoints[0], C.READY)
    assert balancer.picker.state is C.READY


# -- a failing strategy -----------------------------------------------------------------


def test_a_failing_strategy_falls_back_to_round_robin_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = Flaky()
    strategy.error = ValueError("bad weights")
    balancer = balancer_of(3, strategy)
    first, second, third = balancer.endpoints
    with caplog.at_level(logging.WARNING, logger="resilientrpc.balancer"):
        balancer.set_state(first, C.READY)
        balancer.set_state(third, C.READY)
        assert addresses(balancer.picker, 4) == [first.address, third.address] * 2
        balancer.refresh()
        strategy.error = KeyError("x")
        balancer.refresh()
        strategy.error = None
        balancer.set_state(second, C.READY)
        balancer.refresh()  # works, as before: nothing to say
        strategy.error = ValueError("same")
        balancer.refresh()
        strategy.error = TypeError("same")  # same words, another failure: logged too
        balancer.refresh()
    assert caplog.messages == [
        "strategy flaky failed building a picker; "
        "calls go round robin over the available endpoints until it recovers",
        "strategy flaky failed refreshing weights; "
        "calls go round robin over the available endpoints until it recovers",
        "strategy flaky works again",
        *[
            "strategy flaky failed refreshing weights; "
            "calls go round robin over the available endpoints until it recovers"
        ]
        * 2,
    ]
    errors = [record.exc_info[1] if record.exc_info else None for record in caplog.records]
    assert [type(error) for error in errors] == [
        ValueError,
        KeyError,
        type(None),
        ValueError,
        TypeError,
    ]
    assert balancer.picker.endpoints == (first, second, third)


def test_a_working_strategy_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="resilientrpc.balancer"):
        balancer = Balancer(RoundRobinStrategy())
        balancer.refresh()  # before the first resolution: no error to report
        assert balancer.picker.error is None
        balancer.set_addresses(ADDRESSES[:1])
        all_ready(balancer)
        balancer.refresh()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- listeners and shutdown -------------------------------------------------------------


def test_listeners_hear_every_picker_and_one_that_raises_stops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    balancer = balancer_of(1)
    heard: list[Picker] = []

    def broken(picker: Picker) -> None:
        raise RuntimeError("listener bug")

    balancer.add_listener(broken)
    balancer.add_listener(heard.append)
    balancer.remove_listener(lambda picker: None)  # never added: ignored
    with caplog.at_level(logging.ERROR, logger="resilientrpc.balancer"):
        balancer.set_state(balancer.endpoints[0], C.READY)
    assert heard == [balancer.picker]
    assert caplog.messages == [f"picker listener {broken!r} failed"]
    balancer.remove_listener(heard.append)
    balancer.remove_listener(broken)
    balancer.shutdown()
    assert heard == [heard[0]]


def test_shutdown_publishes_the_final_picker_once() -> None:
    balancer = balancer_of(2)
    all_ready(balancer)
    heard: list[Picker] = []
    balancer.add_listener(heard.append)
    balancer.shutdown()
    (final,) = heard
    assert (final.state, final.members) == (C.SHUTDOWN, balancer.endpoints)
    assert {e.state for e in balancer.endpoints} == {C.SHUTDOWN}
    balancer.shutdown()
    balancer.rebuild()
    balancer.set_resolution_error("late")
    assert heard == [final] and balancer.picker is final


def test_refresh_asks_the_strategy_then_publishes() -> None:
    clock = Clock()
    balancer = Balancer(WeightedRoundRobinStrategy(clock=clock), clock=clock)
    balancer.set_addresses(ADDRESSES[:1])
    (endpoint,) = balancer.endpoints
    balancer.set_state(endpoint, C.READY)
    picker = balancer.picker
    balancer.refresh()
    assert endpoint.weight == 0.0  # no load report yet
    assert balancer.picker is not picker


def test_after_the_grace_no_newcomer_holds_the_first_ready_picker() -> None:
    """The grace ends while no endpoint is READY; a newcomer then must not hold start-up."""
    balancer, timers = starting(2)
    first, second = balancer.endpoints
    balancer.set_state(first, C.READY)
    balancer.set_state(first, C.TRANSIENT_FAILURE)  # the only ready one drops again
    ((_delay, end_grace),) = timers.scheduled
    end_grace()
    assert balancer.picker.state is C.CONNECTING  # second still on its first attempt
    balancer.set_addresses([first.address, second.address, "127.0.0.1:10003"])
    balancer.set_state(first, C.READY)
    assert (balancer.picker.state, balancer.picker.endpoints) == (C.READY, (first,))
    assert len(timers.scheduled) == 1  # one grace per channel


def test_pick_first_does_not_wait_once_the_first_in_order_is_ready() -> None:
    balancer, timers = starting(3, strategy=PickFirstStrategy())
    first, _second, _third = balancer.endpoints
    balancer.set_state(first, C.READY)  # the others still connecting: nothing to wait for
    assert (balancer.picker.state, balancer.picker.endpoints) == (C.READY, (first,))
    assert timers.scheduled == []


def test_pick_first_waits_for_an_earlier_address_still_connecting() -> None:
    balancer, timers = starting(3, strategy=PickFirstStrategy())
    first, second, third = balancer.endpoints
    balancer.set_state(third, C.READY)  # first and second might still win
    assert balancer.picker.state is C.CONNECTING
    balancer.set_state(first, C.TRANSIENT_FAILURE)
    assert balancer.picker.state is C.CONNECTING  # second still before third
    balancer.set_state(second, C.READY)
    assert balancer.picker.state is C.READY
    pick = balancer.picker.pick(None)
    assert pick is not None and pick.endpoint is second
    assert len(timers.scheduled) == 1


class _Handle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_shutdown_cancels_a_pending_grace_timer() -> None:
    handles: list[_Handle] = []

    def timer(delay: float, function: Callable[[], None]) -> _Handle:
        handles.append(_Handle())
        return handles[-1]

    balancer = Balancer(RoundRobinStrategy())
    balancer.start(timer)
    balancer.set_addresses(ADDRESSES[:2])
    balancer.set_state(balancer.endpoints[0], C.READY)
    assert len(handles) == 1 and not handles[0].cancelled
    balancer.shutdown()
    assert handles[0].cancelled


class _UnsureStrategy(RoundRobinStrategy):
    def worth_waiting_for(self, *_args: object) -> bool:
        raise ValueError("cannot tell")


def test_a_strategy_failing_to_decide_on_the_grace_gets_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timers = Timers()
    balancer = Balancer(_UnsureStrategy())
    balancer.start(timers)
    balancer.set_addresses(ADDRESSES[:2])
    with caplog.at_level(logging.ERROR, logger="resilientrpc.balancer"):
        balancer.set_state(balancer.endpoints[0], C.READY)
    assert balancer.picker.state is C.CONNECTING  # waits, as by default
    assert len(timers.scheduled) == 1
    [record] = caplog.records
    assert record.getMessage().startswith(
        "strategy round_robin failed deciding on the start-up grace;"
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
