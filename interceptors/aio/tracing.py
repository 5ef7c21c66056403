"""The tracing step of the asyncio twin: one OpenTelemetry span per ``grpc.aio`` call.

Layered exactly like :mod:`interceptors.tracing` (whose :class:`CallTracer` it shares):
the call span starts before the chain runs, its trace rides down in the attempt record,
and it ends from the call's done callback however the call ends - or, for a call that
never became one (the chain raised), at once with the raised status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from interceptors.aio.balancing import FinishedCall
from interceptors.shapes import AsyncAnyShape
from interceptors.spans import CallTrace, end_raised, guard
from interceptors.tracing import CallTracer, watch

__all__ = ["TracingInterceptor", "end_when_settled", "follow", "started"]

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
        return await follow(call, continuation(traced, request))


def started(call: CallTrace, rpc: Any) -> Any:
    """End ``call``'s span when ``rpc`` (a started ``grpc.aio`` call, or the AioRpcError
    the chain returned instead) ends; returns ``rpc``."""
    if isinstance(rpc, grpc.aio.AioRpcError):
        end_raised(call, rpc)
    else:
        watch(call, rpc, _ender(call))
    return rpc


async def follow(call: CallTrace, starting: Awaitable[Any]) -> Any:
    """Await ``starting`` (the chain below the tracing step) and end ``call``'s span when
    the call it starts ends, or at once if starting it raised."""
    try:
        rpc = await starting
    except BaseException as error:
        end_raised(call, error)
        raise
    return started(call, rpc)


def end_when_settled(call: CallTrace, outcome: asyncio.Future[Any]) -> None:
    """End ``call``'s span when ``outcome`` (a future of the call a retried call ends
    with) settles: with that call's status, its error's, or CANCELLED."""

    def on_settled(settled: asyncio.Future[Any]) -> None:
        if settled.cancelled():
            call.end(grpc.StatusCode.CANCELLED, "cancelled")
        elif (error := settled.exception()) is not None:
            end_raised(call, error)
        else:
            started(call, settled.result())

    outcome.add_done_callback(on_settled)
