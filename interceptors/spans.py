"""Call and attempt spans: what both tracing twins and both balancing steps share.

The schema (names, kinds, attributes, events) is written once here; the drivers around
it - :mod:`interceptors.tracing`, :mod:`interceptors.aio.tracing` and the balancing
steps - only decide when a span starts and ends. Every call into OpenTelemetry goes
through :func:`guard`: telemetry that fails is logged once and never reaches the call.

Which RPC semantic conventions the attributes follow is a :class:`Conventions`, chosen
once per tracer (``OTEL_SEMCONV_STABILITY_OPT_IN``, read by :mod:`interceptors.tracing`):
the v1.37 ones resilientrpc has always emitted (:data:`LEGACY`, the default), the stable
ones (:data:`STABLE`), or both (:data:`DUPLICATED`).

A traced call carries one :class:`CallTrace` in its
:class:`~interceptors.details.AttemptRecord` (``record.trace``), so the attempt spans
are children of the call span whatever thread sends the attempt.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from resilientrpc.endpoint import Outcome
from resilientrpc.events import EndpointEvent
from resilientrpc.metrics import OTHER_METHOD, ClientMetrics
from resilientrpc.retry import EventSink, RetryEvent

__all__ = [
    "DUPLICATED",
    "LEGACY",
    "SCOPE",
    "STABLE",
    "AttemptTrace",
    "CallTrace",
    "Conventions",
    "add_retry_event",
    "call_events",
    "end_attempt",
    "end_raised",
    "endpoint_span",
    "failed",
    "guard",
    "note_event",
    "split_method",
    "start_attempt",
    "start_call",
    "tracer_of",
    "with_headers",
]

#: The instrumentation scope name of every span resilientrpc makes.
SCOPE = "resilientrpc"

_log = logging.getLogger(__name__)
_logged: set[str] = set()
_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED

#: RetryEvent kinds and the names of the call span events they become.
_EVENT_NAMES = {
    "retry": "retry",
    "transparent": "transparent_retry",
    "hedge": "hedge",
    "refused": "retry_refused",
    "stopped": "retry_stopped",
}


class Conventions:
    """The RPC semantic conventions of a tracer's spans: ``legacy`` (v1.37: ``rpc.system``,
    ``rpc.service``, ``rpc.method`` = "Method", ``rpc.grpc.status_code`` int) and/or
    ``stable`` (``rpc.system.name``, ``rpc.method`` = "pkg.Service/Method",
    ``rpc.response.status_code`` = the code's name, ``error.type`` on failure).

    Both at once is the ``rpc/dup`` opt-in; the one key whose meaning changed,
    ``rpc.method``, then holds the stable value (``rpc.service`` still names the
    service). Everything per status code is worked out here, once.
    """

    __slots__ = ("codes", "ended", "legacy", "metadata_prefixes", "name", "stable")

    def __init__(self, name: str, *, legacy: bool, stable: bool) -> None:
        self.name = name
        self.legacy = legacy
        self.stable = stable
        self.metadata_prefixes = (
            *(("rpc.grpc.request.metadata.",) if legacy else ()),
            *(("rpc.request.metadata.",) if stable else ()),
        )
        #: The status code attributes of each code (what a retry event carries).
        self.codes: dict[grpc.StatusCode, dict[str, Any]] = {}
        #: Those, plus ``error.type`` on failure: what an ended span carries.
        self.ended: dict[grpc.StatusCode, dict[str, Any]] = {}
        for code in grpc.StatusCode:
            attributes: dict[str, Any] = {}
            if legacy:
                attributes["rpc.grpc.status_code"] = code.value[0]
            if stable:
                attributes["rpc.response.status_code"] = code.name
            self.codes[code] = attributes
            self.ended[code] = (
                {**attributes, "error.type": code.name}
                if stable and code is not grpc.StatusCode.OK
                else attributes
            )

    def call_attributes(self, service: str, method: str) -> dict[str, Any]:
        """A call span's attributes at its start: the system and the method."""
        if not self.stable:
            return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        if not self.legacy:
            return {"rpc.system.name": "grpc", "rpc.method": f"{service}/{method}"}
        return {
            "rpc.system": "grpc",
            "rpc.system.name": "grpc",
            "rpc.service": service,
            "rpc.method": f"{service}/{method}",
        }

    def __repr__(self) -> str:
        return f"Conventions({self.name!r})"


#: The v1.37 RPC conventions: the default.
LEGACY = Conventions("legacy", legacy=True, stable=False)
#: The stable RPC conventions only (``OTEL_SEMCONV_STABILITY_OPT_IN=rpc``).
STABLE = Conventions("stable", legacy=False, stable=True)
#: Both (``OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup``).
DUPLICATED = Conventions("duplicated", legacy=True, stable=True)


def failed(what: str) -> None:
    """Log the exception being handled (once per ``what``); the per-call functions below
    call it from a plain ``try``, which costs nothing until something raises."""
    if what not in _logged:
        _logged.add(what)
        _log.exception("tracing failed while %s; the call goes on untraced there", what)


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Run OpenTelemetry code; an exception from it is logged (once per ``what``) and dropped."""
    try:
        yield
    except Exception:
        failed(what)


def tracer_of(tracer_provider: Any) -> Tracer:
    """resilientrpc's tracer from ``tracer_provider`` (the global one when None)."""
    return trace.get_tracer(SCOPE, tracer_provider=tracer_provider)


@functools.lru_cache(maxsize=1024)
def split_method(method: str | bytes) -> tuple[str, str]:
    """``("pkg.Service", "Method")`` of a full method name ``/pkg.Service/Method``
    (``grpc.aio`` hands interceptors bytes); remembered, a channel has few methods.

    >>> split_method(b"/echo.Echo/Echo")
    ('echo.Echo', 'Echo')
    """
    if isinstance(method, bytes):
        method = method.decode("utf-8", "replace")
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


@functools.lru_cache(maxsize=1024)
def _host_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address, None
    return host.strip("[]"), int(port)


_REFUSED = "sending a propagator's header"
#: What gRPC accepts as a metadata key once lowercased.
_HEADER_KEY = re.compile(r"[0-9a-z_.-]+")


@functools.lru_cache(maxsize=64)
def _header_key(key: str) -> str | None:
    """``key`` as gRPC metadata takes it (lowercased), or None when gRPC refuses it."""
    name = key.lower()
    return name if _HEADER_KEY.fullmatch(name) else None


def _header(key: str, value: Any) -> tuple[str, str | bytes] | None:
    """A propagator's header as gRPC can send it, or None when it cannot: a key
    gRPC refuses, or a text value that is not printable ASCII. Sent as they are, they
    would fail the call (``INTERNAL: Invalid metadata``, or a TypeError for a ``-bin``
    key's text, which goes as UTF-8 bytes instead). Logged once."""
    name = _header_key(key)
    if name is not None:
        if name.endswith("-bin"):
            if isinstance(value, bytes | str):
                return name, value.encode() if isinstance(value, str) else value
        elif isinstance(value, str) and value.isascii() and value.isprintable():
            return name, value
    if _REFUSED not in _logged:  # once, not once per key: keys may be many
        _logged.add(_REFUSED)
        _log.warning(
            "tracing left out the header %r (and any more): gRPC cannot send %r", key, value
        )
    return None


def with_headers(metadata: Any, carrier: dict[str, str]) -> Any:
    """``metadata`` plus the ``carrier``'s headers in place of any of the same name (same
    type: tuple or grpc.aio.Metadata); headers gRPC cannot send are left out."""
    if not carrier:
        return metadata
    headers = dict(filter(None, (_header(key, value) for key, value in carrier.items())))
    kept = tuple(item for item in metadata or () if item[0] not in headers)
    if isinstance(metadata, grpc.aio.Metadata):
        return grpc.aio.Metadata(*kept, *headers.items())
    return (*kept, *headers.items())


class CallTrace:
    """One traced call: its span, the Context that holds it, and how attempts are traced.

    ``attempts`` is the highest attempt number the retry step made, ``sent`` how many
    attempts a balancing step sent to an endpoint (an attempt that found none is not
    sent; ``balanced``: the call is in a channel, whose every attempt passes one);
    ``addresses`` the endpoints its attempts went to; ``running`` the set of running
    calls it is in until it ends (where endpoint events look for the calls they affect).
    With ``metrics``, the call also counts its retries, hedges and backoff
    (``retries``, ``hedges``, ``delay``) and records them with its duration when it ends.
    """

    __slots__ = (
        "addresses",
        "attempt_name",
        "attempts",
        "balanced",
        "context",
        "conventions",
        "delay",
        "ended",
        "grpc_method",
        "hedges",
        "method",
        "metrics",
        "propagator",
        "recording",
        "retries",
        "running",
        "sent",
        "service",
        "span",
        "started",
        "tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        span: Span,
        propagator: TextMapPropagator | None,
        service: str,
        method: str,
        running: set[CallTrace] | None = None,
        metrics: ClientMetrics | None = None,
        *,
        balanced: bool = False,
        conventions: Conventions = LEGACY,
    ) -> None:
        self.tracer = tracer
        self.conventions = conventions
        self.balanced = balanced
        self.sent = 0
        self.metrics = metrics
        #: The call's ``grpc.method`` in its metrics (its spans keep the real name).
        self.grpc_method = (
            OTHER_METHOD if metrics is None else metrics.method_attribute(service, method)
        )
        self.started = time.perf_counter()
        self.retries = 0
        self.hedges = 0
        self.delay = 0.0
        self.addresses: set[str] = set()
        self.running = running
        self.service = service
        self.method = method
        self.attempt_name = f"Attempt.{service}/{method}"
        self.span = span
        #: False for a span nobody records: a no-op provider's, or one sampled out.
        self.recording = span.is_recording()
        self.context: Context = trace.set_span_in_context(span)
        self.propagator = propagator
        self.attempts = 0
        self.ended = False

    def inject(self, metadata: Any, context: Context) -> Any:
        """``metadata`` with ``context`` injected by the propagator (global one by default)."""
        carrier: dict[str, str] = {}
        propagator = self.propagator or propagate.get_global_textmap()
        propagator.inject(carrier, context=context)
        return with_headers(metadata, carrier)

    def end(self, code: grpc.StatusCode, details: str | None) -> None:
        """End the call span with its final status (once; later calls do nothing)."""
        if self.ended:
            return
        self.ended = True
        if self.running is not None:
            self.running.discard(self)
        try:
            span = self.span
            attributes = self.conventions.ended[code].copy()
            attributes["resilientrpc.attempts"] = (
                self.sent if self.balanced else max(self.attempts, 1)
            )
            span.set_attributes(attributes)
            if code is not _OK:
                span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))
            span.end()
        except Exception:
            failed("ending a call span")
        if self.metrics is not None:
            try:
                self.metrics.call_ended(
                    self.grpc_method,
                    code,
                    time.perf_counter() - self.started,
                    retries=self.retries,
                    hedges=self.hedges,
                    delay=self.delay,
                )
            except Exception:
                failed("recording call metrics")


