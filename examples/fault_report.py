"""Run real faults, trace them, and print the report ``resilientrpc faults`` gives on them.

Three Echo backends start as child processes on 127.0.0.1: one healthy, one failing 30 %
of its calls with UNAVAILABLE, one frozen with SIGSTOP while the calls run. A traced
ResilientChannel (retries, a per-attempt timeout, heartbeats) sends the calls; its spans
go over the real OTLP/gRPC exporter to the receiver of ``resilientrpc faults --listen``,
and the report of what it received is printed:

    .venv/bin/python examples/fault_report.py
    .venv/bin/python examples/fault_report.py --calls 1000 --spans traces.jsonl
    resilientrpc faults traces.jsonl             # the same report, from the file

``--spans PATH`` writes the spans received as OTLP JSON lines (one export request per
line, hex ids), which ``resilientrpc faults PATH`` reads. Needs the ``resilientrpc[otlp]``
extra. Every child process is resumed and stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from resilientrpc._argtypes import add_bounded
from resilientrpc.faults_command import SpanReceiver
from resilientrpc.faults_report import build_report, format_report
from resilientrpc.testing.fault_run import DEFAULT_CALLS, MAX_CALLS, FaultRun, run_fault_scenario

_IDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(document: dict[str, Any]) -> dict[str, Any]:
    """An export request in protobuf's JSON mapping (base64 ids) with OTLP JSON's hex ids."""
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for item in (span, *span.get("links", [])):
                    for key in _IDS:
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return document


class RecordingReceiver(SpanReceiver):
    """The ``resilientrpc faults --listen`` receiver, also keeping each export request."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        super().__init__("127.0.0.1", 0)

    def add(self, document: dict[str, Any]) -> None:
        super().add(document)
        self.documents.append(document)  # list.append is atomic; order is arrival order


def _summary(run: FaultRun) -> str:
    where = run.addresses
    failed = ", ".join(f"{count} {code}" for code, count in sorted(run.failed.items()))
    return (
        f"{run.calls:,} calls: healthy {where['healthy']}, flaky {where['flaky']} "
        f"(30% UNAVAILABLE), hung {where['hung']} (SIGSTOP); "
        f"{sum(run.replies.values()):,} succeeded" + (f", {failed}" if failed else "")
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bounded(
        parser,
        "--calls",
        int,
        1,
        MAX_CALLS,
        default=DEFAULT_CALLS,
        metavar="N",
        help=f"calls to send (default {DEFAULT_CALLS})",
    )
    parser.add_argument("--spans", type=Path, metavar="PATH", help="write the spans as OTLP JSON")
    args = parser.parse_args()
    spans = args.spans
    if spans is not None and (spans.is_dir() or not spans.parent.is_dir()):
        parser.error(f"argument --spans: cannot write {str(spans)!r} (a directory, or in none)")
    signal.signal(signal.SIGTERM, _interrupt)
    receiver = RecordingReceiver()
    try:
        run = run_fault_scenario(receiver.address, args.calls)
    except KeyboardInterrupt:
        print("interrupted; every backend stopped", file=sys.stderr)
        return 130
    finally:
        receiver.stop()
    print(_summary(run))
    print()
    print(format_report(build_report(receiver.spans())))
    if spans is not None:
        lines = (json.dumps(_hex_ids(document)) + "\n" for document in receiver.documents)
        try:
            spans.write_text("".join(lines))
        except OSError as error:  # the report is printed already
            print(f"--spans: not written: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
