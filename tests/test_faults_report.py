"""``resilientrpc faults``: the report over hand-built spans, from OTLP JSON, Jaeger JSON and live.

The scenario follows the span schema of issue 10: three endpoints behind one channel,
``127.0.0.1:5001`` healthy, ``127.0.0.1:5002`` failing 30 % of its attempts fast with
UNAVAILABLE (retried or hedged onto the healthy one), ``127.0.0.1:5003`` hung: its
attempts end in DEADLINE_EXCEEDED after 1 s, its heartbeats are missed and it is ejected.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from resilientrpc.errors import ConfigError
from resilientrpc.faults_command import loopback_address
from resilientrpc.faults_report import (
    AttributeValue,
    Event,
    Report,
    Span,
    build_report,
    format_report,
    parse_spans,
    report_to_json,
)

ROOT = Path(__file__).resolve().parent.parent
HEALTHY, FAILING, HUNG = "127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"
METHOD = "resilientrpc.echo.v1.Echo/Echo"
T0 = 1_767_225_600_000_000_000  # ns; every time below is a whole microsecond (Jaeger's unit)
MS = 1_000_000
OK, CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE = 0, 1, 4, 14


class _Builder:
    """Builds calls of the scenario as spans, ids counted up."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._ids = 0
        self._clock = T0

    def _id(self) -> str:
        self._ids += 1
        return f"{self._ids:016x}"

    def call(
        self,
        attempts: list[tuple[str, int, float, bool]],
        code: int,
        events: tuple[Event, ...] = (),
    ) -> None:
        """One call: ``attempts`` are (endpoint, code, milliseconds, hedge), one after another."""
        trace_id = f"{self._ids + 1:032x}"
        call_id = self._id()
        start = now = self._clock
        for number, (endpoint, attempt_code, millis, hedge) in enumerate(attempts, start=1):
            host, port = endpoint.split(":")
            end = now + int(millis * MS)
            attributes: dict[str, AttributeValue] = {
                "server.address": host,
                "server.port": int(port),
                "resilientrpc.attempt": number,
                "resilientrpc.hedge": hedge,
                "rpc.grpc.status_code": attempt_code,
            }
            self.spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=self._id(),
                    parent_id=call_id,
                    name=f"Attempt.{METHOD}",
                    start_ns=now,
                    end_ns=end,
                    error=attempt_code != OK,
                    attributes=attributes,
                )
            )
            now = end if not hedge else now
        self.spans.append(
            Span(
                trace_id=trace_id,
                span_id=call_id,
                parent_id="",
                name=METHOD,
                start_ns=start,
                end_ns=max(span.end_ns for span in self.spans[-len(attempts) :]),
                error=code != OK,
                attributes={
                    "rpc.system": "grpc",
                    "rpc.grpc.status_code": code,
                    "resilientrpc.attempts": len(attempts),
                    "resilientrpc.strategy": "round_robin",
                },
                events=events,
            )
        )
        self._clock += 10 * MS

    def endpoint_span(self, kind: str, endpoint: str) -> None:
        """An endpoint event with no call running: a short span of its own."""
        host, port = endpoint.split(":")
        self.spans.append(
            Span(
                trace_id=f"{self._ids + 1:032x}",
                span_id=self._id(),
                parent_id="",
                name=f"endpoint.{kind}",
                start_ns=self._clock,
                end_ns=self._clock + 1000,
                error=False,
                attributes={"server.address": host, "server.port": int(port)},
            )
        )
        self._clock += 10 * MS


def _miss(at_ns: int) -> Event:
    attributes: dict[str, AttributeValue] = {
        "server.address": "127.0.0.1",
        "server.port": 5003,
        "resilientrpc.reason": "no heartbeat within 1s",
    }
    return Event(name="endpoint.heartbeat_missed", time_ns=at_ns, attributes=attributes)


