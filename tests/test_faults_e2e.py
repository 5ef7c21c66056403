"""Fault localisation end to end: a real run, real faults, the real exporter, the report.

Three Echo backends in child processes behind one traced ``ResilientChannel``: one
healthy, one failing 30 % of its calls with UNAVAILABLE, one frozen with SIGSTOP while
traffic runs (its heartbeats stop, its attempts time out). The channel retries
(``maxAttempts`` 3, a 150 ms ``perAttemptRecvTimeout``) and checks health with a
0.2 s + 0.2 s heartbeat. Its spans go through the SDK's batch processor and the real
OTLP/gRPC exporter to ``resilientrpc faults``' receiver on 127.0.0.1, and the report of
what arrived must name the failing backend, then the hung one, with the counts that the
backends and an in-memory copy of the very same spans give independently. The run is
:func:`resilientrpc.testing.fault_run.run_fault_scenario`, the one whose report
``examples/fault_report.py`` prints and the README shows.
"""

from __future__ import annotations

from collections import Counter

import grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilientrpc.faults_command import SpanReceiver
from resilientrpc.faults_report import build_report, report_to_json
from resilientrpc.testing.fault_run import run_fault_scenario

ECHO = "resilientrpc.echo.v1.Echo"
CALLS = 300
NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def _attempts(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in spans if span.name == f"Attempt.{ECHO}/Echo"]


def _address(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return f"{attributes['server.address']!s}:{attributes['server.port']!s}"


def _code(span: ReadableSpan) -> int:
    return int(str((span.attributes or {})["rpc.grpc.status_code"]))


def test_the_report_of_a_real_run_names_the_failing_then_the_hung_backend() -> None:
    receiver = SpanReceiver("127.0.0.1", 0)
    memory = InMemorySpanExporter()
    try:
        run = run_fault_scenario(
            receiver.address, CALLS, span_processors=[SimpleSpanProcessor(memory)]
        )
    finally:
        receiver.stop()
    assert run.flushed
    assert sum(run.replies.values()) == CALLS  # every call succeeded: retries rescued them
    address = run.addresses
    flaky_executions = run.flaky_executions
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