class AttemptTrace:
    """One attempt of a traced call: its span (None when not recorded) and the call it
    belongs to."""

    __slots__ = ("call", "span")

    def __init__(self, call: CallTrace, span: Span | None) -> None:
        self.call = call
        self.span = span


def end_raised(call: CallTrace, error: BaseException) -> None:
    """End ``call``'s span for a send that raised ``error`` (an RPC error keeps its code)."""
    code = grpc.StatusCode.UNKNOWN
    details = repr(error)
    with guard("reading a raised error's status"):
        if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
            code = error.code()
            details = error.details()
        elif type(error).__name__ == "CancelledError":
            code, details = _CANCELLED, "cancelled"
    call.end(code, details)


def _metadata_attributes(
    metadata: Any, keys: Sequence[str], prefixes: Sequence[str]
) -> dict[str, Any]:
    found: dict[str, list[str]] = {}
    for key, value in metadata or ():
        if key in keys:
            text = value if isinstance(value, str) else repr(value)
            for prefix in prefixes:
                found.setdefault(f"{prefix}{key}", []).append(text)
    return found


def start_call(
    tracer: Tracer,
    method: str | bytes,
    metadata: Any,
    *,
    strategy: str | None,
    propagator: TextMapPropagator | None,
    record_metadata: Sequence[str],
    running: set[CallTrace] | None = None,
    metrics: ClientMetrics | None = None,
    conventions: Conventions = LEGACY,
) -> CallTrace | None:
    """Start a call's span (child of the caller's current span); None if tracing failed.

    The call is in ``running`` until it ends; its metrics go to ``metrics``, if given;
    its attributes follow ``conventions``."""
    try:
        service, name = split_method(method)
        attributes = conventions.call_attributes(service, name)
        if strategy is not None:
            attributes["resilientrpc.strategy"] = strategy
        if record_metadata:
            attributes.update(
                _metadata_attributes(metadata, record_metadata, conventions.metadata_prefixes)
            )
        span = tracer.start_span(f"{service}/{name}", kind=SpanKind.CLIENT, attributes=attributes)
        call = CallTrace(
            tracer,
            span,
            propagator,
            service,
            name,
            running,
            metrics,
            balanced=strategy is not None,
            conventions=conventions,
        )
        if running is not None and call.recording:
            running.add(call)
    except Exception:
        failed("starting a call span")
        return None
    return call


