"""The balancing step: the last interceptor, which picks an endpoint per attempt and sends.

It asks the router for an endpoint (which may wait, per gRPC's ``wait_for_ready``
semantics), hands the attempt to its continuation - the endpoint transport - with the
chosen endpoint in the call details, and reports the attempt's outcome (status, latency,
server load) to the pick's ``done`` once the attempt finishes, however it finishes:
returned, failed, cancelled or abandoned (the report rides on the call's done callback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from interceptors.details import AttemptDetails, AttemptRecord
from interceptors.shapes import AnyShape
from interceptors.spans import end_attempt, start_attempt
from resilientrpc._calls import LocalRpcError, PendingCall
from resilientrpc.endpoint import Outcome
from resilientrpc.load_report import parse_load_report
from resilientrpc.picker import PickResult
from resilientrpc.router import SyncRouter

__all__ = [
    "NOT_NOW",
    "BalancingInterceptor",
    "abandoned_outcome",
    "attempt_details",
    "outcome_of",
    "raise_if_closing",
    "reporter",
    "settle",
    "traced_attempt",
]

#: What :meth:`BalancingInterceptor.call_now` returns when the call must take the chain.
NOT_NOW: Any = object()

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


def outcome_of(call: Any, latency: float, with_load: bool) -> Outcome:
    """The :class:`Outcome` of a finished call (a grpc.Call)."""
    code = call.code()
    load = parse_load_report(call.trailing_metadata()) if with_load else None
    if code is _OK:
        return Outcome(code, latency, load)
    return Outcome(code, latency, load, f"{code.name}: {call.details()}")


def abandoned_outcome(pick: PickResult, error: BaseException, latency: float) -> Outcome:
    """The outcome of an attempt that never became a call: the sending itself failed.

    CANCELLED when the caller gave up (asyncio cancellation) or the channel is closing
    (the endpoint is SHUTDOWN) - neither says anything about the endpoint - else UNKNOWN.
    """
    if isinstance(error, asyncio.CancelledError) or pick.endpoint.state is _SHUTDOWN:
        return Outcome(_CANCELLED, latency)
    return Outcome(grpc.StatusCode.UNKNOWN, latency, error=f"UNKNOWN: {error!r}")


def raise_if_closing(pick: PickResult, error: BaseException) -> None:
    """Raise CANCELLED "channel closed" for a send refused by an endpoint channel closing."""
    if pick.endpoint.state is _SHUTDOWN and isinstance(error, Exception):
        raise LocalRpcError(_CANCELLED, "channel closed") from error


def attempt_details(
    details: Any, pick: PickResult, timeout: float | None, metadata: Any
) -> AttemptDetails:
    """The details of the attempt the balancing step sends to ``pick``'s endpoint."""
    return AttemptDetails(
        details.method,
        timeout,
        metadata,
        details.credentials,
        details.wait_for_ready,
        details.compression,
        pick.endpoint,
    )


def settle(pick: PickResult, outcome: Outcome, span: Any = None) -> None:
    """Report an attempt's ``outcome`` to ``pick.done`` (and end its ``span``, if traced)."""
    pick.done(outcome)
    if span is not None:
        end_attempt(span, outcome)


def reporter(
    pick: PickResult, *, clock: Callable[[], float], with_load: bool, span: Any = None
) -> Callable[[Any], None]:
    """The done callback that reports an attempt's finished call to ``pick.done`` (and
    ends the attempt's ``span``, when traced, with the same outcome)."""

    def report(call: Any) -> None:
        settle(pick, outcome_of(call, clock() - pick.start, with_load), span)

    return report


def traced_attempt(details: Any, record: AttemptRecord | None, pick: PickResult) -> tuple[Any, Any]:
    """The metadata an attempt is sent with and its span: ``(details.metadata, None)``
    unless the call is traced (its record carries a call trace)."""
    if record is None or record.trace is None:
        return details.metadata, None
    return start_attempt(record.trace, details.metadata, record, pick.endpoint.address)


