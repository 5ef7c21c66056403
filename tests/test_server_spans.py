"""Server spans join the client's trace: each is the child of the attempt that reached it.

Two instrumented :class:`~resilientrpc.testing.BackendProcess` children (the server
interceptor of opentelemetry-instrumentation-grpc) and a traced ResilientChannel (the SDK,
a batch processor, the real OTLP/gRPC exporter) all export to one real OTLP/gRPC receiver
on 127.0.0.1: the ``resilientrpc faults --listen`` receiver. A server span must carry the
trace id of the call span and, as its parent, the id of the attempt span whose context the
attempt's metadata carried: not the call span, not another attempt.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import grpc
import pytest
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import resilientrpc
from resilientrpc import ConfigError
from resilientrpc.faults_command import SpanReceiver
from resilientrpc.testing import Backend, BackendProcess, echo_pb2, echo_pb2_grpc
from resilientrpc.testing.instrumented import SERVICE_NAME
from tests.floors import FLOOR_RUN, floor_pins

ECHO = "resilientrpc.echo.v1.Echo"
CALL = f"{ECHO}/Echo"
STREAM = f"{ECHO}/ServerStream"
CLIENT_SERVICE = "server-spans-test"
#: Two attempts, the second after 10-20 ms, first backend first.
CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"pick_first": {}}],
    "methodConfig": [
        {
            "name": [{"service": ECHO}],
            "retryPolicy": {
                "maxAttempts": 2,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.02s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
WAIT = 10.0  # seconds for spans to reach the receiver (the backends batch for 0.2 s)


@dataclass(frozen=True)
class Received:
    """One span as it reached the receiver, with what the fault report's Span leaves out."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Receiver(SpanReceiver):
    """The ``faults --listen`` receiver, also keeping each span's resource and kind."""

    def __init__(self) -> None:
        self._received: list[Received] = []
        self._received_lock = threading.Lock()
        super().__init__("127.0.0.1", 0)

    def add(self, document: dict[str, Any]) -> None:
        found = []
        for resource in document.get("resourceSpans", ()):
            attributes = resource.get("resource", {}).get("attributes", ())
            service = next(
                (
                    a["value"].get("stringValue", "")
                    for a in attributes
                    if a["key"] == "service.name"
                ),
                "",
            )
            for scope in resource.get("scopeSpans", ()):
                for raw in scope.get("spans", ()):
                    found.append(
                        Received(
                            service=service,
                            name=raw.get("name", ""),
                            kind=raw.get("kind", ""),
                            trace_id=raw.get("traceId", ""),
                            span_id=raw.get("spanId", ""),
                            parent_id=raw.get("parentSpanId", ""),
                            attributes={
                                a["key"]: next(iter(a["value"].values()), None)
                                for a in raw.get("attributes", ())
                            },
                        )
                    )
        with self._received_lock:
            self._received.extend(found)
        super().add(document)

    def received(self) -> list[Received]:
        with self._received_lock:
            return list(self._received)

    def trace(self, trace_id: str, servers: int) -> tuple[list[Received], list[Received]]:
        """Client and server spans of ``trace_id``, once ``servers`` server spans arrived."""
        deadline = time.monotonic() + WAIT
        while True:
            spans = [span for span in self.received() if span.trace_id == trace_id]
            server = [span for span in spans if span.service == SERVICE_NAME]
            if len(server) >= servers or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        assert len(server) == servers, spans
        return [span for span in spans if span.service == CLIENT_SERVICE], server


@dataclass
class World:
    receiver: Receiver
    backends: list[BackendProcess]
    provider: TracerProvider


@pytest.fixture
def world() -> Iterator[World]:
    receiver = Receiver()
    provider = TracerProvider(resource=Resource.create({"service.name": CLIENT_SERVICE}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.address, insecure=True))
    )
    backends: list[BackendProcess] = []
    try:
        for name in ("first", "second"):
            backends.append(BackendProcess(name, otlp_endpoint=receiver.address).start())
        yield World(receiver, backends, provider)
    finally:
        for backend in backends:
            backend.stop()
        provider.shutdown()
        receiver.stop()


@pytest.fixture
def channel(world: World) -> Iterator[resilientrpc.ResilientChannel]:
    targets = [backend.address for backend in world.backends]
    with resilientrpc.ResilientChannel(
        targets, config=CONFIG, tracer_provider=world.provider
    ) as opened:
        grpc.channel_ready_future(opened).result(timeout=5)
        deadline = time.monotonic() + 5
        while any(e.state != "READY" for e in opened.endpoints()):
            assert time.monotonic() < deadline, opened.endpoints()
            time.sleep(0.01)
        yield opened


def client_spans(world: World, before: int, name: str) -> tuple[Received, list[Received]]:
    """The one call span named ``name`` exported after ``before`` spans, and its attempts."""
    assert world.provider.force_flush(timeout_millis=10_000)
    new = world.receiver.received()[before:]
    (call,) = [s for s in new if s.service == CLIENT_SERVICE and s.name == name]
    attempts = [s for s in new if s.parent_id == call.span_id and s.trace_id == call.trace_id]
    attempts.sort(key=lambda s: int(s.attributes["resilientrpc.attempt"]))
    return call, attempts


def check_joined(call: Received, attempt: Received, server: Received, method: str) -> None:
    assert server.trace_id == call.trace_id
    assert server.parent_id == attempt.span_id
    assert server.parent_id != call.span_id
    assert server.kind == "SPAN_KIND_SERVER"
    assert attempt.kind == "SPAN_KIND_CLIENT"
    assert server.attributes["rpc.method"] == method
    assert server.attributes["rpc.service"] == ECHO
    assert server.name == f"/{ECHO}/{method}"


