"""The balancer: the one writer of endpoint state, publishing an immutable picker.

Every change (membership, connectivity, health, ejection, weights) goes through one of
the balancer's methods, which the channel's background loop calls one at a time. Each
change ends in :meth:`Balancer.rebuild`, which builds a new :class:`Picker` and publishes
it by replacing ``self.picker``; listeners are then told, outside any lock.

Lock order: the balancer holds no lock while it calls listeners; endpoints' own locks
are only ever taken alone, for a few arithmetic operations.

Nothing a strategy does can stop the balancer: if building a chooser (or refreshing
weights) raises, the error is logged and the picker falls back to plain round robin over
the endpoints that are available *now*. (Keeping the last good picker instead would keep
sending calls to an endpoint that has died since; a fallback built from the current
states never does.)

Endpoints move in and out of traffic by connectivity (:meth:`Balancer.set_state`),
health (:meth:`Balancer.set_health`, from the heartbeat monitor) and outlier detection
(:meth:`Balancer.eject`, :meth:`Balancer.half_open`, :meth:`Balancer.readmit`). Each
such transition is recorded as an :class:`~resilientrpc.events.EndpointEvent`: kept on
the endpoint, logged on ``resilientrpc.events`` and handed to event listeners.

Panic threshold (Envoy's ``healthy_panic_threshold``, default 50 %): when fewer than that
share of the members are available, the picker spreads calls over every *connected*
member, unhealthy and ejected ones included, rather than crush the few left. (Members
with no connection are never picked: a call there could only fail; nor are members still
waiting for their first health report.)

Slow start (optional window): an endpoint that has just become available gets a share
that ramps up linearly over the window, from :data:`SLOW_START_MIN_WEIGHT` of a full one.

Start-up: a channel's first READY picker waits, for at most :data:`STARTUP_GRACE`, until
every endpoint has had its first answer (connected, or failed). Calls issued before the
channel is ready then spread over every backend that connects within the grace, instead
of all landing on whichever connected first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from resilientrpc import events
from resilientrpc.endpoint import FAILURE_CODES, Connectivity, Endpoint, EndpointStatus
from resilientrpc.events import EndpointEvent
from resilientrpc.picker import Chooser, Metadata, Picker, aggregate_state, empty_picker
from resilientrpc.strategies import Strategy

__all__ = [
    "DEFAULT_PANIC_THRESHOLD",
    "SLOW_START_MIN_WEIGHT",
    "STARTUP_GRACE",
    "Balancer",
    "EventListener",
    "Timer",
]

_log = logging.getLogger(__name__)
_events_log = logging.getLogger("resilientrpc.events")

Listener = Callable[[Picker], None]
EventListener = Callable[[EndpointEvent], None]
#: The start-up grace's timer has not been started.
_NOT_STARTED: Any = object()
#: States that answer an endpoint's first connection attempt.
_ANSWERS = (Connectivity.READY, Connectivity.TRANSIENT_FAILURE)
#: Runs a function after a delay in seconds on the balancer's loop.
Timer = Callable[[float, Callable[[], None]], object]

#: Longest time the first READY picker waits for endpoints still on their first
#: connection attempt (seconds).
STARTUP_GRACE = 0.2
#: Percent of members that must be available, below which the channel panics (Envoy's).
DEFAULT_PANIC_THRESHOLD = 50.0
#: The share of a full weight an endpoint starts its slow start with.
SLOW_START_MIN_WEIGHT = 0.1


def _slow_start_chooser(
    choose: Chooser,
    ramping: dict[Endpoint, float],
    window: float,
    clock: Callable[[], float],
    rng: random.Random,
) -> Chooser:
    """``choose``, but an endpoint still ramping up is kept only with its ramp's chance.

    A ramping endpoint's weight grows linearly from :data:`SLOW_START_MIN_WEIGHT` to 1
    over ``window`` seconds since it became available; when the chance is against it,
    the call takes the strategy's next choice instead.
    """

    def choose_ramped(metadata: Metadata | None) -> Endpoint | None:
        endpoint = choose(metadata)
        start = ramping.get(endpoint) if endpoint is not None else None
        if start is not None:
            weight = max((clock() - start) / window, SLOW_START_MIN_WEIGHT)
            if weight < 1.0 and rng.random() >= weight:
                return choose(metadata)
        return endpoint

    return choose_ramped


def _fallback_chooser(ready: tuple[Endpoint, ...]) -> Chooser:
    """Plain round robin over ``ready``: what calls get when the strategy fails."""
    sequence = itertools.count()
    count = len(ready)

    def choose(metadata: Metadata | None) -> Endpoint:
        return ready[next(sequence) % count]

    return choose


class Balancer:
    """Owns a channel's endpoints; turns every state change into a new picker."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        startup_grace: float = STARTUP_GRACE,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        slow_start_window: float = 0.0,
        failure_codes: frozenset[grpc.StatusCode] = FAILURE_CODES,
        health_checked: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.strategy = strategy
        self._clock = clock
        self._wall_clock = wall_clock
        self._panic_threshold = panic_threshold
        self._slow_start_window = slow_start_window
        self._failure_codes = failure_codes
        self._health_checked = health_checked
        self._rng = rng if rng is not None else random.Random()
        #: Whether the last picker spread calls over unavailable endpoints (panic mode).
        self.panic = False
        self._ramp_timer: Any = None
        #: The first resolution's endpoints not yet available (no slow start for them).
        self._initial: set[Endpoint] = set()
        #: Clock time of the channel's first READY picker.
        self._ready_since: float | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        #: Set on every endpoint added (outlier detection's outcome observer).
        self.observer: Callable[..., None] | None = None
        self.streak_limit = 0
        self._resolution_error: str | None = None
        self.picker: Picker = empty_picker(Connectivity.IDLE)
        self._startup_grace = startup_grace
        #: Endpoints yet to answer their first connection attempt while starting up;
        #: None once the channel has been READY (start-up is over for good).
        self._unanswered: set[Endpoint] | None = set()
        self._timer: Timer | None = None
        #: The grace's timer handle once started (whatever the timer returned).
        self._grace: Any = _NOT_STARTED
        #: The last strategy failure logged (to log each distinct one once).
        self._strategy_error: str | None = None

    def start(self, timer: Timer) -> None:
        """Give the balancer a timer on its loop (the start-up grace needs one)."""
        self._timer = timer

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(self._endpoints.values())

    def statuses(self) -> list[EndpointStatus]:
        return [endpoint.status() for endpoint in self._endpoints.values()]

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` on the balancer's loop for every transition."""
        self._event_listeners.append(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        with contextlib.suppress(ValueError):
            self._event_listeners.remove(listener)

    def _event(self, kind: str, endpoint: Endpoint | None, reason: str) -> None:
        """Record one transition: on the endpoint, in the log, to every event listener."""
        now = self._clock()
        event = EndpointEvent(
            kind, endpoint.address if endpoint else "", reason, self._wall_clock(), now
        )
        if endpoint is not None:
            endpoint.events.append(event)
            endpoint.reason = reason
            endpoint.since = event.time
        _events_log.info("%s %s: %s", event.address or "channel", kind, reason)
        for listener in tuple(self._event_listeners):
            try:
                listener(event)
            except Exception:  # a listener must never stop state changes
                _log.exception("event listener %r failed", listener)

    def set_addresses(self, addresses: Sequence[str]) -> tuple[list[Endpoint], list[Endpoint]]:
        """Make the membership exactly ``addresses``; returns (added, removed) endpoints.

        Endpoints kept keep their counters and state. The caller connects the added ones
        (sets ``transport``) before reporting their connectivity, and closes the removed.
        """
        self._resolution_error = None
        wanted = dict.fromkeys(addresses)
        removed = [e for a, e in self._endpoints.items() if a not in wanted]
        added: list[Endpoint] = []
        endpoints: dict[str, Endpoint] = {}
        for address in wanted:
            endpoint = self._endpoints.get(address)
            if endpoint is None:
                endpoint = Endpoint(
                    address,
                    static_weight=self.strategy.static_weight(address),
                    decay=self.strategy.decay,
                    clock=self._clock,
                )
                endpoint.failure_codes = self._failure_codes
                endpoint.health_checked = self._health_checked
                endpoint.observer = self.observer
                endpoint.streak_limit = self.streak_limit
                added.append(endpoint)
                if self._unanswered is not None:
                    self._unanswered.add(endpoint)
            endpoints[address] = endpoint
        for endpoint in removed:
            self._initial.discard(endpoint)
            endpoint.state = Connectivity.SHUTDOWN
            if self._unanswered is not None:
                self._unanswered.discard(endpoint)
        first = self.picker.state is Connectivity.IDLE  # the first answer, even an empty one
        if first:
            self._initial.update(added)
        changed = bool(added or removed) or first or self.picker.error is not None
        self._endpoints = endpoints
        if changed:  # an unchanged re-resolution keeps the picker (and round robin's place)
            self.rebuild()
        return added, removed

    def set_state(
        self, endpoint: Endpoint, state: grpc.ChannelConnectivity, error: str | None = None
    ) -> None:
        """Record a connectivity change of ``endpoint``.

        TRANSIENT_FAILURE is sticky: an endpoint that failed stays failed through its
        reconnect attempts (CONNECTING / IDLE) until it is READY again, as in gRPC.
        """
        if self._endpoints.get(endpoint.address) is not endpoint:
            return  # removed meanwhile
        previous = endpoint.state
        if self._unanswered is not None and state in _ANSWERS:
            self._unanswered.discard(endpoint)
        if error is not None:
            endpoint.connect_error = error
        elif state is Connectivity.READY:
            endpoint.connect_error = None
        if previous is Connectivity.TRANSIENT_FAILURE and state in (
            Connectivity.CONNECTING,
            Connectivity.IDLE,
        ):
            return
        if state is previous:
            return
        endpoint.state = state
        _log.debug("endpoint %s: %s -> %s", endpoint.address, previous.name, state.name)
        if state is Connectivity.READY or previous is Connectivity.READY:
            reason = state.name if error is None else f"{state.name}: {error}"
            self._event(events.CONNECTIVITY, endpoint, reason)
        self.rebuild()

    def set_health(
        self,
        endpoint: Endpoint,
        healthy: bool | None,
        reason: str,
        kind: str = events.HEALTH,
    ) -> None:
        """Record what health checking says of ``endpoint`` (None: no verdict, e.g. off).

        ``kind`` is :data:`~resilientrpc.events.HEARTBEAT_MISSED` when the verdict is a
        missed heartbeat rather than a reported status. Repeats change nothing.
        """
        if self._endpoints.get(endpoint.address) is not endpoint:
            return
        if endpoint.healthy is healthy:
            return
        endpoint.healthy = healthy
        self._event(kind, endpoint, reason)
        self.rebuild()

    def eject(self, endpoint: Endpoint, reason: str) -> bool:
        """Take ``endpoint`` out of traffic (outlier detection); False if it is not a member.

        The caller decides whether an ejection is allowed (max ejection percent, never
        the last endpoint); this only records it and publishes the picker without it.
        """
        if self._endpoints.get(endpoint.address) is not endpoint:
            return False
        endpoint.ejected = True
        endpoint.half_open = False
        self._event(events.EJECTED, endpoint, reason)
        self.rebuild()
        return True

    def half_open(self, endpoint: Endpoint, reason: str) -> None:
        """End ``endpoint``'s ejection on trial: it takes calls, whose outcomes decide."""
        if self._endpoints.get(endpoint.address) is not endpoint:
            return
        endpoint.ejected = False
        endpoint.half_open = True
        self._event(events.HALF_OPEN, endpoint, reason)
        self.rebuild()

    def readmit(self, endpoint: Endpoint, reason: str) -> None:
        """Give ``endpoint`` full traffic again (trials passed, or the ejection lifted)."""
        if self._endpoints.get(endpoint.address) is not endpoint:
            return
        if not (endpoint.ejected or endpoint.half_open):
            return
        endpoint.ejected = False
        endpoint.half_open = False
        self._event(events.READMITTED, endpoint, reason)
        self.rebuild()

    def refresh(self) -> None:
        """Let the strategy recompute weights, then publish a fresh picker."""
        try:
            self.strategy.refresh(self.endpoints)
        except Exception as error:
            self._strategy_failed("refreshing weights", error)
        self.rebuild()

    def set_resolution_error(self, error: str) -> None:
        """The resolver failed; with no endpoints yet, calls now fail with ``error``."""
        self._resolution_error = error
        self.rebuild()

    def rebuild(self) -> None:
        """Build and publish a picker from the current endpoint states."""
        if self.picker.state is Connectivity.SHUTDOWN:
            return
        members = self.endpoints
        now = self._clock()
        ready = []
        for endpoint in members:
            if endpoint.available:
                ready.append(endpoint)
                if endpoint.available_since is None:
                    # Slow start ramps up endpoints that come back, or join later; the
                    # channel's first members start at full weight if they are there
                    # within the start-up grace of the channel's first READY picker.
                    first = endpoint in self._initial and (
                        self._ready_since is None or now - self._ready_since <= self._startup_grace
                    )
                    endpoint.available_since = -math.inf if first else now
                    self._initial.discard(endpoint)
            else:
                endpoint.available_since = None
        ready_now = tuple(ready)
        ready_now = self._panic_check(ready_now, members)
        if ready_now and self._holding(ready_now, members):
            picker = empty_picker(Connectivity.CONNECTING, members)
        elif ready_now:
            self._unanswered = None  # READY once: start-up is over
            if self._ready_since is None:
                self._ready_since = now
            choose = self._chooser(ready_now, members)
            if self._slow_start_window > 0:
                choose = self._ramped(choose, ready_now, now)
            picker = Picker(
                Connectivity.READY, ready_now, members, choose, failover=self.strategy.failover
            )
        else:
            state = aggregate_state(members)  # TRANSIENT_FAILURE when there are none
            picker = empty_picker(state, members, self._resolution_error)
        self._publish(picker)

    def _panic_check(
        self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]
    ) -> tuple[Endpoint, ...]:
        """``ready``, or every connected member when too few are available (panic)."""
        panic = False
        threshold = self._panic_threshold
        if threshold > 0 and len(ready) * 100.0 < threshold * len(members):
            # Connected members with a verdict: one still waiting for its first health
            # report is not sent calls even in panic.
            connected = tuple(
                e
                for e in members
                if e.state is Connectivity.READY and not (e.health_checked and e.healthy is None)
            )
            if len(connected) > len(ready):
                panic = True
                ready = connected
        if panic is not self.panic:
            self.panic = panic
            available = sum(1 for e in members if e.available)
            share = f"{available} of {len(members)} endpoints available"
            if panic:
                reason = f"{share}, below the panic threshold of {threshold:g} %"
                self._event(events.PANIC_ENTERED, None, reason)
            else:
                self._event(events.PANIC_LEFT, None, share)
        return ready

    def _ramped(self, choose: Chooser, ready: tuple[Endpoint, ...], now: float) -> Chooser:
        """Slow start: ``choose`` damped for endpoints that became available recently."""
        window = self._slow_start_window
        ramping = {
            e: e.available_since
            for e in ready
            if e.available_since is not None and now - e.available_since < window
        }
        if not ramping or len(ramping) == len(ready):
            return choose
        if self._timer is not None:  # rebuild when the oldest ramp is done
            cancel = getattr(self._ramp_timer, "cancel", None)
            if cancel is not None:
                cancel()
            ends = min(ramping.values()) + window - now
            self._ramp_timer = self._timer(max(ends, 0.0) + 1e-3, self.rebuild)
        return _slow_start_chooser(choose, ramping, window, self._clock, self._rng)

    def _holding(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> bool:
        """Whether the first READY picker still waits for endpoints' first answers."""
        unanswered = self._unanswered
        if not unanswered or self._timer is None:
            return False
        try:
            worth_it = self.strategy.worth_waiting_for(ready, members, unanswered)
        except Exception as error:
            self._strategy_failed("deciding on the start-up grace", error)
            worth_it = True
        if not worth_it:
            return False
        if self._grace is _NOT_STARTED:
            self._grace = self._timer(self._startup_grace, self._end_grace)
        return True

    def _end_grace(self) -> None:
        """The grace is over: start-up ends for good, READY or not (one grace per channel)."""
        if self._unanswered is not None:
            self._unanswered = None
            self.rebuild()

    def _chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        """The strategy's chooser; round robin over ``ready`` if the strategy fails."""
        try:
            choose = self.strategy.chooser(ready, members)
        except Exception as error:
            self._strategy_failed("building a picker", error)
            return _fallback_chooser(ready)
        if self._strategy_error is not None:
            _log.warning("strategy %s works again", self.strategy.name)
            self._strategy_error = None
        return choose

    def _strategy_failed(self, doing: str, error: Exception) -> None:
        """Log a strategy failure, each distinct one once (rebuilds can be frequent)."""
        text = f"{type(error).__name__}: {error}"
        if text != self._strategy_error:
            self._strategy_error = text
            _log.error(
                "strategy %s failed %s; calls go round robin over the available "
                "endpoints until it recovers",
                self.strategy.name,
                doing,
                exc_info=error,
            )

    def shutdown(self) -> None:
        """Publish the final, empty SHUTDOWN picker; every waiting call is released."""
        if self.picker.state is Connectivity.SHUTDOWN:
            return
        for timer in (self._grace, self._ramp_timer):
            cancel = getattr(timer, "cancel", None)
            if cancel is not None:  # an asyncio TimerHandle: a pending timer goes too
                cancel()
        for endpoint in self._endpoints.values():
            endpoint.state = Connectivity.SHUTDOWN
        self._publish(empty_picker(Connectivity.SHUTDOWN, self.endpoints))

    def _publish(self, picker: Picker) -> None:
        self.picker = picker
        for listener in tuple(self._listeners):
            try:
                listener(picker)
            except Exception:  # a listener must never stop state changes
                _log.exception("picker listener %r failed", listener)
