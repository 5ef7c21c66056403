"""``resilientrpc faults FILE`` reads what real OpenTelemetry writers write.

A traced ``ResilientChannel`` calls three real backends on 127.0.0.1, one failing 30 % of
its calls with UNAVAILABLE under a retry policy. One SDK ``TracerProvider`` exports every
span through several real writers at once:

- ``json-file``: opentelemetry-exporter-otlp-json-file's ``FileSpanExporter``, JSON lines
  with hex ids. It needs opentelemetry-sdk ~= 1.45.1, so ``make setup`` installs it
  (constraints/newest-only.txt) and the floors cannot: its cases skip there;
- ``protobuf-lines`` / ``protobuf-indented``: the request the OTLP/gRPC exporter sends
  (``encode_spans`` of opentelemetry-exporter-otlp-proto-common) in protobuf's JSON
  mapping (``json_format.MessageToJson``): base64 ids, enums by name, one compact document
  per line or indented documents one after another;
- an in-memory exporter, from which the expected figures are counted.

Each file, through the CLI in a subprocess, must give the report those spans imply.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilientrpc import ResilientChannel
from resilientrpc.faults_report import Span, parse_spans
from resilientrpc.testing import Faults, echo_pb2, echo_pb2_grpc, start_backends
from tests.test_faults_report import run_cli

CALLS = 300
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "resilientrpc.echo.v1.Echo"}],
            "timeout": "5s",
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.001s",
                "maxBackoff": "0.01s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
#: Small batches, so that every writer writes many documents (lines) into its file.
BATCH = 64


class ProtobufJsonExporter(SpanExporter):
    """Writes each batch as the OTLP/gRPC exporter encodes it, in protobuf's JSON mapping."""

    def __init__(self, stream: IO[str], *, indent: int | None) -> None:
        self._stream = stream
        self._indent = indent

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        request = encode_spans(spans)
        self._stream.write(json_format.MessageToJson(request, indent=self._indent) + "\n")
        self._stream.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._stream.close()


def _json_file_module() -> Any:
    return pytest.importorskip(
        "opentelemetry.exporter.otlp.json.file",
        reason="opentelemetry-exporter-otlp-json-file needs opentelemetry-sdk 1.45 "
        "(installed by `make setup`, not at the floors)",
    )


def _json_file_exporter(path: Path) -> SpanExporter:
    exporter: SpanExporter = _json_file_module().FileSpanExporter(path)
    return exporter


def _protobuf_exporter(indent: int | None) -> Callable[[Path], SpanExporter]:
    def make(path: Path) -> SpanExporter:
        return ProtobufJsonExporter(path.open("a", encoding="utf-8"), indent=indent)

    return make


WRITERS: dict[str, Callable[[Path], SpanExporter]] = {
    "json-file": _json_file_exporter,
    "protobuf-lines": _protobuf_exporter(None),
    "protobuf-indented": _protobuf_exporter(2),
}


