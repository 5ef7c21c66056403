"""Tracing under attack, both twins: telemetry parts from outside that misbehave must not
fail a call or a channel, against a real server and the real SDK.

A propagator is OpenTelemetry's to configure, so what it writes is only as valid as the
propagator; the metadata a caller passes may already hold a trace header; a provider
handed to the wrong argument is the user's mistake to be told about, by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Setter, TextMapPropagator, default_setter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import resilientrpc
from interceptors import TracingInterceptor
from interceptors.aio import TracingInterceptor as AioTracingInterceptor
from resilientrpc.testing import Backends, echo_pb2, echo_pb2_grpc
from tests.twins import ChannelHandle

METHOD = "/attack.Svc/Unary"
ECHO = "resilientrpc.echo.v1.Echo"
STREAM = f"{ECHO}/ServerStream"
OpenChannel = Callable[..., ChannelHandle]
CANCELLED_CODE = grpc.StatusCode.CANCELLED.value[0]
STALE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorder:
    """A real grpc server whose one unary method echoes its request and records every
    request's metadata in full (duplicates and order kept)."""

    def __init__(self) -> None:
        self.metadata: list[list[tuple[str, str | bytes]]] = []
        self._lock = threading.Lock()
        self._pool = futures.ThreadPoolExecutor(max_workers=2)
        self._server = grpc.server(self._pool)
        handler = grpc.unary_unary_rpc_method_handler(self._unary)
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("attack.Svc", {"Unary": handler})]
        )
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.metadata.append([(m.key, m.value) for m in context.invocation_metadata()])
        return request

    def stop(self) -> None:
        self._server.stop(None).wait(5)
        self._pool.shutdown(wait=True)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


@pytest.fixture
def global_propagator() -> Iterator[Callable[[TextMapPropagator], None]]:
    """Set the global propagator for one test; the one before comes back after it."""
    before = propagate.get_global_textmap()
    yield propagate.set_global_textmap
    propagate.set_global_textmap(before)


def _unary(handle: ChannelHandle, metadata: Any = None) -> bytes:
    """One raw unary call through the twin's channel."""
    channel: Any = handle.channel
    method = channel.unary_unary(METHOD)
    if not hasattr(handle, "run"):
        reply: bytes = method(b"x", timeout=5, metadata=metadata)
        return reply

    async def call() -> bytes:
        answer: bytes = await method(b"x", timeout=5, metadata=metadata)
        return answer

    answered: bytes = handle.run(call())
    return answered


#: Headers gRPC refuses as they are.
SLOPPY = {
    "X-Tenant-Trace": "t-1",  # uppercase: HTTP/2 wants lowercase
    "x-accent": "h\u00e9llo",  # not ASCII
    "x-newline": "a\nb",  # not printable
    "x-span-bin": "text",  # a -bin key with a str value
    "bad key": "v",  # a space in the key
}


class _Sloppy(TextMapPropagator):
    """A propagator that writes :data:`SLOPPY`."""

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[Any] = default_setter,
    ) -> None:
        for key, value in SLOPPY.items():
            setter.set(carrier, key, value)

    def extract(self, carrier: CarrierT, context: Context | None = None, getter: Any = None) -> Any:
        return context

    @property
    def fields(self) -> set[str]:
        return set(SLOPPY)


def test_a_propagator_writing_headers_grpc_refuses_never_fails_a_call(
    open_channel: OpenChannel,
    recorder: Recorder,
    global_propagator: Callable[[TextMapPropagator], None],
) -> None:
    global_propagator(CompositePropagator([TraceContextTextMapPropagator(), _Sloppy()]))
    handle = open_channel([recorder.address], tracer_provider=TracerProvider())
    assert _unary(handle) == b"x"
    (sent,) = recorder.metadata
    headers = dict(sent)
    assert headers["x-tenant-trace"] == "t-1"  # lowercased
    assert headers["x-span-bin"] == b"text"  # sent as bytes
    assert str(headers["traceparent"]).startswith("00-")
    assert not {"x-accent", "x-newline", "bad key"} & set(headers)


