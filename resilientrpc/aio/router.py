"""Routing one attempt of the asyncio twin: pick now, wait for a better picker, or fail.

The decision is :func:`resilientrpc.picker.next_step`, shared with the synchronous
:class:`~resilientrpc.router.SyncRouter`; this module is only the asyncio waiting around
it. The balancer runs on the same event loop as the calls here, so its picker listener
simply resolves the future that waiting calls share; no lock and no thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from resilientrpc.aio._calls import rpc_error
from resilientrpc.balancer import Balancer
from resilientrpc.picker import Metadata, Picker, PickResult, Status, next_step, ready_pick

__all__ = ["AsyncRouter"]


class AsyncRouter:
    """Picks endpoints for asyncio callers, waiting when gRPC semantics say to wait."""

    def __init__(self, balancer: Balancer, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._balancer = balancer
        self._clock = clock
        self._next: asyncio.Future[None] | None = None
        balancer.add_listener(self._on_picker)

    def _on_picker(self, picker: Picker) -> None:
        waiter, self._next = self._next, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def changed(self, timeout: float | None = None) -> bool:
        """Wait for the next published picker; False if ``timeout`` passes first.

        Waiters share one future, so a cancelled waiter never disturbs the others.
        """
        waiter = self._next
        if waiter is None or waiter.done():
            waiter = self._next = asyncio.get_running_loop().create_future()
        done, _pending = await asyncio.wait((waiter,), timeout=timeout)
        return bool(done)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock deadlines are measured on (the channel's)."""
        return self._clock

    def pick_now(
        self, metadata: Metadata | None, tried: AbstractSet[str] | None = None
    ) -> PickResult | None:
        """The hot path: an endpoint from a READY picker, synchronously; None otherwise.

        ``tried``: addresses the call's earlier attempts went to (avoided while others exist).
        """
        return ready_pick(self._balancer.picker, metadata, tried)

    async def pick(
        self,
        metadata: Metadata | None,
        wait_for_ready: bool,
        timeout: float | None,
        deadline: float | None = None,
        tried: AbstractSet[str] | None = None,
    ) -> tuple[PickResult, float | None]:
        """An endpoint for one attempt and the timeout left for it.

        ``deadline`` is when ``timeout`` runs out on :attr:`clock`, if the caller has
        already computed it; otherwise it is computed here when the attempt has to wait.
        ``tried``: addresses the call's earlier attempts went to, avoided while others exist.

        Raises ``grpc.aio.AioRpcError``: UNAVAILABLE naming every address when no endpoint
        can take the call and it may not wait, DEADLINE_EXCEEDED when its deadline passes
        while it waits, CANCELLED once the channel is closed.
        """
        result = self.pick_now(metadata, tried)
        if result is not None:
            return result, timeout if deadline is None else deadline - self._clock()
        if deadline is None and timeout is not None:
            deadline = self._clock() + timeout
        clock = self._clock
        while True:
            picker = self._balancer.picker
            step = next_step(picker, metadata, wait_for_ready, deadline, clock(), tried)
            if isinstance(step, PickResult):
                return step, None if deadline is None else deadline - clock()
            if isinstance(step, Status):
                raise rpc_error(*step)
            await self.changed(step.timeout)
