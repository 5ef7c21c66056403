"""``resilientrpc faults``: read spans from a file or a live OTLP/gRPC receiver, print the report.

``resilientrpc faults FILE`` reads an OTLP JSON file (JSON lines as the OpenTelemetry
file exporters write them, or one document) or the JSON of Jaeger's query API;
``--listen 127.0.0.1:4317`` instead runs a small OTLP/gRPC trace receiver (the collector
``TraceService`` of opentelemetry-proto, from the ``resilientrpc[otlp]`` extra) on a
loopback address, prints ``listening on HOST:PORT`` as its first line, collects spans
until Ctrl-C or ``--seconds`` and then prints the report. The analysis is
:mod:`resilientrpc.faults_report`; ``--json`` prints it as JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from resilientrpc._argtypes import add_bounded
from resilientrpc.errors import ConfigError
from resilientrpc.faults_report import (
    Span,
    build_report,
    format_report,
    parse_otlp,
    parse_spans,
    report_to_json,
)

__all__ = ["MAX_SPANS", "SpanReceiver", "build_parser", "loopback_address", "main"]

#: The receiver keeps at most this many spans and counts the rest as dropped.
MAX_SPANS = 1_000_000
_LOOPBACK_NAMES = ("localhost",)


def loopback_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) with a loopback host, or :class:`ConfigError`."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    # isascii: str.isdigit() and int() also take other scripts' digits (full-width ones).
    if (
        not sep
        or not host
        or not (port_text.isascii() and port_text.isdigit())
        or int(port_text) > 65535
    ):
        raise ConfigError("--listen", f"expected HOST:PORT, got {text!r}")
    try:
        loopback = host in _LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError("--listen", f"{host!r} is not a loopback address (127.0.0.1, ::1)")
    return host, int(port_text)


class SpanReceiver:
    """An OTLP/gRPC trace receiver on a loopback address, keeping what it is sent as spans."""

    def __init__(self, host: str, port: int) -> None:
        try:
            from opentelemetry.proto.collector.trace.v1 import (  # noqa: PLC0415 - optional extra
                trace_service_pb2,
                trace_service_pb2_grpc,
            )
        except ImportError:
            raise ConfigError(
                "--listen", "needs opentelemetry-proto: pip install 'resilientrpc[otlp]'"
            ) from None
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.dropped = 0
        receiver = self
        response = trace_service_pb2.ExportTraceServiceResponse

        class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                receiver.add(json_format.MessageToDict(request))
                return response()

        self._workers = futures.ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._workers)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(), self._server
        )
        bracketed = f"[{host}]" if ":" in host else host
        self.port = self._server.add_insecure_port(f"{bracketed}:{port}")
        self.address = f"{bracketed}:{self.port}"
        self._server.start()

    def add(self, document: dict[str, Any]) -> None:
        """Keep the spans of one export request (in its JSON mapping), up to :data:`MAX_SPANS`."""
        spans = parse_otlp([document])
        with self._lock:
            room = max(0, MAX_SPANS - len(self._spans))
            self._spans.extend(spans[:room])
            self.dropped += len(spans) - min(room, len(spans))

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def stop(self) -> None:
        """Stop receiving and end every thread it started."""
        self._server.stop(grace=1.0).wait()
        self._workers.shutdown(wait=True)  # idle workers would outlive the server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilientrpc faults",
        description="Find the faulty backend in resilientrpc's spans: per endpoint the "
        "attempts, failures by status code, latency, timeouts, ejections, heartbeat misses "
        "and rescued calls, then the suspects ranked by severity with the evidence.",
    )
    parser.add_argument(
        "file", nargs="?", help="an OTLP JSON file (file exporter) or Jaeger query API JSON"
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="receive spans over OTLP/gRPC on this loopback address instead of reading a file "
        "(port 0: any free port)",
    )
    add_bounded(
        parser,
        "--seconds",
        float,
        0.0,
        86400.0,
        low_open=True,
        unit="seconds",
        help="with --listen: stop receiving after this long (default: at Ctrl-C)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _receive(host: str, port: int, seconds: float | None) -> tuple[list[Span], int]:
    receiver = SpanReceiver(host, port)
    print(f"listening on {receiver.address}", flush=True)
    try:
        threading.Event().wait(seconds)  # None: until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return receiver.spans(), receiver.dropped


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.file is None) == (args.listen is None):
        parser.error("give either FILE or --listen HOST:PORT")
    if args.seconds is not None and args.listen is None:
        parser.error("--seconds needs --listen")
    dropped = 0
    try:
        if args.listen is not None:
            host, port = loopback_address(args.listen)
            spans, dropped = _receive(host, port, args.seconds)
        else:
            spans = parse_spans(Path(args.file).read_bytes())
    except ConfigError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"{args.file}: {error.strerror}")
    report = build_report(spans)
    if args.json:
        print(json.dumps({**report_to_json(report), "dropped_spans": dropped}, indent=2))
    else:
        print(format_report(report))
        if dropped:
            print(f"({dropped:,} spans dropped beyond {MAX_SPANS:,})", file=sys.stderr)
    return 0
