"""Routing one attempt of the synchronous channel: pick now, wait, or fail at once.

The decision is :func:`resilientrpc.picker.next_step`, shared with the asyncio twin;
this module is the synchronous driver's waiting around it.

* A blocking call waits in its own thread (:meth:`SyncRouter.pick`) on a condition the
  balancer's listener notifies.
* A call that must not block - a future, a stream - is queued (:meth:`SyncRouter.defer`)
  and settled when a picker decides it, or when its deadline timer fires. Pickers are
  published and timers fire on the channel's background loop; the settling itself
  (starting the attempt, or failing the call) goes through ``deliver``, which the
  channel leaves at "now": settling runs no user code (the call's done callbacks are
  handed to the channel's callback thread), so it happens right there on the loop, and
  a user callback that waits for a deferred call never stands in the way of its start.

Lock order: the router's condition is taken alone, never while picking, starting or
failing a call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from resilientrpc._calls import LocalRpcError
from resilientrpc.balancer import Balancer
from resilientrpc.picker import (
    Decision,
    Metadata,
    Picker,
    PickResult,
    Status,
    Wait,
    deadline_status,
    decide,
    next_step,
    ready_pick,
)

__all__ = ["CallLater", "Deliver", "SyncRouter"]

#: Starts the attempt of a deferred call on the pick, with the timeout left.
Start = Callable[[PickResult, "float | None"], object]
#: Fails a deferred call.
Fail = Callable[[LocalRpcError], object]
#: Schedules ``function`` on the background loop after ``delay`` seconds (thread-safe);
#: returns a function that cancels it.
CallLater = Callable[[float, Callable[[], None]], Callable[[], None]]
#: Runs ``function`` soon, off the background loop.
Deliver = Callable[[Callable[[], object]], None]


def _now(function: Callable[[], object]) -> None:
    function()


def _never(delay: float, function: Callable[[], None]) -> Callable[[], None]:
    raise RuntimeError("this router cannot defer calls with a deadline: it has no call_later")


class _Waiter:
    """One deferred call, queued until a picker (or its deadline) decides it."""

    __slots__ = ("cancel_timer", "deadline", "fail", "metadata", "start", "tried", "wait_for_ready")

    def __init__(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        deadline: float | None,
        start: Start,
        fail: Fail,
        tried: AbstractSet[str] | None = None,
    ) -> None:
        self.tried = tried
        self.metadata = metadata
        self.wait_for_ready = wait_for_ready
        self.deadline = deadline
        self.start = start
        self.fail = fail
        self.cancel_timer: Callable[[], None] | None = None


class SyncRouter:
    """Picks endpoints for synchronous callers, waiting when gRPC semantics say to wait."""

    def __init__(
        self,
        balancer: Balancer,
        *,
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater = _never,
        deliver: Deliver = _now,
    ) -> None:
        self._balancer = balancer
        self._clock = clock
        self._call_later = call_later
        self._deliver = deliver
        self._changed = threading.Condition(threading.Lock())
        self._waiters: set[_Waiter] = set()
        balancer.add_listener(self._on_picker)

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def waiting(self) -> int:
        """How many deferred calls are queued now."""
        return len(self._waiters)

    def _on_picker(self, picker: Picker) -> None:
        with self._changed:
            self._changed.notify_all()
            waiters = list(self._waiters)
        for waiter in waiters:
            self._try(waiter, picker, self._deliver)

    def pick_now(
        self, metadata: Metadata | None, tried: AbstractSet[str] | None = None
    ) -> PickResult | None:
        """The hot path: an endpoint from a READY picker, without waiting; None otherwise.

        ``tried``: addresses the call's earlier attempts went to (avoided while others exist).
        """
        return ready_pick(self._balancer.picker, metadata, tried)

    def pick(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        timeout: float | None,
        tried: AbstractSet[str] | None = None,
    ) -> tuple[PickResult, float | None] | LocalRpcError:
        """An endpoint for one attempt and the timeout left for it, or the call's error."""
        result = ready_pick(self._balancer.picker, metadata, tried)
        if result is not None:
            return result, timeout
        clock = self._clock
        deadline = None if timeout is None else clock() + timeout
        while True:
            picker = self._balancer.picker
            step = next_step(picker, metadata, wait_for_ready, deadline, clock(), tried)
            if isinstance(step, PickResult):
                return step, None if deadline is None else deadline - clock()
            if isinstance(step, Status):
                return LocalRpcError(*step)
            with self._changed:
                if self._balancer.picker is picker:  # else a new one came meanwhile
                    self._changed.wait(step.timeout)

    def defer(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        timeout: float | None,
        start: Start,
        fail: Fail,
        tried: AbstractSet[str] | None = None,
    ) -> Callable[[], object]:
        """Start an attempt when a picker can take it, without blocking the caller.

        Exactly one of ``start(pick, timeout_left)`` or ``fail(error)`` is called: at once
        (in the caller's thread) if the current picker decides, else later through
        ``deliver``. Returns a function that withdraws the call (its caller cancelled it).
        """
        deadline = None if timeout is None else self._clock() + timeout
        waiter = _Waiter(metadata, wait_for_ready, deadline, start, fail, tried)
        self._queue(waiter)
        self._try(waiter, self._balancer.picker, _now)
        return lambda: self._claim(waiter)

    def _queue(self, waiter: _Waiter) -> None:
        """Put ``waiter`` in the queue, its deadline timer running."""
        with self._changed:
            self._waiters.add(waiter)
        deadline = waiter.deadline
        if deadline is not None:
            waiter.cancel_timer = self._call_later(
                max(deadline - self._clock(), 0.0), lambda: self._expire(waiter)
            )

    def _claim(self, waiter: _Waiter) -> bool:
        """Take ``waiter`` off the queue; True for the one caller that got it."""
        with self._changed:
            if waiter not in self._waiters:
                return False
            self._waiters.discard(waiter)
        if waiter.cancel_timer is not None:
            waiter.cancel_timer()
        return True

    def _try(self, waiter: _Waiter, picker: Picker, deliver: Deliver) -> None:
        """Settle ``waiter`` if ``picker`` decides it; leave it queued otherwise."""
        if decide(picker, waiter.wait_for_ready) is Decision.WAIT:
            return  # cheap check first: no pick, no claim
        if not self._claim(waiter):
            return  # settled or withdrawn elsewhere
        step = next_step(
            picker,
            waiter.metadata,
            waiter.wait_for_ready,
            waiter.deadline,
            self._clock(),
            waiter.tried,
        )
        if isinstance(step, Wait):  # READY, yet nothing for this call: back in the queue
            self._queue(waiter)  # (claiming cancelled its timer: a new one)
            return
        if isinstance(step, PickResult):
            deadline = waiter.deadline
            left = None if deadline is None else deadline - self._clock()
            deliver(lambda: waiter.start(step, left))
        else:
            error = LocalRpcError(*step)
            deliver(lambda: waiter.fail(error))

    def _expire(self, waiter: _Waiter) -> None:
        if self._claim(waiter):
            error = LocalRpcError(*deadline_status(self._balancer.picker))
            self._deliver(lambda: waiter.fail(error))
