"""Fault localisation end to end: a real run, real faults, the real exporter, the report.

Three Echo backends in child processes behind one traced ``ResilientChannel``: one
healthy, one failing 30 % of its calls with UNAVAILABLE, one frozen with SIGSTOP while
traffic runs (its heartbeats stop, its attempts time out). The channel retries
(``maxAttempts`` 3, a 150 ms ``perAttemptRecvTimeout``) and checks health with a
0.2 s + 0.2 s heartbeat. Its spans go through the SDK's batch processor and the real
OTLP/gRPC exporter to ``resilientrpc faults``' receiver on 127.0.0.1, and the report of
what arrived must name the failing backend, then the hung one, with the counts that the
backends and an in-memory copy of the very same spans give independently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilientrpc import ResilientChannel
from resilientrpc.faults_command import SpanReceiver
from resilientrpc.faults_report import build_report, report_to_json
from resilientrpc.testing import BackendProcess, Faults, echo_pb2, echo_pb2_grpc

ECHO = "resilientrpc.echo.v1.Echo"
CALLS = 300
NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": "", "interval": "0.2s", "timeout": "0.2s"},
    "methodConfig": [
        {
            "name": [{"service": ECHO}],
            "timeout": "3s",
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.05s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
                "perAttemptRecvTimeout": "0.15s",
            },
        }
    ],
}


@pytest.fixture
def fleet() -> Iterator[dict[str, BackendProcess]]:
    backends = {
        "healthy": BackendProcess("healthy"),
        "flaky": BackendProcess("flaky", faults=Faults(error_rate=0.3), seed=7),
        "hung": BackendProcess("hung"),
    }
    try:
        for backend in backends.values():
            backend.start()
        yield backends
    finally:
        for backend in backends.values():
            if backend.returncode is None:
                backend.resume()  # a stopped child would not stop
            backend.stop()


def _attempts(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in spans if span.name == f"Attempt.{ECHO}/Echo"]


def _address(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return f"{attributes['server.address']!s}:{attributes['server.port']!s}"


def _code(span: ReadableSpan) -> int:
    return int(str((span.attributes or {})["rpc.grpc.status_code"]))


def test_the_report_of_a_real_run_names_the_failing_then_the_hung_backend(
    fleet: dict[str, BackendProcess],
) -> None:
    receiver = SpanReceiver("127.0.0.1", 0)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.address, insecure=True))
    )
    address = {name: backend.address for name, backend in fleet.items()}
    try:
        channel = ResilientChannel(list(address.values()), config=CONFIG, tracer_provider=provider)
        with channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = echo_pb2_grpc.EchoStub(channel)
            flaky_before = fleet["flaky"].calls
            fleet["hung"].pause()
            replies = Counter(
                stub.Echo(echo_pb2.EchoRequest(message=str(n))).backend for n in range(CALLS)
            )
            flaky_executions = fleet["flaky"].calls - flaky_before
        assert sum(replies.values()) == CALLS  # every call succeeded: retries rescued them
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
        receiver.stop()
    received = receiver.spans()
    report = report_to_json(build_report(received))
    figures = {one["endpoint"]: one for one in report["endpoints"]}
    mine = _attempts(memory.get_finished_spans())

    # Every span made arrived, and the report counts them as the spans themselves say.
    assert len(received) == len(memory.get_finished_spans())
    assert report["calls"] == CALLS
    assert report["attempts"] == len(mine)
    for name, where in address.items():
        here = [span for span in mine if _address(span) == where]
        failed = Counter(NAMES[_code(span)] for span in here if _code(span) != 0)
        assert figures[where]["attempts"] == len(here), name
        assert figures[where]["failures_by_code"] == dict(failed), name

    flaky, hung, healthy = (
        figures[address["flaky"]],
        figures[address["hung"]],
        figures[address["healthy"]],
    )
    # The backend counted what it executed: each attempt the report gives it reached it.
    assert flaky["attempts"] == flaky_executions
    assert set(flaky["failures_by_code"]) == {"UNAVAILABLE"}
    assert 0.15 <= flaky["failure_rate"] <= 0.45, flaky
    assert flaky["rescued_by_retry"] == flaky["failures"]
    # The hung one: its attempts timed out until its heartbeat said it was gone.
    assert hung["timeouts"] >= 1 and hung["timeouts"] == hung["failures"], hung
    assert hung["heartbeat_misses"] >= 1, hung
    assert healthy["failures"] == 0, healthy
    suspects = [suspect["endpoint"] for suspect in report["suspects"]]
    assert suspects[:2] == [address["flaky"], address["hung"]], report["suspects"]
    assert address["healthy"] not in suspects, report["suspects"]