@pytest.mark.parametrize("kind", ["tuple", "aio.Metadata"])
def test_a_callers_trace_header_is_replaced_not_duplicated(
    open_channel: OpenChannel, recorder: Recorder, kind: str
) -> None:
    items = (("traceparent", STALE), ("x-keep", "1"), ("traceparent", STALE), ("x-keep", "2"))
    metadata = items if kind == "tuple" else grpc.aio.Metadata(*items)
    handle = open_channel([recorder.address], tracer_provider=TracerProvider())
    assert _unary(handle, metadata) == b"x"
    (sent,) = recorder.metadata
    parents = [value for key, value in sent if key == "traceparent"]
    assert len(parents) == 1
    assert parents != [STALE]
    assert [value for key, value in sent if key == "x-keep"] == ["1", "2"]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("tracer_provider", {"tracer_provider": MeterProvider()}),
        ("meter_provider", {"meter_provider": TracerProvider()}),
        ("tracer_provider", {"tracer_provider": "http://127.0.0.1:4317"}),
    ],
    ids=["meter-as-tracer", "tracer-as-meter", "a-string"],
)
def test_a_provider_of_the_wrong_kind_is_a_config_error_naming_it(
    open_channel: OpenChannel, field: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(resilientrpc.ConfigError) as raised:
        open_channel(["127.0.0.1:1"], **kwargs)
    assert raised.value.path == field


@pytest.mark.parametrize("twin", ["sync", "aio"])
def test_one_key_given_alone_to_record_metadata_is_a_config_error(twin: str) -> None:
    """A string is a sequence too: "x-tenant" would record keys "x", "-", "t"... and so
    never the key meant, silently."""
    kind = TracingInterceptor if twin == "sync" else AioTracingInterceptor
    with pytest.raises(resilientrpc.ConfigError) as raised:
        kind(TracerProvider(), record_metadata="x-tenant")
    assert raised.value.path == "record_metadata"


def _finished(exporter: InMemorySpanExporter, name: str, count: int) -> list[ReadableSpan]:
    """The finished spans called ``name`` once there are ``count`` (waits at most 5 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(found) >= count:
            return found
        time.sleep(0.01)
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_closing_a_channel_ends_the_spans_of_the_streams_it_runs(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    group = backends(1)
    handle = open_channel(group.addresses, tracer_provider=provider)
    stub: Any = handle.stub
    request = echo_pb2.EchoRequest(message="s", count=100_000)
    if hasattr(handle, "run"):

        async def start() -> Any:
            call = stub.ServerStream(request, timeout=20)
            await call.read()
            return call

        stream = handle.run(start())
    else:
        stream = stub.ServerStream(request, timeout=20)
        next(stream)
    handle.close()
    (call,) = _finished(exporter, STREAM, 1)
    (attempt,) = _finished(exporter, f"Attempt.{STREAM}", 1)
    for span in (call, attempt):
        assert (span.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE
    channel: Any = handle.channel
    assert not channel._tracing._running
    del stream
    provider.shutdown()


class _Reentrant(SpanProcessor):
    """Makes one call on ``channel`` from the end of the first call span (any thread)."""

    def __init__(self) -> None:
        self.stub: Any = None
        self.inner: list[str] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self.inner or span.name.startswith(("Attempt.", "endpoint.")):
                return
            self.inner.append("started")
        reply = self.stub.Echo(echo_pb2.EchoRequest(message="inner"), timeout=5)
        self.inner.append(reply.message)


@pytest.mark.parametrize("shape", ["unary", "stream"])
def test_a_span_processor_calling_the_same_channel_does_not_deadlock(
    backends: Callable[..., Backends], shape: str
) -> None:
    """The first call span ends in the thread that saw the call end (the caller's, or
    grpc's for a stream); a retried call made there on the same channel completes."""
    group = backends(2)
    group[0].configure(error_rate=1.0)  # pick_first: every first attempt retried
    retried = {
        "maxAttempts": 3,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.02s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    service_config = {
        "loadBalancingConfig": [{"pick_first": {}}],
        "methodConfig": [{"name": [{"service": ECHO}], "retryPolicy": retried}],
    }
    reentrant = _Reentrant()
    provider = TracerProvider()
    provider.add_span_processor(reentrant)
    with resilientrpc.ResilientChannel(
        group.addresses, config=service_config, tracer_provider=provider
    ) as channel:
        reentrant.stub = stub = echo_pb2_grpc.EchoStub(channel)
        if shape == "unary":
            assert stub.Echo(echo_pb2.EchoRequest(message="outer"), timeout=5).message == "outer"
        else:
            request = echo_pb2.EchoRequest(message="outer", count=2)
            assert len(list(stub.ServerStream(request, timeout=5))) == 2
        deadline = time.monotonic() + 5
        while len(reentrant.inner) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    provider.shutdown()
    assert reentrant.inner == ["started", "inner"]
