"""The balancing step of the asyncio twin: the last ``grpc.aio`` interceptor of a channel.

Layered exactly like :mod:`interceptors.balancing`: it asks the router for an endpoint
(waiting, per ``wait_for_ready``, on the event loop), hands the attempt to its
continuation - the endpoint transport - with the endpoint in
:class:`~interceptors.details.AttemptDetails`, and reports the attempt's
:class:`~resilientrpc.endpoint.Outcome` to the pick's ``done`` from the call's done
callback, however the call ends (returned, failed, cancelled, abandoned). The details and
the outcome are the sync module's own functions.

When this step is the whole chain the channel skips the interceptor hooks:
:meth:`BalancingInterceptor.send_now` is the hot path (no task, no coroutine, no
``AttemptDetails``), taken when the picker is READY; :meth:`BalancingInterceptor.send_later`
is the hooks' work for a call that has to wait, with the deadline its wrapper holds.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from interceptors.balancing import (
    abandoned_outcome,
    attempt_details,
    outcome_of,
    settle,
    traced_attempt,
)
from interceptors.details import AttemptRecord
from interceptors.shapes import AsyncAnyShape
from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import PickResult

if TYPE_CHECKING:  # the router module imports resilientrpc.aio, which imports this one
    from resilientrpc.aio.router import AsyncRouter

__all__ = ["BalancingInterceptor", "FinishedCall", "Start"]

#: Starts one attempt synchronously - ``start(endpoint, details, timeout, payload)`` - on
#: the endpoint's cached multicallable, with ``details``' metadata, credentials,
#: wait_for_ready and compression: the bottom of the chain, and the hot path's send.
Start = Callable[[Endpoint, Any, float | None, Any], Any]
Continuation = Callable[[Any, Any], Awaitable[Any]]

_CANCELLED = grpc.StatusCode.CANCELLED
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


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

    "At once" always holds in a done callback: grpc sets a call's status before it runs
    the call's done callbacks (``_AioCall._set_status``), and the accessors return a set
    status without suspending. Were that ever to change, the accessors raise
    RuntimeError here - loudly, rather than a report going missing.
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


class BalancingInterceptor(AsyncAnyShape):
    """Terminal-most interceptor of a :class:`resilientrpc.aio.ResilientChannel`."""

    def __init__(self, router: AsyncRouter, *, with_load: bool, clock: Callable[[], float]) -> None:
        self._router = router
        self._with_load = with_load
        self._clock = clock
        #: The attempts sent and not ended, held weakly: a call its caller dropped is still
        #: collected (and so cancelled by grpc).
        self._in_flight: weakref.WeakSet[Any] = weakref.WeakSet()

    def cancel_in_flight(self) -> None:
        """Cancel every attempt still running (the channel is closing).

        Closing a ``grpc.aio`` channel does not end its running *streams* on every grpcio
        release: with 1.68.1 a server stream stays running, its done callbacks never
        called, after ``Channel.close()`` (probed; 1.85 cancels it). Cancelling them here
        ends them the same way on every release.
        """
        for call in list(self._in_flight):
            call.cancel()

    def _report(self, pick: PickResult, call: Any, span: Any = None) -> Any:
        """Report ``call``'s outcome to ``pick.done`` once it ends (and end the attempt's
        ``span`` with it, when traced); returns ``call``."""
        clock = self._clock
        with_load = self._with_load
        in_flight = self._in_flight

        def on_done(finished: Any) -> None:
            in_flight.discard(finished)
            settle(pick, outcome_of(FinishedCall(finished), clock() - pick.start, with_load), span)

        in_flight.add(call)
        call.add_done_callback(on_done)
        return call

    def _abandon(self, pick: PickResult, error: BaseException, span: Any = None) -> None:
        """Report an attempt that never became a call; CANCELLED "channel closed" if closing.

        A send refused because the endpoint's channel is closing (grpc's UsageError or
        ValueError, or no connection left at all) is raised as the CANCELLED the caller
        gets from a closed channel, not as grpc's exception.
        """
        settle(pick, abandoned_outcome(pick, error, self._clock() - pick.start), span)
        if pick.endpoint.state is _SHUTDOWN and isinstance(error, Exception):
            from resilientrpc.aio._calls import rpc_error  # noqa: PLC0415 - an import cycle

            raise rpc_error(_CANCELLED, "channel closed") from error

    def send_now(
        self, details: Any, request: Any, start: Start, record: AttemptRecord | None = None
    ) -> Any | None:
        """Send the attempt at once if an endpoint can take it now; None if it must wait.

        The hot path: the pick and the endpoint call are made synchronously, with no task,
        no coroutine and no ``AttemptDetails``; waiting, failing and every other case take
        the chain instead. ``record``, when given, learns the endpoint (a retry step's
        first attempt), and when it carries a call trace the attempt is traced as in the
        chain.
        """
        pick = self._router.pick_now(details.metadata)
        if pick is None:
            return None
        span = None
        if record is not None:
            record.address = pick.endpoint.address
            if record.trace is not None:
                metadata, span = traced_attempt(details, record, pick)
                details = details._replace(metadata=metadata)
        try:
            call = start(pick.endpoint, details, details.timeout, request)
        except BaseException as error:
            self._abandon(pick, error, span)
            raise
        return self._report(pick, call, span)

    async def send_later(
        self, continuation: Continuation, details: Any, request: Any, deadline: float | None
    ) -> Any:
        """The attempt of a call that cannot be sent now, when this step is the whole chain.

        What the interceptor hooks do, with the call's deadline (on the router's clock)
        already known - the one its wrapper reports in ``time_remaining()``.
        """
        return await self._intercept(continuation, details, request, deadline)

    async def _intercept(  # the hooks, plus a deadline from send_later
        self,
        continuation: Continuation,
        details: Any,
        request: Any,
        deadline: float | None = None,
    ) -> Any:
        # A retry step above says where the call's earlier attempts went (failover) and
        # learns where this one goes.
        record: AttemptRecord | None = getattr(details, "attempt", None)
        wait_for_ready = bool(details.wait_for_ready)
        if record is None:
            pick, timeout = await self._router.pick(
                details.metadata, wait_for_ready, details.timeout, deadline
            )
        else:
            pick, timeout = await self._router.pick(
                details.metadata, wait_for_ready, details.timeout, deadline, record.tried
            )
            record.address = pick.endpoint.address
        metadata, span = traced_attempt(details, record, pick)
        try:
            call = await continuation(attempt_details(details, pick, timeout, metadata), request)
        except BaseException as error:
            self._abandon(pick, error, span)
            raise
        return self._report(pick, call, span)
