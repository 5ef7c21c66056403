"""The balancing step of the asyncio twin: the last ``grpc.aio`` interceptor of a channel.

Layered exactly like :mod:`interceptors.balancing`: it asks the router for an endpoint
(waiting, per ``wait_for_ready``, on the event loop), hands the attempt to its
continuation - the endpoint transport - with the endpoint in
:class:`~interceptors.details.AttemptDetails`, and reports the attempt's
:class:`~resilientrpc.endpoint.Outcome` to the pick's ``done`` from the call's done
callback, however the call ends (returned, failed, cancelled, abandoned). The details,
the outcome and the report are the sync module's own functions.

:meth:`BalancingInterceptor.send_now` is the same step without a task or a coroutine: the
channel's hot path, taken when the picker is READY and no other interceptor is in front.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from interceptors.balancing import attempt_details, reporter
from resilientrpc.endpoint import Outcome
from resilientrpc.picker import PickResult

if TYPE_CHECKING:  # the router module imports resilientrpc.aio, which imports this one
    from resilientrpc.aio.router import AsyncRouter

__all__ = ["BalancingInterceptor", "FinishedCall"]

#: Starts one attempt on the endpoint in its details, synchronously: the terminal step.
Start = Callable[[Any, Any], Any]
Continuation = Callable[[Any, Any], Awaitable[Any]]


def _now(step: Coroutine[Any, Any, Any]) -> Any:
    """The value of an accessor coroutine that completes without suspending."""
    try:
        step.send(None)
    except StopIteration as finished:
        return finished.value
    step.close()
    raise RuntimeError("the call's status is not available yet")


class FinishedCall:
    """A finished ``grpc.aio`` call seen through grpc's sync ``Call`` accessors.

    A ``grpc.aio`` call's ``code()``, ``details()`` and ``trailing_metadata()`` are
    coroutines; once the call is done they complete at once, so its done callback can
    read them here and feed :func:`interceptors.balancing.outcome_of` like a sync call.
    """

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = _now(self._call.code())
        return code

    def details(self) -> str:
        details: str = _now(self._call.details())
        return details

    def trailing_metadata(self) -> Any:
        return _now(self._call.trailing_metadata())


class _Status:
    """A call's final status, read asynchronously (see :func:`_report_when_readable`)."""

    __slots__ = ("_code", "_details", "_trailing_metadata")

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self._code = code
        self._details = details
        self._trailing_metadata = trailing_metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing_metadata


async def _report_when_readable(report: Callable[[Any], None], call: Any) -> None:
    report(_Status(await call.code(), await call.details(), await call.trailing_metadata()))


#: Reports being read asynchronously, referenced until they finish.
_late_reports: set[asyncio.Future[None]] = set()


def _on_done(report: Callable[[Any], None]) -> Callable[[Any], None]:
    """The done callback of one attempt's call: ``report`` its outcome (once per call)."""

    def on_done(call: Any) -> None:
        try:
            report(FinishedCall(call))
        except RuntimeError:  # not expected from a done call; read its status on the loop
            late = asyncio.ensure_future(_report_when_readable(report, call))
            _late_reports.add(late)
            late.add_done_callback(_late_reports.discard)

    return on_done


class BalancingInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Terminal-most interceptor of a :class:`resilientrpc.aio.ResilientChannel`."""

    def __init__(self, router: AsyncRouter, *, with_load: bool, clock: Callable[[], float]) -> None:
        self._router = router
        self._with_load = with_load
        self._clock = clock

    def _report(self, pick: PickResult, call: Any) -> Any:
        call.add_done_callback(
            _on_done(reporter(pick, clock=self._clock, with_load=self._with_load))
        )
        return call

    def _abandon(self, pick: PickResult, error: BaseException) -> None:
        """Report an attempt that never became a call (as the sync step does)."""
        cancelled = isinstance(error, asyncio.CancelledError)
        code = grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.UNKNOWN
        pick.done(Outcome(code, self._clock() - pick.start))

    def send_now(self, details: Any, request: Any, start: Start) -> Any | None:
        """Send the attempt at once if an endpoint can take it now; None if it must wait.

        The hot path: the pick and the endpoint call are made synchronously, with no task
        and no coroutine; waiting, failing and every other case take the chain instead.
        """
        pick = self._router.pick_now(details.metadata)
        if pick is None:
            return None
        try:
            call = start(attempt_details(details, pick, details.timeout), request)
        except BaseException as error:
            self._abandon(pick, error)
            raise
        return self._report(pick, call)

    async def _attempt(self, continuation: Continuation, details: Any, request: Any) -> Any:
        pick, timeout = await self._router.pick(
            details.metadata, bool(details.wait_for_ready), details.timeout
        )
        try:
            call = await continuation(attempt_details(details, pick, timeout), request)
        except BaseException as error:
            self._abandon(pick, error)
            raise
        return self._report(pick, call)

    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await self._attempt(continuation, client_call_details, request)

    async def intercept_unary_stream(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await self._attempt(continuation, client_call_details, request)

    async def intercept_stream_unary(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._attempt(continuation, client_call_details, request_iterator)

    async def intercept_stream_stream(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._attempt(continuation, client_call_details, request_iterator)