def test_a_call_that_succeeds_first_time_has_its_server_span_under_its_attempt(
    world: World, channel: resilientrpc.ResilientChannel
) -> None:
    before = len(world.receiver.received())
    reply = echo_pb2_grpc.EchoStub(channel).Echo(echo_pb2.EchoRequest(message="hi"), timeout=5)
    assert reply.backend == "first"
    call, attempts = client_spans(world, before, CALL)
    (attempt,) = attempts
    _, (server,) = world.receiver.trace(call.trace_id, servers=1)
    check_joined(call, attempt, server, "Echo")


def test_each_server_span_of_a_failed_over_call_is_the_child_of_its_own_attempt(
    world: World, channel: resilientrpc.ResilientChannel
) -> None:
    first, second = world.backends
    first.configure(fail_next=1)
    before = len(world.receiver.received())
    reply = echo_pb2_grpc.EchoStub(channel).Echo(echo_pb2.EchoRequest(message="hi"), timeout=5)
    assert reply.backend == "second"
    call, attempts = client_spans(world, before, CALL)
    assert call.attributes["resilientrpc.attempts"] == "2"  # OTLP JSON carries ints as text
    failed, rescued = attempts
    assert failed.attributes["server.port"] == str(first.port)
    assert rescued.attributes["server.port"] == str(second.port)
    _, servers = world.receiver.trace(call.trace_id, servers=2)
    by_parent = {server.parent_id: server for server in servers}
    assert sorted(by_parent) == sorted([failed.span_id, rescued.span_id])
    check_joined(call, failed, by_parent[failed.span_id], "Echo")
    check_joined(call, rescued, by_parent[rescued.span_id], "Echo")
    # The failed attempt's server span is the one that failed.
    assert by_parent[failed.span_id].attributes["rpc.grpc.status_code"] == str(
        grpc.StatusCode.UNAVAILABLE.value[0]
    )
    assert by_parent[rescued.span_id].attributes["rpc.grpc.status_code"] == str(
        grpc.StatusCode.OK.value[0]
    )


def test_a_server_stream_joins_the_trace(
    world: World, channel: resilientrpc.ResilientChannel
) -> None:
    before = len(world.receiver.received())
    stream = echo_pb2_grpc.EchoStub(channel).ServerStream(
        echo_pb2.EchoRequest(message="s", count=3), timeout=5
    )
    assert [reply.index for reply in stream] == [0, 1, 2]
    call, attempts = client_spans(world, before, STREAM)
    (attempt,) = attempts
    _, (server,) = world.receiver.trace(call.trace_id, servers=1)
    check_joined(call, attempt, server, "ServerStream")


def test_an_in_process_backend_is_instrumented_too(world: World) -> None:
    tracer = world.provider.get_tracer("server-spans-test")
    backend = Backend("inline", otlp_endpoint=world.receiver.address)
    with backend, tracer.start_as_current_span("client") as client:
        metadata: dict[str, str] = {}
        propagate.inject(metadata)
        with grpc.insecure_channel(backend.address) as plain:
            stub = echo_pb2_grpc.EchoStub(plain)
            stub.Echo(echo_pb2.EchoRequest(), metadata=list(metadata.items()), timeout=5)
    context = client.get_span_context()
    trace_id = base64.b64encode(context.trace_id.to_bytes(16, "big")).decode()
    _, (server,) = world.receiver.trace(trace_id, servers=1)
    assert server.parent_id == base64.b64encode(context.span_id.to_bytes(8, "big")).decode()
    assert server.kind == "SPAN_KIND_SERVER"


@pytest.mark.parametrize(
    "endpoint",
    [
        "192.168.1.1:4317",
        "example.com:4317",
        "127.0.0.1",
        "127.0.0.1:99999",
        4317,
        "127.0.0.1:0",  # nothing can be sent to port 0
        "127.0.0.1:\uff14\uff13\uff11\uff17",  # full-width digits: int() takes them
    ],
)
def test_a_bad_otlp_endpoint_is_one_config_error_and_nothing_starts(endpoint: Any) -> None:
    for make in (Backend, BackendProcess):
        with pytest.raises(ConfigError) as error:
            make("x", otlp_endpoint=endpoint)
        assert error.value.path == "otlp_endpoint"


def test_the_command_line_refuses_a_non_loopback_otlp_endpoint() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "resilientrpc.testing", "--otlp-endpoint", "10.0.0.1:4317"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "--otlp-endpoint: '10.0.0.1' is not a loopback address" in completed.stderr
    assert "LISTENING" not in completed.stdout


def test_the_floor_run_has_the_instrumentation_release_of_its_sdk() -> None:
    # No pin in constraints/floor.txt: the SDK's exact semantic-conventions pin decides.
    instrumentation = metadata.version("opentelemetry-instrumentation-grpc")
    assert instrumentation == metadata.version("opentelemetry-semantic-conventions")
    if FLOOR_RUN:
        assert metadata.version("opentelemetry-sdk") == floor_pins()["opentelemetry-sdk"]
        assert instrumentation == "0.49b0"


def test_without_the_instrumentation_an_instrumented_backend_is_one_config_error() -> None:
    program = textwrap.dedent(
        """
        import importlib.abc
        import sys

        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.startswith("opentelemetry.instrumentation"):
                    raise ModuleNotFoundError(f"hidden by the test: {name}", name=name)
                return None

        sys.meta_path.insert(0, Hide())
        from resilientrpc import ConfigError
        from resilientrpc.testing import Backend

        backend = Backend("x", otlp_endpoint="127.0.0.1:4317")
        try:
            backend.start()
        except ConfigError as error:
            print(error.path, "|", error.message)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("otlp_endpoint | an instrumented backend needs"), (
        completed.stdout
    )
    assert "pip install" in completed.stdout
