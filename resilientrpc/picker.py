"""Pickers: immutable snapshots of the endpoints that may take traffic now.

A :class:`Picker` is built by the balancer after every change of endpoint state and
published by replacing one attribute. Picking is a pure function of the snapshot plus
the endpoints' own counters: it takes no lock a background task could hold and never
blocks. "No endpoint yet" is not a failure: :func:`decide` says whether a call should
go now, wait for the next picker, or fail at once.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple

import grpc

from resilientrpc.endpoint import Connectivity, Endpoint, Outcome

__all__ = [
    "Chooser",
    "Decision",
    "Metadata",
    "PickResult",
    "Picker",
    "Status",
    "Tried",
    "Wait",
    "aggregate_state",
    "deadline_status",
    "decide",
    "next_step",
    "no_endpoint_details",
    "no_endpoint_status",
    "ready_pick",
    "route",
]

Metadata = Sequence[tuple[str, str | bytes]]
#: A strategy's choice function over one snapshot: metadata in, endpoint (or None) out.
Chooser = Callable[[Metadata | None], Endpoint | None]


class Tried(frozenset[str]):
    """The addresses a call's earlier attempts went to, and among them ``unreachable``:
    those whose attempt never even reached a server (connection refused).

    A retry avoids all of them while another endpoint is available; once every endpoint
    has been tried it still avoids the unreachable ones while it can.

    >>> sorted(Tried({"a", "b"}, unreachable={"a"})), sorted(Tried({"a"}).unreachable)
    (['a', 'b'], [])
    """

    unreachable: frozenset[str]

    def __new__(cls, addresses: Iterable[str] = (), unreachable: Iterable[str] = ()) -> Tried:
        tried = super().__new__(cls, addresses)
        tried.unreachable = frozenset(unreachable)
        return tried


class PickResult(NamedTuple):
    """The endpoint chosen for one attempt, and the ``done`` its outcome must be reported to."""

    endpoint: Endpoint
    start: float
    done: Callable[[Outcome], None]


class Picker:
    """An immutable snapshot: aggregate state, the endpoints it may pick, and how to choose."""

    __slots__ = ("_choose", "endpoints", "error", "failover", "members", "state")

    def __init__(
        self,
        state: grpc.ChannelConnectivity,
        endpoints: tuple[Endpoint, ...],
        members: tuple[Endpoint, ...],
        choose: Chooser,
        error: str | None = None,
        *,
        failover: str = "random",
    ) -> None:
        self.state = state
        #: How a retry chooses among untried endpoints (:attr:`Strategy.failover`).
        self.failover = failover
        self.endpoints = endpoints
        self.members = members
        self._choose = choose
        #: Why there are no members, when the resolver said so (e.g. a DNS failure).
        self.error = error

    def __repr__(self) -> str:
        return f"Picker({self.state.name}, {[e.address for e in self.endpoints]})"

    def pick(self, metadata: Metadata | None = None) -> PickResult | None:
        """Choose an endpoint for one attempt; None when no endpoint can take it."""
        endpoint = self._choose(metadata)
        if endpoint is None:
            return None
        return PickResult(endpoint, endpoint.begin(), endpoint.record)

    def pick_avoiding(
        self, metadata: Metadata | None, tried: AbstractSet[str]
    ) -> PickResult | None:
        """:meth:`pick` for a retry: an endpoint whose address is not in ``tried``.

        A retry goes elsewhere while it can (Envoy's ``previous_hosts``), chosen as the
        strategy's :attr:`~resilientrpc.strategies.Strategy.failover` says: uniformly
        among the untried, the strategy's own choice (asked up to :data:`RECHOOSE` more
        times, then uniformly), or the first untried in order. Only when every endpoint
        has been tried is a tried one picked again, by the strategy.
        """
        untried = [e for e in self.endpoints if e.address not in tried]
        if not untried:
            unreachable = getattr(tried, "unreachable", None)
            if not unreachable:
                return self.pick(metadata)
            # Every endpoint tried: go back to one that at least answered.
            reachable = [e for e in self.endpoints if e.address not in unreachable]
            if not reachable:
                return self.pick(metadata)
            choice = self._choose(metadata)
            if choice is None or choice.address in unreachable:
                choice = random.choice(reachable)
            return PickResult(choice, choice.begin(), choice.record)
        failover = self.failover
        endpoint: Endpoint | None = None
        if failover == "ordered":
            endpoint = untried[0]
        elif failover == "strategy":
            for _ in range(1 + RECHOOSE):
                choice = self._choose(metadata)
                if choice is not None and choice.address not in tried:
                    endpoint = choice
                    break
        if endpoint is None:
            endpoint = random.choice(untried)
        return PickResult(endpoint, endpoint.begin(), endpoint.record)


#: How many more times :meth:`Picker.pick_avoiding` asks the strategy before drawing an
#: untried endpoint itself (a strategy such as ring_hash answers the same every time).
RECHOOSE = 2


def _choose_nothing(metadata: Metadata | None) -> Endpoint | None:
    return None


#: States in which the channel (or an endpoint) has not yet had its first answer.
_STARTING = (Connectivity.IDLE, Connectivity.CONNECTING)


def empty_picker(
    state: grpc.ChannelConnectivity, members: tuple[Endpoint, ...] = (), error: str | None = None
) -> Picker:
    """A picker with nothing to pick, in ``state``."""
    return Picker(state, (), members, _choose_nothing, error)


def aggregate_state(members: Sequence[Endpoint]) -> grpc.ChannelConnectivity:
    """The channel's state from its endpoints', by gRPC's rule for round_robin.

    READY if any endpoint can take traffic, else CONNECTING if any is still trying for the
    first time (IDLE counts as CONNECTING: we always ask it to connect), else
    TRANSIENT_FAILURE.
    """
    if any(endpoint.available for endpoint in members):
        return Connectivity.READY
    if any(endpoint.state in _STARTING for endpoint in members):
        return Connectivity.CONNECTING
    return Connectivity.TRANSIENT_FAILURE


class Decision(enum.Enum):
    """What a call does with the current picker."""

    SEND = "send"
    WAIT = "wait"
    FAIL = "fail"


def decide(picker: Picker, wait_for_ready: bool) -> Decision:
    """Whether a call should pick now, wait for a better picker, or fail at once.

    Calls queue while the channel is starting (IDLE: not yet resolved) or connecting for
    the first time; in TRANSIENT_FAILURE only ``wait_for_ready`` calls wait (gRPC's
    semantics).
    """
    state = picker.state
    if state is Connectivity.READY:
        return Decision.SEND
    if state is Connectivity.SHUTDOWN:
        return Decision.FAIL
    if state in _STARTING or wait_for_ready:
        return Decision.WAIT
    return Decision.FAIL


def ready_pick(
    picker: Picker, metadata: Metadata | None, tried: AbstractSet[str] | None = None
) -> PickResult | None:
    """A pick when ``picker`` is READY (the hot path of both drivers); None otherwise.

    ``tried``: addresses this call's earlier attempts went to, avoided while others exist.
    """
    if picker.state is Connectivity.READY:
        return picker.pick_avoiding(metadata, tried) if tried else picker.pick(metadata)
    return None


def route(
    picker: Picker,
    metadata: Metadata | None,
    wait_for_ready: bool,
    tried: AbstractSet[str] | None = None,
) -> PickResult | Decision:
    """One routing step of a call against ``picker``: a pick to send on, or WAIT / FAIL.

    Both drivers loop on this, waiting for the next picker (their only difference) after
    WAIT. A READY picker whose strategy finds nothing for this call counts as no endpoint.
    """
    decision = decide(picker, wait_for_ready)
    if decision is Decision.SEND:
        result = picker.pick_avoiding(metadata, tried) if tried else picker.pick(metadata)
        if result is not None:
            return result
        return Decision.WAIT if wait_for_ready else Decision.FAIL
    return decision


class Wait(NamedTuple):
    """Wait for the next picker, at most ``timeout`` seconds (None: no deadline)."""

    timeout: float | None


class Status(NamedTuple):
    """The status a call ends with on the client, without having reached a backend."""

    code: grpc.StatusCode
    details: str


def next_step(
    picker: Picker,
    metadata: Metadata | None,
    wait_for_ready: bool,
    deadline: float | None,
    now: float,
    tried: AbstractSet[str] | None = None,
) -> PickResult | Status | Wait:
    """What a call does next against ``picker``: send on a pick, end, or wait (how long).

    The whole routing decision of both drivers, the sync router's queue of deferred calls
    included; the drivers differ only in how they wait.
    """
    step = route(picker, metadata, wait_for_ready, tried)
    if isinstance(step, PickResult):
        return step
    if step is Decision.FAIL:
        return no_endpoint_status(picker)
    if deadline is None:
        return Wait(None)
    remaining = deadline - now
    if remaining <= 0:
        return deadline_status(picker)
    return Wait(remaining)


def no_endpoint_status(picker: Picker) -> Status:
    """Status of a call that found no endpoint and may not wait: CANCELLED once closed."""
    if picker.state is Connectivity.SHUTDOWN:
        return Status(grpc.StatusCode.CANCELLED, "channel closed")
    return Status(grpc.StatusCode.UNAVAILABLE, no_endpoint_details(picker))


def deadline_status(picker: Picker) -> Status:
    """Status of a call whose deadline passed while it waited for an endpoint."""
    return Status(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "deadline exceeded while waiting for an endpoint; " + no_endpoint_details(picker),
    )


def no_endpoint_details(picker: Picker) -> str:
    """The UNAVAILABLE details naming every address and what last went wrong with it."""
    if picker.state is Connectivity.SHUTDOWN:
        return "channel closed"
    if not picker.members:
        reason = picker.error or "the resolver returned no addresses"
        return f"no endpoint available: {reason}"
    parts = []
    for endpoint in picker.members:
        reason = endpoint.connect_error or endpoint.last_error or endpoint.state.name
        if endpoint.healthy is False:
            reason = f"health check failing; {reason}"
        if endpoint.ejected:
            reason = f"ejected by outlier detection; {reason}"
        parts.append(f"{endpoint.address} ({reason})")
    return "no endpoint available: " + ", ".join(parts)