class Run:
    """One traced run: the files each writer wrote, the spans, and the failing backend."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, Path] = {}
        self.skipped: dict[str, str] = {}
        self.spans: tuple[ReadableSpan, ...] = ()
        self.flaky = ""
        self.flaky_calls_served = 0

    def file(self, writer: str) -> Path:
        if writer in self.skipped:
            pytest.skip(self.skipped[writer])
        return self.files[writer]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    result = Run(tmp_path_factory.mktemp("spans"))
    provider = TracerProvider()
    for writer, make in WRITERS.items():
        path = result.directory / f"{writer}.json"
        try:
            exporter = make(path)
        except pytest.skip.Exception as skip:
            result.skipped[writer] = str(skip)
            continue
        result.files[writer] = path
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=BATCH))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    failing = Faults(error_rate=0.3, error_code=grpc.StatusCode.UNAVAILABLE)
    try:
        with start_backends(3, names=["alpha", "beta", "flaky"], seed=10) as backends:
            backends[2].configure(error_rate=failing.error_rate, error_code=failing.error_code)
            with ResilientChannel(
                backends.addresses, config=CONFIG, tracer_provider=provider
            ) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                for number in range(CALLS):  # bounded in count; each call has a 5 s deadline
                    stub.Echo(echo_pb2.EchoRequest(message=f"call {number}"))
            result.flaky = backends[2].address
            result.flaky_calls_served = backends[2].calls
    finally:
        provider.shutdown()  # flushes every batch and closes the files
    result.spans = memory.get_finished_spans()
    return result


def _attempts(spans: Sequence[ReadableSpan], address: str) -> list[ReadableSpan]:
    host, port = address.rsplit(":", 1)
    return [
        span
        for span in spans
        if span.name.startswith("Attempt.")
        and span.attributes is not None
        and span.attributes.get("server.address") == host
        and span.attributes.get("server.port") == int(port)
    ]


def _code(span: ReadableSpan) -> object:
    return (span.attributes or {}).get("rpc.grpc.status_code")


def test_the_run_failed_over_and_every_writer_wrote_many_documents(run: Run) -> None:
    attempts = _attempts(run.spans, run.flaky)
    failed = [span for span in attempts if _code(span) != 0]
    assert len(attempts) == run.flaky_calls_served  # the backend saw every attempt traced
    assert 30 <= len(failed) <= 0.5 * len(attempts), (len(failed), len(attempts))
    for writer, path in run.files.items():
        text = path.read_text()
        assert len(text.splitlines()) > 1 and text.count('"resourceSpans"') > 1, writer


@pytest.mark.parametrize("writer", list(WRITERS))
def test_faults_reads_the_file_a_real_writer_wrote(run: Run, writer: str) -> None:
    result = run_cli(str(run.file(writer)), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    attempts = _attempts(run.spans, run.flaky)
    codes = [_code(span) for span in attempts]
    failures = sum(code != 0 for code in codes)
    assert set(codes) == {0, UNAVAILABLE}
    calls = [span for span in run.spans if span.name == "resilientrpc.echo.v1.Echo/Echo"]
    assert len(calls) == CALLS
    assert (report["spans"], report["calls"]) == (len(run.spans), CALLS)
    assert report["attempts"] == CALLS + failures  # every failure was retried once, elsewhere

    suspect = report["suspects"][0]
    assert suspect["endpoint"] == run.flaky
    figures = {one["endpoint"]: one for one in report["endpoints"]}
    flaky = figures[run.flaky]
    assert (flaky["attempts"], flaky["failures"]) == (len(attempts), failures)
    assert flaky["failures_by_code"] == {"UNAVAILABLE": failures}
    assert flaky["rescued_by_retry"] == failures and flaky["rescued_by_hedge"] == 0
    assert all(one["failures"] == 0 for name, one in figures.items() if name != run.flaky)
    assert suspect["evidence"].startswith(f"{round(100 * failures / len(attempts))}% of ")


def _key(span: Span) -> tuple[Any, ...]:
    return (span.trace_id, span.span_id, span.parent_id, span.name, span.start_ns, span.end_ns)


def test_every_writer_gives_the_same_spans_with_hex_ids(run: Run) -> None:
    expected = sorted(
        (
            f"{span.context.trace_id:032x}",
            f"{span.context.span_id:016x}",
            f"{span.parent.span_id:016x}" if span.parent else "",
            span.name,
            span.start_time,
            span.end_time,
        )
        for span in run.spans
        if span.context is not None
    )
    for writer in run.files:
        spans = parse_spans(run.file(writer).read_bytes())
        assert sorted(_key(span) for span in spans) == expected, writer


def test_parents_are_found_across_writers_of_hex_and_base64_ids(run: Run) -> None:
    # The call spans in protobuf's JSON (base64 ids), their attempts as the json-file
    # exporter writes them (hex ids), in one file: every attempt finds its call.
    module = _json_file_module()
    calls = [span for span in run.spans if span.parent is None]
    attempts = [span for span in run.spans if span.name.startswith("Attempt.")]
    stream = io.StringIO()
    module.FileSpanExporter(stream=stream).export(attempts)
    text = json_format.MessageToJson(encode_spans(calls)) + "\n" + stream.getvalue()
    spans = parse_spans(text)
    call_ids = {span.span_id for span in spans if not span.name.startswith("Attempt.")}
    parents = [span.parent_id for span in spans if span.name.startswith("Attempt.")]
    assert len(parents) == len(attempts) and set(parents) <= call_ids


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (gzip.compress(b'{"resourceSpans": []}\n'), "gzip-compressed, not JSON"),
        (b"\x28\xb5\x2f\xfd\x00\x00", "zstd-compressed, not JSON"),
        (b"\n\x8f\x01\n\x0c\xff\xfe", "not UTF-8 text"),
        (b'{"resourceSpans": []}\n{"resourceSpans": [\n', "line 2: not JSON"),
        (b'{"resourceSpans": []}\n{"hello": 1}\n', "line 2: expected an OTLP object"),
    ],
    ids=["gzip", "zstd", "binary", "truncated", "not-otlp"],
)
def test_a_file_that_is_not_spans_gets_one_clear_error(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = run_cli(str(path))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