class BalancingInterceptor(AnyShape):
    """Terminal-most interceptor of a :class:`resilientrpc.ResilientChannel`."""

    def __init__(
        self,
        router: SyncRouter,
        *,
        with_load: bool,
        clock: Callable[[], float],
        defer: bool = False,
    ) -> None:
        self._router = router
        self._with_load = with_load
        self._clock = clock
        self._defer = defer

    def deferring(self) -> BalancingInterceptor:
        """The same step for calls that must not block (futures, streams).

        When no endpoint can take such a call yet, it returns a
        :class:`~resilientrpc._calls.PendingCall` at once and sends the attempt when one
        can, instead of waiting in the caller's thread.
        """
        return BalancingInterceptor(
            self._router, with_load=self._with_load, clock=self._clock, defer=True
        )

    def call_now(self, details: Any, payload: Any, record: AttemptRecord | None = None) -> Any:
        """A blocking unary call sent at once, when an endpoint can take it now.

        The channel's hot path, for when this step is the whole chain: the same pick,
        send and report as :meth:`intercept_unary_unary`, without the call objects the
        interceptor contract needs (grpc's ``with_call`` rendezvous, the outcome wrapper),
        which cost more than the rest of the step. Returns the response bytes, raises the
        call's ``grpc.RpcError``, or returns :data:`NOT_NOW` when the call has to wait or
        fail; the caller then takes the chain. Only for strategies that read no load
        reports (they come in the call's trailers, which this path does not keep).
        ``record``, when given, learns the endpoint (a retry step's first attempt), and when
        it carries a call trace the attempt is traced as in the chain.
        """
        pick = self._router.pick_now(details.metadata)
        if pick is None:
            return NOT_NOW
        metadata, span = details.metadata, None
        if record is not None:
            record.address = pick.endpoint.address
            if record.trace is not None:
                metadata, span = start_attempt(record.trace, metadata, record, record.address)
        clock = self._clock
        send = pick.endpoint.transport.unary_unary(details.method)
        try:
            response = send(
                payload,
                timeout=details.timeout,
                metadata=metadata,
                credentials=details.credentials,
                wait_for_ready=details.wait_for_ready,
                compression=details.compression,
            )
        except grpc.RpcError as error:
            settle(pick, outcome_of(error, clock() - pick.start, False), span)
            raise
        except BaseException as error:
            settle(pick, abandoned_outcome(pick, error, clock() - pick.start), span)
            raise_if_closing(pick, error)
            raise
        settle(pick, Outcome(_OK, clock() - pick.start), span)
        return response

    def _intercept(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        record: AttemptRecord | None = getattr(details, "attempt", None)
        tried = None if record is None else record.tried
        if self._defer:
            pick = self._router.pick_now(details.metadata, tried)
            if pick is None:
                return self._later(continuation, details, request, record)
            return self._send(continuation, details, request, pick, details.timeout, record)
        routed = self._router.pick(
            details.metadata, bool(details.wait_for_ready), details.timeout, tried
        )
        if isinstance(routed, grpc.RpcError):
            return routed
        pick, timeout = routed
        return self._send(continuation, details, request, pick, timeout, record)

    def _send(
        self,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        pick: PickResult,
        timeout: float | None,
        record: AttemptRecord | None = None,
    ) -> Any:
        if record is not None:
            record.address = pick.endpoint.address
        metadata, span = traced_attempt(details, record, pick)
        try:
            call = continuation(attempt_details(details, pick, timeout, metadata), request)
        except BaseException as error:
            settle(pick, abandoned_outcome(pick, error, self._clock() - pick.start), span)
            raise_if_closing(pick, error)
            raise
        call.add_done_callback(
            reporter(pick, clock=self._clock, with_load=self._with_load, span=span)
        )
        return call

    def _later(
        self,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        record: AttemptRecord | None,
    ) -> Any:
        """A pending call, whose attempt the router starts when an endpoint can take it."""
        timeout = details.timeout
        clock = self._router.clock
        pending = PendingCall(None if timeout is None else clock() + timeout, clock)

        def start(pick: PickResult, remaining: float | None) -> None:
            try:
                call = self._send(continuation, details, request, pick, remaining, record)
            except LocalRpcError as error:
                call = error
            except Exception as error:  # the continuation raised: fail the call with it
                call = LocalRpcError(
                    grpc.StatusCode.UNKNOWN, f"starting the call failed: {error!r}"
                )
            if not pending.settle(call):  # cancelled meanwhile
                call.cancel()

        pending.withdraw = self._router.defer(
            details.metadata,
            bool(details.wait_for_ready),
            timeout,
            start,
            pending.settle,
            None if record is None else record.tried,
        )
        return pending
