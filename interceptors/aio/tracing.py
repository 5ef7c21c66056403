"""The tracing step of the asyncio twin: one OpenTelemetry span per ``grpc.aio`` call.

Layered exactly like :mod:`interceptors.tracing` (whose :class:`CallTracer` it shares):
the call span starts before the chain runs, its trace rides down in the attempt record,
and it ends from the call's done callback however the call ends - or, for a call that
never became one (the chain raised), at once with the raised status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from interceptors.aio.balancing import FinishedCall
from interceptors.shapes import AsyncAnyShape
from interceptors.spans import CallTrace, end_raised, guard
from interceptors.tracing import CallTracer, watch

__all__ = ["TracingInterceptor"]

Continuation = Callable[[Any, Any], Awaitable[Any]]


def _ender(call: CallTrace) -> Callable[[Any], None]:
    def on_done(finished: Any) -> None:
        with guard("reading a call's status"):
            seen = FinishedCall(finished)
            call.end(seen.code(), seen.details())

    return on_done


class TracingInterceptor(CallTracer, AsyncAnyShape):
    """One span per call, on any ``grpc.aio`` channel; outermost in an aio ResilientChannel.

    Arguments: see :class:`interceptors.tracing.CallTracer`.
    """

    async def _intercept(self, continuation: Continuation, details: Any, request: Any) -> Any:
        call, traced = self.begin(details)
        if call is None:
            return await continuation(details, request)
        try:
            rpc = await continuation(traced, request)
        except BaseException as error:
            end_raised(call, error)
            raise
        if isinstance(rpc, grpc.aio.AioRpcError):
            end_raised(call, rpc)
        else:
            watch(call, rpc, _ender(call))
        return rpc
