"""Routing one attempt: pick now, wait for a picker that can take it, or fail at once.

The decision is :func:`resilientrpc.picker.route`, shared by both drivers; this module
is the synchronous driver's waiting around it. A blocking call waits in its own thread
on a condition variable the balancer's listener notifies (:meth:`SyncRouter.pick`). A
call that must not block - a future, a stream - is queued instead
(:meth:`SyncRouter.defer`) and started from the balancer's listener, on the channel's
background loop, when a picker can take it; its deadline is a timer on that loop. The
asyncio twin waits on an asyncio future instead.

Lock order: the router's lock is taken alone; attempts are started and failed outside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from resilientrpc._calls import LocalRpcError
from resilientrpc.balancer import Balancer
from resilientrpc.picker import (
    Decision,
    Metadata,
    Picker,
    PickResult,
    deadline_status,
    decide,
    no_endpoint_status,
    ready_pick,
    route,
)

__all__ = ["SyncRouter", "no_endpoint_error"]


def no_endpoint_error(picker: Picker) -> LocalRpcError:
    """The error of a call that found no endpoint and may not wait (or the channel closed)."""
    return LocalRpcError(*no_endpoint_status(picker))


def deadline_error(picker: Picker) -> LocalRpcError:
    return LocalRpcError(*deadline_status(picker))


#: Starts the attempt of a deferred call on the pick, with the timeout left.
Start = Callable[[PickResult, "float | None"], None]
#: Schedules ``function`` on the background loop after ``delay`` seconds (thread-safe).
CallLater = Callable[[float, Callable[[], None]], None]


class _Waiter:
    """One deferred call, queued until a picker can take it."""

    __slots__ = ("deadline", "fail", "metadata", "start", "wait_for_ready")

    def __init__(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        deadline: float | None,
        start: Start,
        fail: Callable[[LocalRpcError], object],
    ) -> None:
        self.metadata = metadata
        self.wait_for_ready = wait_for_ready
        self.deadline = deadline
        self.start = start
        self.fail = fail


class SyncRouter:
    """Picks endpoints for synchronous callers, waiting when gRPC semantics say to wait."""

    def __init__(
        self,
        balancer: Balancer,
        *,
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater | None = None,
    ) -> None:
        self._balancer = balancer
        self._clock = clock
        self._call_later = call_later
        self._changed = threading.Condition(threading.Lock())
        self._waiters: set[_Waiter] = set()
        balancer.add_listener(self._on_picker)

    def _on_picker(self, picker: Picker) -> None:
        with self._changed:
            self._changed.notify_all()
            waiters = list(self._waiters)
        for waiter in waiters:
            self._try(waiter, picker)

    def defer(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        timeout: float | None,
        start: Start,
        fail: Callable[[LocalRpcError], object],
    ) -> Callable[[], object]:
        """Start an attempt when a picker can take it, without blocking the caller.

        ``start(pick, timeout_left)`` or ``fail(error)`` is called exactly once: at once
        if the current picker decides, else from the balancer's listener or the deadline
        timer. Returns a function that withdraws the call (when its caller cancels it).
        """
        deadline = None if timeout is None else self._clock() + timeout
        waiter = _Waiter(metadata, wait_for_ready, deadline, start, fail)
        with self._changed:
            self._waiters.add(waiter)
        if self._try(waiter, self._balancer.picker) and deadline is not None:
            if self._call_later is None:
                raise RuntimeError("a router that defers calls with deadlines needs call_later")
            self._call_later(max(timeout or 0.0, 0.0), lambda: self._expire(waiter))
        return lambda: self._claim(waiter)

    def _claim(self, waiter: _Waiter) -> bool:
        """Take ``waiter`` off the queue; True for the one caller that got it."""
        with self._changed:
            if waiter in self._waiters:
                self._waiters.discard(waiter)
                return True
            return False

    def _try(self, waiter: _Waiter, picker: Picker) -> bool:
        """Route ``waiter`` on ``picker``; True while it is still waiting."""
        if decide(picker, waiter.wait_for_ready) is Decision.WAIT:
            return True
        if not self._claim(waiter):
            return False  # started, failed or withdrawn elsewhere
        step = route(picker, waiter.metadata, waiter.wait_for_ready)
        if isinstance(step, PickResult):
            deadline = waiter.deadline
            waiter.start(step, None if deadline is None else deadline - self._clock())
            return False
        if step is Decision.FAIL:
            waiter.fail(no_endpoint_error(picker))
            return False
        with self._changed:  # READY, but nothing for this call yet and it may wait
            self._waiters.add(waiter)
        return True

    def _expire(self, waiter: _Waiter) -> None:
        if self._claim(waiter):
            waiter.fail(deadline_error(self._balancer.picker))

    def pick_now(self, metadata: Metadata | None) -> PickResult | None:
        """The hot path: an endpoint from a READY picker, without waiting; None otherwise."""
        return ready_pick(self._balancer.picker, metadata)

    def pick(
        self, metadata: Metadata | None, wait_for_ready: bool, timeout: float | None
    ) -> tuple[PickResult, float | None] | LocalRpcError:
        """An endpoint for one attempt and the timeout left for it, or the call's error."""
        result = ready_pick(self._balancer.picker, metadata)
        if result is not None:
            return result, timeout
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while True:
                picker = self._balancer.picker
                step = route(picker, metadata, wait_for_ready)
                if isinstance(step, PickResult):
                    remaining = None if deadline is None else deadline - self._clock()
                    return step, remaining
                if step is Decision.FAIL:
                    return no_endpoint_error(picker)
                if deadline is None:
                    self._changed.wait()
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return deadline_error(picker)
                self._changed.wait(remaining)
