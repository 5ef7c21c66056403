"""Tracing, both twins: the call span and its attempt spans as the schema says, against
real backends, with the SDK's in-memory exporter.

The channels use ``pick_first`` with the backends in a known order, so the attempt that
fails and the one that fails over are known.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

import resilientrpc
import resilientrpc.aio
from interceptors import TracingInterceptor
from resilientrpc.testing import Backend, Backends, echo_pb2, echo_pb2_grpc
from tests.retry_servers import UNARY, ScriptedServer, fail
from tests.twins import ChannelHandle

ECHO = "resilientrpc.echo.v1.Echo"
CALL = f"{ECHO}/Echo"
STREAM = f"{ECHO}/ServerStream"
PICK_FIRST: list[dict[str, Any]] = [{"pick_first": {}}]
OpenChannel = Callable[..., ChannelHandle]
OK_CODE = grpc.StatusCode.OK.value[0]
UNAVAILABLE_CODE = grpc.StatusCode.UNAVAILABLE.value[0]
CANCELLED_CODE = grpc.StatusCode.CANCELLED.value[0]
#: Two attempts, the second after 10-20 ms: a call that fails over to the second backend.
FAIL_OVER: dict[str, Any] = {
    "maxAttempts": 2,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.02s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


class Tracing:
    """A TracerProvider exporting to memory, and the spans it finished."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def wait(self, name: str, count: int, timeout: float = 5.0) -> list[ReadableSpan]:
        """The finished spans called ``name`` once there are ``count`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while len(self.spans(name)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        found = self.spans(name)
        assert len(found) == count, [s.name for s in self.spans()]
        return found


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    traced = Tracing()
    yield traced
    traced.provider.shutdown()


def config(policy: dict[str, Any] | None = None, kind: str = "retryPolicy") -> dict[str, Any]:
    methods = [] if policy is None else [{"name": [{"service": ECHO}], kind: policy}]
    return {"loadBalancingConfig": PICK_FIRST, "methodConfig": methods}


def opened(
    open_channel: OpenChannel, targets: Sequence[str], tracing: Tracing, service_config: Any
) -> ChannelHandle:
    handle = open_channel(list(targets), config=service_config, tracer_provider=tracing.provider)
    handle.wait_ready(5)
    deadline = time.monotonic() + 5
    while any(e.state != "READY" for e in handle.endpoints()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return handle


def attempts_of(call: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The attempt spans under ``call``, by attempt number."""
    assert call.context is not None
    children = [
        s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == call.context.span_id
        and s.context is not None
        and s.context.trace_id == call.context.trace_id
    ]
    return sorted(children, key=lambda s: int(str((s.attributes or {})["resilientrpc.attempt"])))