def start_attempt(
    call: CallTrace, metadata: Any, record: Any, address: str
) -> tuple[Any, AttemptTrace | None]:
    """Start an attempt's span under ``call``'s (and count it, with metrics); its metadata
    with the attempt's context."""
    if call.metrics is not None:
        try:
            call.metrics.attempt_started(call.grpc_method)
        except Exception:
            failed("counting an attempt")
    call.sent += 1
    if not call.recording:
        # Its attempts' spans would record nothing either (a no-op provider, or a trace
        # sampled out: the sampler decides per trace). The call's own context - sampled
        # out, its traceparent says so - is all the servers need.
        # With metrics, an attempt without a span still reports its end.
        attempt = None if call.metrics is None else AttemptTrace(call, None)
        try:
            return call.inject(metadata, call.context), attempt
        except Exception:
            failed("injecting trace context")
            return metadata, attempt
    try:
        call.addresses.add(address)
        host, port = _host_port(address)
        # Only what the call span does not say already: every attribute costs the SDK's
        # checks here and the exporter's encoding later, twice per call (see the
        # attribute diet in docs/benchmarks.md, "Tracing").
        attributes: dict[str, Any] = {
            "server.address": host,
            "resilientrpc.attempt": record.number,
            "resilientrpc.hedge": record.hedge,
        }
        if port is not None:
            attributes["server.port"] = port
        span = call.tracer.start_span(
            call.attempt_name,
            context=call.context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
    except Exception:
        failed("starting an attempt span")
        return metadata, None
    try:
        metadata = call.inject(metadata, trace.set_span_in_context(span, call.context))
    except Exception:
        failed("injecting trace context")
    return metadata, AttemptTrace(call, span)


def end_attempt(attempt: AttemptTrace, outcome: Outcome) -> None:
    """End an attempt's span (and record its duration, with metrics) with the outcome the
    balancing step reports to ``pick.done``."""
    metrics = attempt.call.metrics
    if metrics is not None:
        try:
            metrics.attempt_ended(attempt.call.grpc_method, outcome)
        except Exception:
            failed("recording attempt metrics")
    span = attempt.span
    if span is None:
        return
    try:
        code = outcome.code
        span.set_attributes(attempt.call.conventions.ended[code])
        if code is not _OK:
            message = outcome.error or code.name
            span.add_event(
                "exception",
                {"exception.type": f"grpc.StatusCode.{code.name}", "exception.message": message},
            )
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()
    except Exception:
        failed("ending an attempt span")


def add_retry_event(call: CallTrace, event: RetryEvent) -> None:
    """Add ``event`` (what the retry step did) to the call span (and count it)."""
    if event.kind == "retry":
        call.retries += 1
        call.delay += event.delay
    elif event.kind == "hedge":
        call.hedges += 1
    with guard("adding a retry event"):
        attributes: dict[str, Any] = {"resilientrpc.attempt": event.attempt}
        if event.code is not None:
            attributes.update(call.conventions.codes[event.code])
        if event.address:
            attributes["server.address"] = event.address
        if event.kind in ("retry", "transparent"):
            attributes["resilientrpc.backoff_ms"] = event.delay * 1000.0
        if event.reason or event.kind == "retry":
            attributes["resilientrpc.reason"] = event.reason or (
                event.code.name if event.code is not None else ""
            )
        call.span.add_event(_EVENT_NAMES.get(event.kind, event.kind), attributes)


def _trace_of(details: Any) -> CallTrace | None:
    record = getattr(details, "attempt", None)
    return None if record is None else record.trace


def call_events(sink: EventSink | None, details: Any) -> EventSink | None:
    """The event sink of one call: ``sink``, plus its call span when the call is traced.

    Built when a retry run starts (after a failure), never on the first-attempt path.
    """
    call = _trace_of(details)
    if call is None:
        return sink

    def hop(event: RetryEvent) -> None:
        if sink is not None:
            sink(event)
        add_retry_event(call, event)

    return hop


def note_event(details: Any, event: RetryEvent) -> None:
    """Add ``event`` to the call span of ``details``' call, if it is traced."""
    call = _trace_of(details)
    if call is not None:
        add_retry_event(call, event)


def endpoint_span(
    tracer: Tracer, running: set[CallTrace] | None = None
) -> Callable[[EndpointEvent], None]:
    """An endpoint event listener: each event an event ``endpoint.<kind>`` on the span of
    every running call with an attempt on that endpoint, or, when there is none, a short
    INTERNAL span of its own by that name."""

    def on_event(event: EndpointEvent) -> None:
        with guard("recording an endpoint event"):
            name = f"endpoint.{event.kind}"
            attributes = {"server.address": event.address, "resilientrpc.reason": event.reason}
            start = int(event.time * 1e9)
            affected = [c for c in list(running or ()) if event.address in c.addresses]
            for call in affected:
                call.span.add_event(name, attributes, timestamp=start)
            if not affected:
                span = tracer.start_span(
                    name,
                    context=Context(),
                    kind=SpanKind.INTERNAL,
                    attributes=attributes,
                    start_time=start,
                )
                span.end(end_time=start)

    return on_event