def scenario() -> list[Span]:
    """The spans of the scenario; the expected figures are in :func:`check_scenario`."""
    build = _Builder()
    for _ in range(84):  # the failing endpoint's good attempts
        build.call([(FAILING, OK, 1.0, False)], OK)
    for _ in range(33):  # its failures, retried onto the healthy endpoint
        build.call([(FAILING, UNAVAILABLE, 0.5, False), (HEALTHY, OK, 2.0, False)], OK)
    for _ in range(3):  # its failures while a hedge to the healthy endpoint won
        build.call([(FAILING, UNAVAILABLE, 0.5, False), (HEALTHY, OK, 2.0, True)], OK)
    for _ in range(150):
        build.call([(HEALTHY, OK, 2.0, False)], OK)
    first_miss = T0 + 5 * MS
    for index in range(8):  # the hung endpoint's timeouts, retried onto the healthy one
        events = (_miss(first_miss),) if index < 2 else ()  # one miss seen by two calls
        build.call(
            [(HUNG, DEADLINE_EXCEEDED, 1000.0, False), (HEALTHY, OK, 2.0, False)], OK, events
        )
    build.call([(HUNG, DEADLINE_EXCEEDED, 1000.0, False)], DEADLINE_EXCEEDED, (_miss(T0 + 7 * MS),))
    for _ in range(3):  # no retry left: the call fails
        build.call([(HUNG, DEADLINE_EXCEEDED, 1000.0, False)], DEADLINE_EXCEEDED)
    for _ in range(2):  # a hedge to the healthy endpoint won; the hung attempt was cancelled
        build.call([(HUNG, CANCELLED, 300.0, False), (HEALTHY, OK, 2.0, True)], OK)
    build.endpoint_span("heartbeat_missed", HUNG)
    build.endpoint_span("ejected", HUNG)
    return build.spans


def check_scenario(report: dict[str, Any]) -> None:
    """Exact figures of :func:`scenario`'s report, in its JSON form."""
    assert (report["calls"], report["attempts"]) == (284, 330)
    figures = {one["endpoint"]: one for one in report["endpoints"]}
    assert sorted(figures) == [HEALTHY, FAILING, HUNG]
    failing, hung, healthy = figures[FAILING], figures[HUNG], figures[HEALTHY]
    assert failing["attempts"] == 120 and failing["failures_by_code"] == {"UNAVAILABLE": 36}
    assert failing["failure_rate"] == pytest.approx(0.3)
    assert (failing["rescued_by_retry"], failing["rescued_by_hedge"]) == (33, 3)
    assert (failing["timeouts"], failing["ejections"], failing["heartbeat_misses"]) == (0, 0, 0)
    assert (failing["p50_ms"], failing["p99_ms"]) == (1.0, 1.0)
    assert hung["attempts"] == 14 and hung["failures_by_code"] == {"DEADLINE_EXCEEDED": 12}
    assert (hung["timeouts"], hung["abandoned"], hung["failures"]) == (12, 2, 12)
    assert (hung["heartbeat_misses"], hung["ejections"]) == (3, 1)
    assert (hung["rescued_by_retry"], hung["rescued_by_hedge"]) == (8, 0)
    assert hung["p99_ms"] == 1000.0
    assert healthy["attempts"] == 196 and healthy["failures"] == 0
    assert (healthy["p50_ms"], healthy["p99_ms"]) == (2.0, 2.0)
    suspects = report["suspects"]
    assert [one["endpoint"] for one in suspects] == [FAILING, HUNG]  # the failer first
    assert suspects[0]["score"] == 36 and suspects[1]["score"] == 12 + 3 + 1
    assert suspects[0]["evidence"].startswith(
        "30% of 120 attempts failed (36 UNAVAILABLE; best peer 0%)"
    )
    assert "36 calls rescued (33 by retry, 3 by hedge)" in suspects[0]["evidence"]
    assert suspects[1]["evidence"] == (
        "12 timeouts (DEADLINE_EXCEEDED); p99 1,000 ms vs best peer 1.0 ms; "
        "3 heartbeat misses; 1 ejection; 8 calls rescued (8 by retry, 0 by hedge)"
    )


def _report_json(report: Report) -> dict[str, Any]:
    shape: dict[str, Any] = json.loads(json.dumps(report_to_json(report)))  # as --json
    return shape


# --- writers of the two file formats, from the scenario's spans ----------------------


def _otlp_value(value: AttributeValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def _otlp_attributes(attributes: dict[str, AttributeValue] | Any) -> list[dict[str, Any]]:
    return [{"key": key, "value": _otlp_value(value)} for key, value in attributes.items()]


def otlp_lines(spans: list[Span], per_line: int = 100) -> str:
    """One ExportTraceServiceRequest per line, as the file exporter writes them."""
    lines = []
    for first in range(0, len(spans), per_line):
        raw = [
            {
                "traceId": span.trace_id,
                "spanId": span.span_id,
                **({"parentSpanId": span.parent_id} if span.parent_id else {}),
                "name": span.name,
                "kind": 3,
                "startTimeUnixNano": str(span.start_ns),
                "endTimeUnixNano": str(span.end_ns),
                "attributes": _otlp_attributes(span.attributes),
                "events": [
                    {
                        "timeUnixNano": str(event.time_ns),
                        "name": event.name,
                        "attributes": _otlp_attributes(event.attributes),
                    }
                    for event in span.events
                ],
                "status": {"code": 2} if span.error else {},
            }
            for span in spans[first : first + per_line]
        ]
        resource = {"attributes": _otlp_attributes({"service.name": "client"})}
        scope = {"scope": {"name": "resilientrpc"}, "spans": raw}
        lines.append(json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}))
    return "\n".join(lines) + "\n"