def test_a_call_that_succeeds_first_time(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(2)
    handle = opened(open_channel, group.addresses, tracing, config())
    assert handle.echo("hi").backend == group[0].name
    (call,) = tracing.wait(CALL, 1)
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    assert dict(call.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": ECHO,
        "rpc.method": "Echo",
        "resilientrpc.strategy": "pick_first",
        "rpc.grpc.status_code": OK_CODE,
        "resilientrpc.attempts": 1,
    }
    (attempt,) = attempts_of(call, tracing.wait(f"Attempt.{CALL}", 1))
    assert attempt.kind is SpanKind.CLIENT
    # Only what the call span does not say: the method is in the span's name and parent.
    assert dict(attempt.attributes or {}) == {
        "server.address": "127.0.0.1",
        "server.port": group[0].port,
        "resilientrpc.attempt": 1,
        "resilientrpc.hedge": False,
        "rpc.grpc.status_code": OK_CODE,
    }


def test_a_call_that_fails_over(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(2)
    group[0].configure(error_rate=1.0)
    handle = opened(open_channel, group.addresses, tracing, config(FAIL_OVER))
    assert handle.echo("hi").backend == group[1].name
    (call,) = tracing.wait(CALL, 1)
    assert (call.attributes or {})["resilientrpc.attempts"] == 2
    assert (call.attributes or {})["rpc.grpc.status_code"] == OK_CODE
    first, second = attempts_of(call, tracing.wait(f"Attempt.{CALL}", 2))
    assert (first.attributes or {})["server.port"] == group[0].port
    assert (first.attributes or {})["rpc.grpc.status_code"] == UNAVAILABLE_CODE
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert (second.attributes or {})["server.port"] == group[1].port
    assert (second.attributes or {})["resilientrpc.attempt"] == 2
    assert second.status.status_code is StatusCode.UNSET
    (retry,) = [e for e in call.events if e.name == "retry"]
    assert dict(retry.attributes or {}) == {
        "resilientrpc.attempt": 1,
        "rpc.grpc.status_code": UNAVAILABLE_CODE,
        "server.address": group[0].address,
        "resilientrpc.backoff_ms": pytest.approx(
            (retry.attributes or {})["resilientrpc.backoff_ms"]
        ),
        "resilientrpc.reason": "UNAVAILABLE",
    }
    assert 0 <= float(str((retry.attributes or {})["resilientrpc.backoff_ms"])) <= 20.0


def test_a_hedged_call(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(2)
    group[0].configure(stall_rate=1.0, stall_seconds=2.0)
    hedging = {"maxAttempts": 2, "hedgingDelay": "0.05s"}
    handle = opened(open_channel, group.addresses, tracing, config(hedging, "hedgingPolicy"))
    assert handle.echo("x", timeout=5).backend == group[1].name
    (call,) = tracing.wait(CALL, 1)
    assert (call.attributes or {})["resilientrpc.attempts"] == 2
    assert [e.name for e in call.events] == ["hedge"]
    assert (call.events[0].attributes or {})["resilientrpc.attempt"] == 2
    stalled, hedge = attempts_of(call, tracing.wait(f"Attempt.{CALL}", 2))
    assert (stalled.attributes or {})["resilientrpc.hedge"] is False
    assert (stalled.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE  # the loser
    assert (hedge.attributes or {})["resilientrpc.hedge"] is True
    assert (hedge.attributes or {})["server.port"] == group[1].port
    assert (hedge.attributes or {})["rpc.grpc.status_code"] == OK_CODE


def test_server_streams_end_their_spans_exhausted_or_cancelled(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(1)
    handle = opened(open_channel, group.addresses, tracing, config())
    assert len(handle.server_stream("s", 3)) == 3
    (done,) = tracing.wait(STREAM, 1)
    assert (done.attributes or {})["rpc.grpc.status_code"] == OK_CODE
    assert handle.cancel_server_stream_after("s", 1000, 1) is grpc.StatusCode.CANCELLED
    spans = tracing.wait(STREAM, 2)
    (cancelled,) = [s for s in spans if s is not done]
    assert (cancelled.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE
    assert cancelled.status.status_code is StatusCode.ERROR
    attempts = tracing.wait(f"Attempt.{STREAM}", 2)
    (attempt,) = attempts_of(cancelled, attempts)
    assert (attempt.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE


def _unary(handle: ChannelHandle) -> bytes:
    """One raw unary call to a ScriptedServer through the twin's channel."""
    channel: Any = handle.channel
    method = channel.unary_unary(UNARY)
    if not hasattr(handle, "run"):
        reply: bytes = method(b"x", timeout=5)
        return reply

    async def call() -> bytes:
        answer: bytes = await method(b"x", timeout=5)
        return answer

    answered: bytes = handle.run(call())
    return answered


def test_traceparent_carries_the_attempt_span_to_the_server(
    open_channel: OpenChannel, tracing: Tracing
) -> None:
    with ScriptedServer() as server:
        handle = opened(open_channel, [server.address], tracing, config())
        assert _unary(handle) == b"x"
        (attempt,) = tracing.wait("Attempt.retry.test.Svc/Unary", 1)
        (execution,) = server.executions
    traceparent = str(execution.metadata["traceparent"])
    _, trace_id, span_id, _ = traceparent.split("-")
    assert attempt.context is not None
    assert int(trace_id, 16) == attempt.context.trace_id
    assert int(span_id, 16) == attempt.context.span_id


def test_nothing_from_metadata_is_recorded_by_default(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(1)
    handle = opened(open_channel, group.addresses, tracing, config())
    handle.echo("hi", metadata=(("x-secret", "hunter2"),))
    tracing.wait(CALL, 1)
    tracing.wait(f"Attempt.{CALL}", 1)
    for span in tracing.spans():
        assert "hunter2" not in repr(dict(span.attributes or {}))
        assert all("hunter2" not in repr(dict(e.attributes or {})) for e in span.events)


def test_endpoint_events_are_short_spans_of_their_own(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(1)
    opened(open_channel, group.addresses, tracing, config())
    deadline = time.monotonic() + 5
    while not tracing.spans("endpoint.connectivity") and time.monotonic() < deadline:
        time.sleep(0.01)
    span = tracing.spans("endpoint.connectivity")[0]
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is None
    assert (span.attributes or {})["server.address"] == group[0].address


class _Broken(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter down")


class _Failing(SimpleSpanProcessor):
    """A span processor that raises wherever OpenTelemetry lets it reach our code."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.name.startswith("Attempt."):
            raise RuntimeError("processor down")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor down")


def test_a_broken_tracer_never_fails_a_call(
    open_channel: OpenChannel,
    backends: Callable[..., Backends],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(_Failing(_Broken()))
    group = backends(1)
    handle = open_channel(group.addresses, config=config(), tracer_provider=provider)
    handle.wait_ready(5)
    with caplog.at_level(logging.ERROR, logger="interceptors.spans"):
        for _ in range(3):
            assert handle.echo("hi").message == "hi"
        assert len(handle.server_stream("s", 2)) == 2
    provider.shutdown()
    failures = [r.getMessage() for r in caplog.records if r.name == "interceptors.spans"]
    assert len(failures) == len(set(failures))  # each failure logged once, not per call
    assert len(failures) <= 4


def test_a_plain_channel_traces_alone_and_records_only_named_metadata(
    tracing: Tracing,
) -> None:
    with ScriptedServer(script=[fail()]) as server:
        interceptor = TracingInterceptor(tracing.provider, record_metadata=("X-Tenant",))
        with grpc.insecure_channel(server.address) as plain:
            channel = grpc.intercept_channel(plain, interceptor)
            method = channel.unary_unary(UNARY)
            with pytest.raises(grpc.RpcError):
                method(b"x", timeout=5, metadata=(("x-tenant", "blue"), ("x-secret", "s")))
            assert method(b"y", timeout=5) == b"y"
        failed, succeeded = tracing.wait("retry.test.Svc/Unary", 2)
        executions = list(server.executions)
    assert failed.status.status_code is StatusCode.ERROR
    attributes = failed.attributes or {}
    assert attributes["rpc.grpc.status_code"] == UNAVAILABLE_CODE
    assert attributes["rpc.grpc.request.metadata.x-tenant"] == ("blue",)
    assert "s" not in [v for k, v in attributes.items() if "x-secret" in k]
    assert not any("x-secret" in key for key in attributes)
    assert "resilientrpc.strategy" not in attributes
    assert (succeeded.attributes or {})["rpc.grpc.status_code"] == OK_CODE
    for span, execution in zip((failed, succeeded), executions, strict=True):
        assert span.context is not None
        _, trace_id, span_id, _ = str(execution.metadata["traceparent"]).split("-")
        assert int(span_id, 16) == span.context.span_id
        assert int(trace_id, 16) == span.context.trace_id


def test_without_a_tracer_provider_there_is_no_tracing_step(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(1)
    handle = open_channel(group.addresses)
    channel: Any = handle.channel
    assert channel._tracing is None
    assert channel._direct is not None  # the hot path stays


def test_attempts_that_found_no_endpoint_are_not_counted_as_sent(
    open_channel: OpenChannel, tracing: Tracing
) -> None:
    with ScriptedServer() as server:
        address = server.address  # nobody listens there once the server stopped
    handle = open_channel([address], config=config(FAIL_OVER), tracer_provider=tracing.provider)
    with pytest.raises(grpc.RpcError) as raised:
        handle.echo("hi", timeout=2)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    (call,) = tracing.wait(CALL, 1)
    assert (call.attributes or {})["resilientrpc.attempts"] == 0
    assert not tracing.spans(f"Attempt.{CALL}")


@pytest.mark.parametrize("policy", [None, FAIL_OVER], ids=["no retry policy", "retried"])
def test_a_traced_call_that_waits_for_an_endpoint(
    open_channel: OpenChannel,
    backends: Callable[..., Backends],
    tracing: Tracing,
    policy: dict[str, Any] | None,
) -> None:
    """No endpoint when the call is made: it leaves the hot path for the chain below the
    tracing step, and its spans are those of any call."""
    group = backends(1)
    port, address = group[0].port, group[0].address
    group.stop()
    handle = open_channel([address], config=config(policy), tracer_provider=tracing.provider)
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo("hi", timeout=0.3, wait_for_ready=True)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    (expired,) = tracing.wait(CALL, 1)
    assert (expired.attributes or {})["resilientrpc.attempts"] == 0
    assert expired.status.status_code is StatusCode.ERROR
    revived: list[Backend] = []
    timer = threading.Timer(0.3, lambda: revived.append(Backend("revived", port=port).start()))
    timer.start()
    try:
        assert handle.echo("hi", timeout=10, wait_for_ready=True).backend == "revived"
    finally:
        timer.join()
        for backend in revived:
            backend.stop()
    call = next(s for s in tracing.wait(CALL, 2) if s is not expired)
    assert (call.attributes or {})["rpc.grpc.status_code"] == OK_CODE
    assert (call.attributes or {})["resilientrpc.attempts"] == 1
    (attempt,) = attempts_of(call, tracing.wait(f"Attempt.{CALL}", 1))
    assert (attempt.attributes or {})["server.port"] == port


def test_a_no_op_tracer_provider_adds_no_tracing_step(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(1)
    handle = open_channel(group.addresses, tracer_provider=NoOpTracerProvider())
    handle.wait_ready(5)
    assert handle.echo("hi").message == "hi"
    channel: Any = handle.channel
    assert channel._tracing is None
    assert channel._direct is not None


class _Dropping(Sampler):
    """Samples every span out, and remembers the name of each span it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
    ) -> SamplingResult:
        self.asked.append(name)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "drops every span"


def test_a_call_sampled_out_makes_no_attempt_spans_and_still_propagates(
    open_channel: OpenChannel,
) -> None:
    sampler = _Dropping()
    provider = TracerProvider(sampler=sampler)
    with ScriptedServer() as server:
        handle = open_channel([server.address], config=config(), tracer_provider=provider)
        handle.wait_ready(5)
        assert _unary(handle) == b"x"
        (execution,) = server.executions
    # Only the call span was asked about: its attempts record nothing either, so none
    # is started.
    calls = [name for name in sampler.asked if not name.startswith("endpoint.")]
    assert calls == ["retry.test.Svc/Unary"]
    _, trace_id, _, flags = str(execution.metadata["traceparent"]).split("-")
    assert int(trace_id, 16) != 0
    # The server learns the trace was sampled out: the sampled bit is clear (newer SDKs
    # also set 0x02, W3C level 2's "random trace id").
    assert int(flags, 16) & 0x01 == 0


def test_an_aio_plain_channel_traces_alone(tracing: Tracing) -> None:
    from interceptors.aio import TracingInterceptor as AioTracingInterceptor  # noqa: PLC0415

    async def run(address: str) -> bytes:
        interceptor = AioTracingInterceptor(tracing.provider)
        async with grpc.aio.insecure_channel(address, interceptors=[interceptor]) as channel:
            reply: bytes = await channel.unary_unary(UNARY)(b"x", timeout=5)
            return reply

    with ScriptedServer() as server:
        assert asyncio.run(run(server.address)) == b"x"
        (call,) = tracing.wait("retry.test.Svc/Unary", 1)
        (execution,) = server.executions
    assert (call.attributes or {})["rpc.grpc.status_code"] == OK_CODE
    assert call.context is not None
    _, _, span_id, _ = str(execution.metadata["traceparent"]).split("-")
    assert int(span_id, 16) == call.context.span_id


RETRIED = {
    "maxAttempts": 2,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.02s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


@pytest.mark.parametrize("policy", [None, RETRIED], ids=["plain", "retried"])
def test_an_abandoned_stream_ends_its_span(
    backends: Callable[..., Backends], tracing: Tracing, policy: dict[str, Any] | None
) -> None:
    group = backends(1)
    with resilientrpc.ResilientChannel(
        group.addresses, config=config(policy), tracer_provider=tracing.provider
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        stream = stub.ServerStream(echo_pb2.EchoRequest(message="s", count=1000), timeout=10)
        next(stream)
        del stream  # neither exhausted nor cancelled: dropped
        gc.collect()
        (call,) = tracing.wait(STREAM, 1)
    assert (call.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE


def test_an_endpoint_event_during_a_call_is_an_event_on_its_span(
    open_channel: OpenChannel, backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(1)
    service_config = {**config(), "healthCheckConfig": {"serviceName": ECHO}}
    handle = opened(open_channel, group.addresses, tracing, service_config)
    group[0].configure(hang=True)
    flip = threading.Timer(0.3, lambda: group[0].configure(health="NOT_SERVING"))
    flip.start()
    try:
        with pytest.raises(grpc.RpcError) as raised:
            handle.echo("x", timeout=1.5)
    finally:
        flip.join()
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    (call,) = tracing.wait(CALL, 1)
    (health,) = [e for e in call.events if e.name == "endpoint.health"]
    assert (health.attributes or {})["server.address"] == group[0].address
    assert "NOT_SERVING" in str((health.attributes or {})["resilientrpc.reason"])
    channel: Any = handle.channel
    assert not channel._tracing._running  # an ended call is no longer running
    own = tracing.spans("endpoint.health")  # SERVING at the start: no call was running
    assert not [s for s in own if "NOT_SERVING" in str((s.attributes or {}).values())]


def test_an_abandoned_aio_stream_ends_its_span(
    backends: Callable[..., Backends], tracing: Tracing
) -> None:
    group = backends(1)

    async def run() -> None:
        async with resilientrpc.aio.ResilientChannel(
            group.addresses, config=config(), tracer_provider=tracing.provider
        ) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            stream = stub.ServerStream(echo_pb2.EchoRequest(message="s", count=1000), timeout=10)
            await stream.read()
            del stream  # neither exhausted nor cancelled: dropped
            gc.collect()
            for _ in range(500):  # bounded: the span ends within 5 s
                if tracing.spans(STREAM):
                    break
                await asyncio.sleep(0.01)

    asyncio.run(run())
    (call,) = tracing.wait(STREAM, 1)
    assert (call.attributes or {})["rpc.grpc.status_code"] == CANCELLED_CODE
