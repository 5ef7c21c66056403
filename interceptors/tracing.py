"""The tracing step: the outermost interceptor, one OpenTelemetry span per call.

It starts the call span (:mod:`interceptors.spans` holds the schema), hands the call's
:class:`~interceptors.spans.CallTrace` down in a fresh
:class:`~interceptors.details.AttemptRecord` - the retry step copies it into each
attempt's record and the balancing step starts the attempt spans under it - and ends
the span however the call ends: returned, failed, cancelled, or abandoned (a stream
nobody reads any more is cancelled by grpc when it is collected, which ends its span).

On a plain grpc channel (``grpc.intercept_channel``) it also injects the call span's
context into the call's metadata; inside a :class:`resilientrpc.ResilientChannel` each
attempt injects its own instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NoOpTracerProvider

from interceptors.details import AttemptRecord, RetryCallDetails
from interceptors.shapes import AnyShape
from interceptors.spans import (
    DUPLICATED,
    LEGACY,
    STABLE,
    CallTrace,
    Conventions,
    end_raised,
    endpoint_span,
    failed,
    guard,
    split_method,
    start_call,
    tracer_of,
)
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.errors import ConfigError
from resilientrpc.events import EndpointEvent
from resilientrpc.metrics import ClientMetrics

__all__ = [
    "CallTracer",
    "TracingInterceptor",
    "channel_tracer",
    "conventions_of",
    "ended",
    "register_method",
    "traced_details",
    "watch",
]


#: The environment variable that opts in to the stable RPC semantic conventions.
OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"


def conventions_of(environ: Mapping[str, str] | None = None) -> Conventions:
    """The RPC conventions ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for (in ``environ``, the
    process environment by default): a comma-separated list where ``rpc/dup`` means both
    the v1.37 and the stable conventions, ``rpc`` the stable ones alone (``rpc/dup`` wins
    when both are there), and anything else - other categories, or nothing - the v1.37
    ones, as before. Values are matched exactly, spaces around them aside, as
    OpenTelemetry's own instrumentations read this variable.
    """
    opted = {
        value.strip()
        for value in (os.environ if environ is None else environ).get(OPT_IN, "").split(",")
    }
    if "rpc/dup" in opted:
        return DUPLICATED
    return STABLE if "rpc" in opted else LEGACY


def traced_details(details: Any, call: CallTrace, inject: bool) -> RetryCallDetails:
    """``details`` carrying ``call`` in a fresh attempt record (and its context, if ``inject``)."""
    metadata = details.metadata
    if inject:
        with guard("injecting trace context"):
            metadata = call.inject(metadata, call.context)
    return RetryCallDetails(
        details.method,
        details.timeout,
        metadata,
        details.credentials,
        details.wait_for_ready,
        getattr(details, "compression", None),
        AttemptRecord(trace=call),
    )


def ended(call: CallTrace) -> Callable[[Any], None]:
    """A done callback that ends ``call``'s span with the finished grpc call's status."""

    def on_done(finished: Any) -> None:
        try:
            code, details = finished.code(), finished.details()
        except Exception:
            failed("reading a call's status")
            return
        call.end(code, details)

    return on_done


def watch(call: CallTrace, rpc: Any, on_done: Callable[[Any], None]) -> None:
    """End ``call``'s span through ``on_done(rpc)`` when ``rpc`` is done.

    However it ends: exhausted, failed, cancelled - or abandoned, since grpc cancels a
    call collected unfinished, which runs its done callbacks too.
    """
    try:
        rpc.add_done_callback(on_done)
    except Exception:
        failed("watching a call")


class CallTracer:
    """What both tracing twins hold: the tracer, the propagator, and what to record.

    ``tracer_provider``: an OpenTelemetry TracerProvider (the global one when None);
    ``propagator``: a TextMapPropagator (the global one, W3C traceparent by default, when
    None); ``record_metadata``: request metadata keys whose values are recorded as
    ``rpc.grpc.request.metadata.<key>`` (nothing is recorded unless named). The span
    attributes follow the RPC semantic conventions ``OTEL_SEMCONV_STABILITY_OPT_IN``
    names when the tracer is built (:func:`conventions_of`). A channel
    passes its ``strategy`` name, and ``inject=False``: its attempts inject their own
    context. With ``metrics`` every call and attempt also feeds its instruments.
    """

    def __init__(
        self,
        tracer_provider: Any = None,
        propagator: TextMapPropagator | None = None,
        record_metadata: Sequence[str] = (),
        *,
        strategy: str | None = None,
        inject: bool = True,
        metrics: ClientMetrics | None = None,
    ) -> None:
        if isinstance(record_metadata, str | bytes):  # a key alone: each letter a key
            raise ConfigError(
                "record_metadata", f"expected a sequence of keys, got {record_metadata!r}"
            )
        self._tracer = tracer_of(tracer_provider)
        self._metrics = metrics
        self._propagator = propagator
        self._record_metadata = tuple(key.lower() for key in record_metadata)
        self._strategy = strategy
        self._inject = inject
        self._conventions = conventions_of()
        #: The calls running now (endpoint events go on their spans).
        self._running: set[CallTrace] = set()

    def endpoint_listener(self) -> Callable[[EndpointEvent], None]:
        """An endpoint event listener: an event on the spans of the running calls it
        affects, else a short span of its own (and, with metrics, counted there)."""
        spans = endpoint_span(self._tracer, self._running)
        if self._metrics is None:
            return spans
        counted = self._metrics.endpoint_listener()

        def on_event(event: EndpointEvent) -> None:
            spans(event)
            with guard("counting an endpoint event"):
                counted(event)

        return on_event

    def register(self, method: str) -> None:
        """Record ``method`` (``/pkg.Service/Method``) by name in the metrics from now on."""
        if self._metrics is not None:
            self._metrics.register(*split_method(method))

    def begin(self, details: Any) -> tuple[CallTrace | None, Any]:
        """Start a call's span: the call and its details carrying it down the chain, or
        ``(None, details)`` when tracing failed (the call goes on untraced)."""
        call = self._start(details)
        if call is None:
            return None, details
        return call, traced_details(details, call, self._inject)

    def _start(self, details: Any) -> CallTrace | None:
        return start_call(
            self._tracer,
            details.method,
            details.metadata,
            strategy=self._strategy,
            propagator=self._propagator,
            record_metadata=self._record_metadata,
            running=self._running,
            metrics=self._metrics,
            conventions=self._conventions,
        )


Tracer = TypeVar("Tracer", bound=CallTracer)


def register_method(tracer: CallTracer | None, method: str, registered: bool | None) -> None:
    """What a channel's ``unary_unary`` and the like do with ``_registered_method``: a
    method a generated stub registered is recorded by name in the metrics (gRFC A66;
    any other is ``"other"``)."""
    if registered and tracer is not None:
        with guard("registering a method"):
            tracer.register(method)


def channel_tracer(
    kind: type[Tracer],
    tracer_provider: Any,
    meter_provider: Any,
    *,
    strategy: str,
    target: Sequence[str] | str,
    statuses: Callable[[], list[EndpointStatus]],
) -> Tracer | None:
    """A channel's tracing step (of either twin: ``kind``); None - no step at all - when
    it has neither a tracer nor a meter provider. Metrics alone trace into a no-op tracer.
    A provider of the wrong kind (say the two swapped) is a ConfigError naming it.
    """
    if isinstance(tracer_provider, NoOpTracerProvider):
        tracer_provider = None  # nothing would be recorded: no step, the hot path stays
    if tracer_provider is None and meter_provider is None:
        return None
    for field, provider, needs in (
        ("tracer_provider", tracer_provider, "get_tracer"),
        ("meter_provider", meter_provider, "get_meter"),
    ):
        if provider is not None and not callable(getattr(provider, needs, None)):
            raise ConfigError(
                field, f"expected an OpenTelemetry provider with {needs}(), got {provider!r}"
            )
    metrics = None
    if meter_provider is not None:
        name = target if isinstance(target, str) else ",".join(target)
        metrics = ClientMetrics(meter_provider, name, statuses)
    if tracer_provider is None:
        tracer_provider = NoOpTracerProvider()
    return kind(tracer_provider, strategy=strategy, inject=False, metrics=metrics)


class TracingInterceptor(CallTracer, AnyShape):
    """One span per call, on any grpc channel; outermost in a ResilientChannel.

    >>> channel = grpc.intercept_channel(  # doctest: +SKIP
    ...     grpc.insecure_channel("127.0.0.1:50051"), TracingInterceptor(provider)
    ... )

    Arguments: see :class:`CallTracer`.
    """

    def _intercept(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        call, traced = self.begin(details)
        if call is None:
            return continuation(details, request)
        try:
            rpc = continuation(traced, request)
        except BaseException as error:
            end_raised(call, error)
            raise
        watch(call, rpc, ended(call))
        return rpc