def _jaeger_tags(attributes: dict[str, AttributeValue] | Any) -> list[dict[str, Any]]:
    kinds = {bool: "bool", int: "int64", float: "float64", str: "string"}
    return [
        {"key": key, "type": kinds[type(value)], "value": value}
        for key, value in attributes.items()
    ]


def jaeger_document(spans: list[Span]) -> str:
    """What Jaeger's query API returns for these traces."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        tags = dict(span.attributes)
        if span.error:
            tags["otel.status_code"] = "ERROR"
            tags["error"] = True
        traces.setdefault(span.trace_id, []).append(
            {
                "traceID": span.trace_id,
                "spanID": span.span_id,
                "operationName": span.name,
                "references": [
                    {"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id}
                ]
                if span.parent_id
                else [],
                "startTime": span.start_ns // 1000,
                "duration": (span.end_ns - span.start_ns) // 1000,
                "tags": _jaeger_tags(tags),
                "logs": [
                    {
                        "timestamp": event.time_ns // 1000,
                        "fields": _jaeger_tags({"event": event.name, **event.attributes}),
                    }
                    for event in span.events
                ],
                "processID": "p1",
                "warnings": None,
            }
        )
    data = [
        {"traceID": trace_id, "spans": members, "processes": {"p1": {"serviceName": "client"}}}
        for trace_id, members in traces.items()
    ]
    return json.dumps({"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None})


# --- the tests -------------------------------------------------------------------------


def test_report_of_the_scenario_names_the_failer_then_the_hung_backend() -> None:
    check_scenario(_report_json(build_report(scenario())))


@pytest.mark.parametrize("writer", [otlp_lines, jaeger_document], ids=["otlp", "jaeger"])
def test_both_file_formats_give_the_same_report(writer: Any, tmp_path: Path) -> None:
    path = tmp_path / "spans.json"
    path.write_text(writer(scenario()))
    check_scenario(_report_json(build_report(parse_spans(path.read_text()))))


def test_text_report_ranks_the_suspects_with_evidence() -> None:
    text = format_report(build_report(scenario()))
    suspects = text[text.index("Suspects") :].splitlines()
    assert suspects[1].startswith("1. 127.0.0.1:5002 (score 36): 30% of 120 attempts failed")
    assert suspects[2].startswith("2. 127.0.0.1:5003 (score 16): 12 timeouts")
    assert len(suspects) == 3
    assert "failures at 127.0.0.1:5002: UNAVAILABLE 36" in text


def _remap_ports(spans: list[Span], ports: dict[int, int]) -> list[Span]:
    def remap(attributes: Any) -> dict[str, AttributeValue]:
        port = attributes.get("server.port")
        return {**attributes, **({"server.port": ports[port]} if port in ports else {})}

    return [
        dataclasses.replace(
            span,
            attributes=remap(span.attributes),
            events=tuple(
                dataclasses.replace(event, attributes=remap(event.attributes))
                for event in span.events
            ),
        )
        for span in spans
    ]


def test_suspects_rank_by_score_not_by_address() -> None:
    spans = _remap_ports(scenario(), {5002: 5003, 5003: 5002})  # the hung one sorts first now
    ranked = [suspect.endpoint for suspect in build_report(spans).suspects]
    assert ranked == [HUNG, FAILING]  # 5003 (the failer, 36) before 5002 (the hung one, 16)


def test_an_error_status_without_a_code_counts_as_unknown() -> None:
    def otlp_span(span_id: str, name: str, status: dict[str, Any], **extra: Any) -> Any:
        return {"traceId": "t", "spanId": span_id, "name": name, "status": status, **extra}

    attempt = otlp_span(
        "a",
        f"Attempt.{METHOD}",
        {"code": "STATUS_CODE_ERROR"},  # the protobuf JSON mapping names the enum
        parentSpanId="c",
        attributes=[
            {"key": "server.address", "value": {"stringValue": "127.0.0.1"}},
            {"key": "server.port", "value": {"intValue": "5001"}},
        ],
    )
    call = otlp_span("c", METHOD, {"code": 2})
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [attempt, call]}]}]}
    (figures,) = build_report(parse_spans(json.dumps(document))).endpoints
    assert figures.endpoint == HEALTHY and figures.failures_by_code == {"UNKNOWN": 1}


def test_a_healthy_run_has_no_suspects() -> None:
    spans = [span for span in scenario() if span.attributes.get("server.port") == 5001]
    report = build_report(spans)
    assert report.suspects == () and "No suspects" in format_report(report)


def test_a_slow_backend_that_never_fails_is_a_suspect() -> None:
    build = _Builder()
    for _ in range(50):
        build.call([(HEALTHY, OK, 2.0, False)], OK)
        build.call([(FAILING, OK, 400.0, False)], OK)
    (suspect,) = build_report(build.spans).suspects
    assert suspect.endpoint == FAILING and suspect.score == 50
    assert "p99 400 ms vs best peer 2.0 ms; 50 slow attempts" in suspect.evidence


def _traffic(build: _Builder | None = None, **per_endpoint: tuple[int, int]) -> list[Span]:
    """Single-attempt calls: per endpoint ``(attempts, failed)``, failures UNAVAILABLE."""
    ports = {"healthy": HEALTHY, "failing": FAILING, "hung": HUNG}
    build = build or _Builder()
    for name, (attempts, failed) in per_endpoint.items():
        for index in range(attempts):
            code = UNAVAILABLE if index < failed else OK
            build.call([(ports[name], code, 2.0, False)], code)
    return build.spans


def _suspects(spans: list[Span]) -> dict[str, float]:
    return {suspect.endpoint: suspect.score for suspect in build_report(spans).suspects}


def test_one_slow_attempt_among_a_thousand_is_no_suspect() -> None:
    build = _Builder()
    for index in range(1000):
        build.call([(HEALTHY, OK, 2.0, False)], OK)
        build.call([(FAILING, OK, 400.0 if index == 500 else 2.0, False)], OK)
    report = build_report(build.spans)
    assert {one.endpoint: one.slow_attempts for one in report.endpoints}[FAILING] == 1
    assert report.suspects == () and "No suspects" in format_report(report)


def test_two_percent_failing_against_peers_that_never_fail_is_a_suspect() -> None:
    spans = _traffic(healthy=(2000, 0), failing=(2000, 40), hung=(2000, 0))
    assert _suspects(spans) == {FAILING: 40}


def test_one_failure_in_a_thousand_is_no_suspect() -> None:
    assert _suspects(_traffic(healthy=(1000, 0), failing=(1000, 1))) == {}


@pytest.mark.parametrize(("failed", "suspect"), [(9, False), (10, True)])
def test_failures_must_be_unlikely_for_an_endpoint_as_good_as_its_peer(
    failed: int, suspect: bool
) -> None:
    # Equal traffic, a peer that never fails: k failures all land here with chance 0.5 ** k,
    # under 0.001 from 10 on; 9 excess failures pass the minimum count, so the chance decides.
    report = build_report(_traffic(healthy=(1000, 0), failing=(1000, failed)))
    figures = {one.endpoint: one for one in report.endpoints}[FAILING]
    assert figures.failures_p_value == pytest.approx(0.5**failed)
    assert _suspects(_traffic(healthy=(1000, 0), failing=(1000, failed))) == (
        {FAILING: failed} if suspect else {}
    )


@pytest.mark.parametrize(("failed", "suspect"), [(4, False), (5, True)])
def test_failures_must_number_at_least_five_beyond_the_peer(failed: int, suspect: bool) -> None:
    # 100 attempts against a peer's 2,000 that never failed: even 4 failures are unlikely
    # (0.048 ** 4 < 0.001), but a burst of fewer than five is not a suspect.
    spans = _traffic(healthy=(2000, 0), failing=(100, failed))
    (figures,) = [one for one in build_report(spans).endpoints if one.endpoint == FAILING]
    assert figures.failures_p_value < 0.001
    assert _suspects(spans) == ({FAILING: failed} if suspect else {})


@pytest.mark.parametrize(("slow", "suspect"), [(9, False), (10, True)])
def test_slow_attempts_follow_the_same_rule(slow: int, suspect: bool) -> None:
    build = _Builder()
    for index in range(1000):
        build.call([(HEALTHY, OK, 2.0, False)], OK)
        build.call([(FAILING, OK, 400.0 if index < slow else 2.0, False)], OK)
    assert _suspects(build.spans) == ({FAILING: slow} if suspect else {})


def test_a_lone_endpoint_is_a_suspect_only_on_ejections_and_heartbeat_misses() -> None:
    build = _Builder()
    assert _suspects(_traffic(build, failing=(100, 30))) == {}
    build.endpoint_span("ejected", FAILING)
    assert _suspects(build.spans) == {FAILING: 1}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilientrpc.cli", "faults", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_cli_reads_a_file_and_prints_json(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(otlp_lines(scenario()))
    result = run_cli(str(path), "--json")
    assert result.returncode == 0, result.stderr
    check_scenario(json.loads(result.stdout))
    text = run_cli(str(path))
    assert text.returncode == 0 and "1. 127.0.0.1:5002" in text.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "10.0.0.1:4317"], "not a loopback address"),
        (["--listen", "0.0.0.0:4317"], "not a loopback address"),
        (["--listen", "example.com:4317"], "not a loopback address"),
        (["--listen", "127.0.0.1"], "expected HOST:PORT"),
        ([], "give either FILE or --listen"),
        (["x.json", "--seconds", "2"], "--seconds needs --listen"),
        (["--listen", "127.0.0.1:0", "--seconds", "0"], "outside the allowed range"),
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str], message: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stdout == ""  # nothing started


def test_cli_refuses_a_file_that_is_not_spans(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}\n')
    result = run_cli(str(path))
    assert result.returncode == 2 and "expected an OTLP object" in result.stderr


def test_loopback_addresses() -> None:
    assert loopback_address("127.0.0.1:4317") == ("127.0.0.1", 4317)
    assert loopback_address("[::1]:0") == ("::1", 0)
    assert loopback_address("localhost:4317") == ("localhost", 4317)
    with pytest.raises(ConfigError) as error:
        loopback_address("192.168.1.1:4317")
    assert error.value.path == "--listen"
    with pytest.raises(ConfigError):  # full-width digits, which int() would take
        loopback_address("127.0.0.1:\uff14\uff13\uff11\uff17")


LISTEN_ARGS = ("--listen", "127.0.0.1:0", "--seconds", "3", "--json")


@pytest.fixture
def receiver() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "resilientrpc.cli", "faults", *LISTEN_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first
        yield process, int(first.rsplit(":", 1)[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _replay(spans: list[Span], provider: TracerProvider) -> None:
    """Emit the scenario's spans through the OpenTelemetry SDK, parents before children."""
    tracer = provider.get_tracer("resilientrpc")
    calls: dict[str, trace.Span] = {}
    for span in sorted(spans, key=lambda span: span.parent_id != ""):
        context = trace.set_span_in_context(calls[span.parent_id]) if span.parent_id else None
        live = tracer.start_span(
            span.name,
            context=context,
            kind=SpanKind.CLIENT,
            attributes=dict(span.attributes),
            start_time=span.start_ns,
        )
        for event in span.events:
            live.add_event(event.name, dict(event.attributes), timestamp=event.time_ns)
        if span.error:
            live.set_status(Status(StatusCode.ERROR))
        calls[span.span_id] = live
    for span in spans:  # children end before their parents
        calls[span.span_id].end(end_time=span.end_ns)


