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

Start-up: a channel's first READY picker waits, for at most :data:`STARTUP_GRACE`, until
every endpoint has had its first answer (connected, or failed). Calls issued before the
channel is ready then spread over every backend that connects within the grace, instead
of all landing on whichever connected first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from resilientrpc.endpoint import Connectivity, Endpoint, EndpointStatus
from resilientrpc.picker import Chooser, Metadata, Picker, aggregate_state, empty_picker
from resilientrpc.strategies import Strategy

__all__ = ["STARTUP_GRACE", "Balancer", "Timer"]

_log = logging.getLogger(__name__)

Listener = Callable[[Picker], None]
#: The start-up grace's timer has not been started.
_NOT_STARTED: Any = object()
#: States that answer an endpoint's first connection attempt.
_ANSWERS = (Connectivity.READY, Connectivity.TRANSIENT_FAILURE)
#: Runs a function after a delay in seconds on the balancer's loop.
Timer = Callable[[float, Callable[[], None]], object]

#: Longest time the first READY picker waits for endpoints still on their first
#: connection attempt (seconds).
STARTUP_GRACE = 0.2


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
        startup_grace: float = STARTUP_GRACE,
    ) -> None:
        self.strategy = strategy
        self._clock = clock
        self._endpoints: dict[str, Endpoint] = {}
        self._listeners: list[Listener] = []
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
                added.append(endpoint)
                if self._unanswered is not None:
                    self._unanswered.add(endpoint)
            endpoints[address] = endpoint
        for endpoint in removed:
            endpoint.state = Connectivity.SHUTDOWN
            if self._unanswered is not None:
                self._unanswered.discard(endpoint)
        first = self.picker.state is Connectivity.IDLE  # the first answer, even an empty one
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
        ready = tuple(e for e in members if e.available)
        if ready and self._holding(ready, members):
            picker = empty_picker(Connectivity.CONNECTING, members)
        elif ready:
            self._unanswered = None  # READY once: start-up is over
            picker = Picker(Connectivity.READY, ready, members, self._chooser(ready, members))
        else:
            state = aggregate_state(members)  # TRANSIENT_FAILURE when there are none
            picker = empty_picker(state, members, self._resolution_error)
        self._publish(picker)

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
        cancel = getattr(self._grace, "cancel", None)
        if cancel is not None:  # an asyncio TimerHandle: a pending grace goes too
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
