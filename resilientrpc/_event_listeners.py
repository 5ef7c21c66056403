"""A channel's event listeners: user callbacks told of every endpoint transition and of
what the retry step did (retries, hedges, budget refusals, stops).

Both channels' ``add_event_listener`` / ``remove_event_listener`` keep their callbacks
here. The balancer hands each :class:`~resilientrpc.events.EndpointEvent` to
:meth:`EventListeners.on_event` on the channel's background loop, in the middle of a
state change; that only queues the delivery with the channel's ``schedule`` (the sync
channel's callback thread, the asyncio channel's ``loop.call_soon``), so user code never
runs inside the balancer and may call, subscribe to or close the channel.

Re-entrancy: a callback may be the last reference to an object whose finaliser removes
it, so the table is replaced (copy on write) and the old one let go outside ``_lock``;
callbacks run outside it. A callback that raises is logged and the others still run.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from resilientrpc._calls import guarded
from resilientrpc.events import EndpointEvent
from resilientrpc.retry import RetryEvent

__all__ = ["EventCallback", "EventListeners", "RetryCallback", "RetryListeners"]

E = TypeVar("E")
#: An endpoint event listener (``add_event_listener``).
EventCallback = Callable[[EndpointEvent], object]
#: A retry event listener (``add_retry_listener``).
RetryCallback = Callable[[RetryEvent], object]

_events_log = logging.getLogger("resilientrpc.events")


class Listeners(Generic[E]):
    """The callbacks of one channel; ``schedule(fn)`` runs ``fn`` where user code may run."""

    def __init__(self, schedule: Callable[[Callable[[], object]], object]) -> None:
        self._schedule = schedule
        self._lock = threading.Lock()
        self._callbacks: tuple[Callable[[E], object], ...] = ()

    def add(self, callback: Callable[[E], object]) -> None:
        with self._lock:
            old, self._callbacks = self._callbacks, (*self._callbacks, callback)
        del old

    def remove(self, callback: Callable[[E], object]) -> None:
        """Stop telling ``callback`` (one registration of it); unknown ones are ignored."""
        with self._lock:
            old = self._callbacks
            if callback in old:
                index = old.index(callback)
                self._callbacks = old[:index] + old[index + 1 :]
        del old  # may hold the last reference to a callback: let it go outside the lock

    def on_event(self, event: E) -> None:
        """The source's listener: queue ``event`` for the callbacks."""
        if self._callbacks:
            self._schedule(functools.partial(self._deliver, event))

    def _deliver(self, event: E) -> None:
        for callback in self._callbacks:  # those registered now: a removed one is not told
            guarded(callback, event)


#: The endpoint transitions the balancer records.
EventListeners = Listeners[EndpointEvent]


class RetryListeners(Listeners[RetryEvent]):
    """What the retry step did for calls: each event also a debug line on
    ``resilientrpc.events``. The step decides on a caller's thread, grpc's callback
    thread or the loop; :meth:`on_event` only queues the delivery."""

    def on_event(self, event: RetryEvent) -> None:
        if _events_log.isEnabledFor(logging.DEBUG):
            _events_log.debug(
                "%s %s attempt %d%s%s%s",
                event.method,
                event.kind,
                event.attempt,
                f" {event.code.name}" if event.code is not None else "",
                f" on {event.address}" if event.address else "",
                f": {event.reason}" if event.reason else "",
            )
        super().on_event(event)