def test_live_receiver_reports_what_the_otlp_exporter_sends(
    receiver: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = receiver
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True))
    )
    try:
        _replay(scenario(), provider)
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["spans"] == len(scenario()) and report["dropped_spans"] == 0
    check_scenario(report)


def test_public_names_of_the_faults_modules_import() -> None:
    for name in ("resilientrpc.faults_report", "resilientrpc.faults_command"):
        module = importlib.import_module(name)
        assert module.__doc__ and module.__all__
        for public in module.__all__:
            assert hasattr(module, public), (name, public)


def test_cli_usage_names_the_faults_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resilientrpc.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "faults  read spans" in result.stdout
    help_text = run_cli("--help").stdout
    assert "--listen HOST:PORT" in help_text and "``" not in help_text


def test_ipv6_endpoints_are_bracketed() -> None:
    attempt = Span(
        trace_id="t",
        span_id="a",
        parent_id="c",
        name=f"Attempt.{METHOD}",
        start_ns=T0,
        end_ns=T0 + MS,
        error=False,
        attributes={"server.address": "::1", "server.port": 5001, "rpc.grpc.status_code": OK},
    )
    (figures,) = build_report([attempt]).endpoints
    assert (figures.endpoint, figures.attempts, figures.p50_ms) == ("[::1]:5001", 1, 1.0)
