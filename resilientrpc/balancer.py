"""The balancer: the one writer of endpoint state, publishing an immutable picker.

Every change (membership, connectivity, health, ejection, weights) goes through one of
the balancer's methods, which the channel's background loop calls one at a time. Each
change ends in :meth:`Balancer.rebuild`, which builds a new :class:`Picker` and publishes
it by replacing ``self.picker``; listeners are then told, outside any lock.

Lock order: the balancer holds no lock while it calls listeners; endpoints' own locks
are only ever taken alone, for a few arithmetic operations.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import grpc

from resilientrpc.endpoint import Connectivity, Endpoint, EndpointStatus
from resilientrpc.picker import Picker, aggregate_state, empty_picker
from resilientrpc.strategies import Strategy

__all__ = ["Balancer"]

_log = logging.getLogger(__name__)

Listener = Callable[[Picker], None]


class Balancer:
    """Owns a channel's endpoints; turns every state change into a new picker."""

    def __init__(self, strategy: Strategy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.strategy = strategy
        self._clock = clock
        self._endpoints: dict[str, Endpoint] = {}
        self._listeners: list[Listener] = []
        self._resolution_error: str | None = None
        self.picker: Picker = empty_picker(Connectivity.IDLE)

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
            endpoints[address] = endpoint
        for endpoint in removed:
            endpoint.state = Connectivity.SHUTDOWN
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
        self.strategy.refresh(self.endpoints)
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
        if ready:
            picker = Picker(
                Connectivity.READY, ready, members, self.strategy.chooser(ready, members)
            )
        else:
            state = aggregate_state(members) if members else Connectivity.TRANSIENT_FAILURE
            picker = empty_picker(state, members, self._resolution_error)
        self._publish(picker)

    def shutdown(self) -> None:
        """Publish the final, empty SHUTDOWN picker; every waiting call is released."""
        if self.picker.state is Connectivity.SHUTDOWN:
            return
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
