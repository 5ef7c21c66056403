"""Routing one attempt: pick now, wait for a picker that can take it, or fail at once.

The decision is :func:`resilientrpc.picker.route`, shared by both drivers; this module
is the synchronous driver's waiting around it (a condition variable the balancer's
listener notifies). The asyncio twin waits on an asyncio event instead.
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


class SyncRouter:
    """Picks endpoints for blocking callers, waiting when gRPC semantics say to wait."""

    def __init__(self, balancer: Balancer, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._balancer = balancer
        self._clock = clock
        self._changed = threading.Condition(threading.Lock())
        balancer.add_listener(self._on_picker)

    def _on_picker(self, picker: Picker) -> None:
        with self._changed:
            self._changed.notify_all()

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
