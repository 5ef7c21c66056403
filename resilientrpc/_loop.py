"""One asyncio event loop in one daemon thread: the synchronous channel's background.

However many endpoints a channel has, its background work (resolution, connectivity
watches, weight timers) runs as tasks here, so a synchronous channel adds exactly one
thread, and :meth:`LoopThread.stop` joins it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop running in its own thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[..., object], *args: object) -> None:
        """Have the loop call ``function(*args)`` soon (safe from any thread)."""
        self.loop.call_soon_threadsafe(function, *args)

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
