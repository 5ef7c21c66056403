"""The picker and the routing decision both drivers share, as pure functions of a snapshot."""

from __future__ import annotations

import grpc
import pytest

from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.picker import (
    Decision,
    Metadata,
    Picker,
    PickResult,
    Status,
    Wait,
    aggregate_state,
    deadline_status,
    decide,
    empty_picker,
    next_step,
    no_endpoint_details,
    no_endpoint_status,
    ready_pick,
    route,
)
from tests.fakes import Clock, ready_endpoints

C = grpc.ChannelConnectivity
READY, IDLE, CONNECTING = C.READY, C.IDLE, C.CONNECTING
FAILURE, SHUTDOWN = C.TRANSIENT_FAILURE, C.SHUTDOWN
ALL_STATES = (IDLE, CONNECTING, READY, FAILURE, SHUTDOWN)


class Recorder:
    """A chooser that returns ``endpoint`` and remembers the metadata it was asked with."""

    def __init__(self, endpoint: Endpoint | None) -> None:
        self.endpoint = endpoint
        self.seen: list[Metadata | None] = []

    def __call__(self, metadata: Metadata | None) -> Endpoint | None:
        self.seen.append(metadata)
        return self.endpoint


def picker_in(state: grpc.ChannelConnectivity, choose: Recorder | None = None) -> Picker:
    members = ready_endpoints(2)
    return Picker(state, members[:1], members, choose or Recorder(members[0]))


def test_picker_holds_its_snapshot() -> None:
    members = ready_endpoints(2)
    picker = Picker(READY, members[:1], members, Recorder(None), "boom")
    assert (picker.state, picker.endpoints, picker.members, picker.error) == (
        READY,
        members[:1],
        members,
        "boom",
    )
    assert repr(picker) == "Picker(READY, ['127.0.0.1:10000'])"


def test_pick_hands_the_metadata_to_the_chooser_and_starts_the_attempt() -> None:
    clock = Clock(now=7.0)
    (endpoint,) = ready_endpoints(1, clock)
    choose = Recorder(endpoint)
    metadata = [("x-key", "v")]
    result = Picker(READY, (endpoint,), (endpoint,), choose).pick(metadata)
    assert choose.seen == [metadata]
    assert result == PickResult(endpoint, 7.0, endpoint.record)
    assert endpoint.outstanding == 1
    result.done(Outcome(grpc.StatusCode.OK, 0.01))
    assert (endpoint.outstanding, endpoint.calls) == (0, 1)


def test_a_pick_that_finds_nothing_starts_nothing() -> None:
    (endpoint,) = ready_endpoints(1)
    assert Picker(READY, (endpoint,), (endpoint,), Recorder(None)).pick() is None
    assert endpoint.outstanding == 0


def test_empty_picker_has_members_but_nothing_to_pick() -> None:
    members = ready_endpoints(2)
    picker = empty_picker(CONNECTING, members, "why")
    assert (picker.state, picker.endpoints, picker.members, picker.error) == (
        CONNECTING,
        (),
        members,
        "why",
    )
    assert picker.pick() is None
    assert empty_picker(IDLE).members == ()


def _in_states(*states: grpc.ChannelConnectivity) -> tuple[Endpoint, ...]:
    endpoints = ready_endpoints(len(states))
    for endpoint, state in zip(endpoints, states, strict=True):
        endpoint.state = state
    return endpoints


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((), FAILURE),
        ((FAILURE, READY), READY),
        ((FAILURE, IDLE), CONNECTING),
        ((CONNECTING, FAILURE), CONNECTING),
        ((FAILURE, SHUTDOWN), FAILURE),
    ],
)
def test_aggregate_state_follows_round_robin_rule(
    states: tuple[grpc.ChannelConnectivity, ...], expected: grpc.ChannelConnectivity
) -> None:
    assert aggregate_state(_in_states(*states)) is expected


def test_a_ready_endpoint_that_may_not_take_traffic_does_not_make_the_channel_ready() -> None:
    unhealthy, ejected = ready_endpoints(2)
    unhealthy.healthy = False
    ejected.ejected = True
    assert aggregate_state((unhealthy, ejected)) is FAILURE


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("wait_for_ready", [False, True])
def test_decide_follows_grpc_semantics(
    state: grpc.ChannelConnectivity, wait_for_ready: bool
) -> None:
    expected = {
        READY: Decision.SEND,
        SHUTDOWN: Decision.FAIL,
        IDLE: Decision.WAIT,
        CONNECTING: Decision.WAIT,
        FAILURE: Decision.WAIT if wait_for_ready else Decision.FAIL,
    }[state]
    assert decide(picker_in(state), wait_for_ready) is expected


