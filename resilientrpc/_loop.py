"""The synchronous channel's threads: its background loop, and its callback thread.

One asyncio event loop in one daemon thread is the channel's background.

However many endpoints a channel has, its background work (resolution, connectivity
watches, weight timers) runs as tasks here, so a synchronous channel adds exactly one
thread, and :meth:`LoopThread.stop` joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from resilientrpc._calls import guarded

__all__ = ["CALLBACK_STOP_TIMEOUT", "CallbackThread", "LoopThread"]

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: How long stopping the callback thread waits for a running user callback (seconds).
CALLBACK_STOP_TIMEOUT = 5.0


class LoopThread:
    """An event loop running in its own thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        if self._abandoned:  # nobody will join and close it: close it here
            self.loop.close()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[..., object], *args: object) -> None:
        """Have the loop call ``function(*args)`` soon (safe from any thread)."""
        self.loop.call_soon_threadsafe(function, *args)

    def call_later(self, delay: float, function: Callable[[], None]) -> Callable[[], None]:
        """Run ``function`` on the loop after ``delay`` s; returns its cancel (thread-safe)."""
        loop = self.loop
        timers: list[asyncio.TimerHandle] = []

        def schedule() -> None:
            timers.append(loop.call_later(delay, function))

        def cancel() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing runs anyway
                loop.call_soon_threadsafe(_cancel_timers, timers)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(schedule)
        return cancel

    def abandon(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Run ``coroutine`` on the loop, then stop it, without waiting (from any thread).

        For a channel collected unclosed: its finalizer may run on any thread, even this
        loop's own, so it cannot wait; the thread ends by itself once the loop stops.
        """
        loop = self.loop
        self._abandoned = True

        async def finish() -> None:
            try:
                await coroutine
            finally:
                loop.stop()

        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(asyncio.ensure_future, finish())

    def stop(self) -> None:
        """Stop the loop, join its thread and close it; idempotent."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.stop() called from its own thread")

        async def finish() -> None:
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        if self._thread.is_alive():
            self.run(finish())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


def _cancel_timers(timers: list[asyncio.TimerHandle]) -> None:
    for timer in timers:
        timer.cancel()


class CallbackThread:
    """One thread, started on first use, that runs user callbacks in order.

    Whatever runs a user's code - a call's done callbacks, connectivity callbacks - is
    handed here, so neither the background loop nor grpc's own threads ever wait on user
    code: a callback that blocks, waits for another call of the channel, or closes the
    channel stalls nothing but later callbacks.
    """

    def __init__(self, name: str, *, stop_timeout: float = CALLBACK_STOP_TIMEOUT) -> None:
        self._name = name
        self._stop_timeout = stop_timeout
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, function: Callable[[], object]) -> None:
        """Run ``function`` soon; dropped once the thread is stopped (the channel closed)."""
        self._put(function)

    def run_soon(self, function: Callable[[], object]) -> None:
        """Run ``function`` on this thread soon; at once, here, once the thread is stopped.

        For user callbacks that must run whatever happens (a call's done callbacks): none
        runs on a thread of grpc's or on the loop, where one that blocks or closes the
        channel would wait on itself, and none is lost to a closed channel.
        """
        if not self._put(function):
            guarded(function)

    def _put(self, function: Callable[[], object]) -> bool:
        with self._lock:
            if self._stopped:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(function)
        return True

    def is_current(self) -> bool:
        """Whether the calling thread is this callback thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def _run(self) -> None:
        while True:
            function = self._queue.get()
            if function is None:
                return
            guarded(function)

    def stop(self, *, wait: bool = True) -> None:
        """Run what is queued, then end the thread; idempotent.

        With ``wait`` (and not from the thread itself) the thread is joined for at most
        ``stop_timeout`` seconds: a user's callback that never returns is logged and left
        behind (the thread is a daemon), never a ``close()`` that never returns.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is None or not wait or self.is_current():
            return
        thread.join(self._stop_timeout)
        if thread.is_alive():
            _log.warning(
                "%s: a user callback is still running after %.0f s; "
                "leaving it behind (it runs on a daemon thread)",
                self._name,
                self._stop_timeout,
            )