@pytest.mark.parametrize("state", ALL_STATES)
def test_ready_pick_picks_from_ready_pickers_only(state: grpc.ChannelConnectivity) -> None:
    choose = Recorder(ready_endpoints(1)[0])
    result = ready_pick(picker_in(state, choose), [("k", "v")])
    if state is READY:
        assert result is not None and result.endpoint is choose.endpoint
        assert choose.seen == [[("k", "v")]]
    else:
        assert result is None and choose.seen == []


@pytest.mark.parametrize("wait_for_ready", [False, True])
def test_route(wait_for_ready: bool) -> None:
    choose = Recorder(ready_endpoints(1)[0])
    result = route(picker_in(READY, choose), [("k", "v")], wait_for_ready)
    assert isinstance(result, PickResult) and result.endpoint is choose.endpoint
    assert choose.seen == [[("k", "v")]]
    # READY, but the strategy finds nothing for this call: as if there were no endpoint.
    nothing = route(picker_in(READY, Recorder(None)), None, wait_for_ready)
    assert nothing is (Decision.WAIT if wait_for_ready else Decision.FAIL)
    assert route(picker_in(CONNECTING), None, wait_for_ready) is Decision.WAIT
    assert route(picker_in(SHUTDOWN), None, wait_for_ready) is Decision.FAIL


def test_next_step_sends_on_a_pick() -> None:
    choose = Recorder(ready_endpoints(1)[0])
    step = next_step(picker_in(READY, choose), [("k", "v")], False, None, 0.0)
    assert isinstance(step, PickResult) and step.endpoint is choose.endpoint
    assert choose.seen == [[("k", "v")]]


def test_next_step_fails_at_once_with_the_no_endpoint_status() -> None:
    picker = picker_in(FAILURE)
    assert next_step(picker, None, False, 10.0, 0.0) == no_endpoint_status(picker)
    nothing = picker_in(READY, Recorder(None))
    assert next_step(nothing, None, False, None, 0.0) == no_endpoint_status(nothing)


@pytest.mark.parametrize(
    ("deadline", "now", "expected"),
    [(None, 5.0, Wait(None)), (10.0, 4.0, Wait(6.0)), (10.0, 9.5, Wait(0.5))],
)
def test_next_step_waits_at_most_until_the_deadline(
    deadline: float | None, now: float, expected: Wait
) -> None:
    assert next_step(picker_in(CONNECTING), None, False, deadline, now) == expected
    assert next_step(picker_in(FAILURE), None, True, deadline, now) == expected


@pytest.mark.parametrize("now", [10.0, 11.0])
def test_next_step_ends_a_call_whose_deadline_passed_while_it_waited(now: float) -> None:
    picker = picker_in(CONNECTING)
    assert next_step(picker, None, True, 10.0, now) == deadline_status(picker)


def test_no_endpoint_status_is_cancelled_once_closed_else_unavailable() -> None:
    assert no_endpoint_status(picker_in(SHUTDOWN)) == Status(
        grpc.StatusCode.CANCELLED, "channel closed"
    )
    picker = picker_in(FAILURE)
    assert no_endpoint_status(picker) == Status(
        grpc.StatusCode.UNAVAILABLE, no_endpoint_details(picker)
    )


def test_deadline_status_names_what_the_call_waited_for() -> None:
    (endpoint,) = _in_states(CONNECTING)
    assert deadline_status(empty_picker(CONNECTING, (endpoint,))) == Status(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "deadline exceeded while waiting for an endpoint; "
        "no endpoint available: 127.0.0.1:10000 (CONNECTING)",
    )


def test_no_endpoint_details_say_what_went_wrong_with_each_address() -> None:
    refused, failing, quiet, ejected = _in_states(FAILURE, READY, IDLE, READY)
    refused.connect_error = "connection refused"
    refused.last_error = "UNAVAILABLE: old"
    failing.healthy = False
    failing.last_error = "UNAVAILABLE: down"
    ejected.ejected = True
    ejected.healthy = False
    members = (refused, failing, quiet, ejected)
    assert no_endpoint_details(empty_picker(FAILURE, members)) == (
        "no endpoint available: "
        "127.0.0.1:10000 (connection refused), "
        "127.0.0.1:10001 (health check failing; UNAVAILABLE: down), "
        "127.0.0.1:10002 (IDLE), "
        "127.0.0.1:10003 (ejected by outlier detection; health check failing; READY)"
    )


def test_no_endpoint_details_without_members_name_the_resolver() -> None:
    assert no_endpoint_details(empty_picker(FAILURE)) == (
        "no endpoint available: the resolver returned no addresses"
    )
    assert no_endpoint_details(empty_picker(FAILURE, (), "no such host")) == (
        "no endpoint available: no such host"
    )
    assert no_endpoint_details(picker_in(SHUTDOWN)) == "channel closed"
