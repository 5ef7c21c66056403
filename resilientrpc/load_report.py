"""Server-sent load: the ORCA ``OrcaLoadReport`` of the ``endpoint-load-metrics-bin`` trailer.

Backends that already send ORCA per-call reports are understood as they are; the message
is defined in ``protos/resilientrpc/proto/load_report.proto`` with the same field numbers.

grpcio's C core consumes the ``endpoint-load-metrics-bin`` trailer itself (it parses ORCA
reports for its own balancers) and does not hand it to Python code, so a Python client
cannot see it. Servers therefore also send the same bytes under
:data:`LOAD_REPORT_ALIAS_KEY`; both keys are read, whichever arrives.

A report comes from a server, so every figure is checked where it enters: a figure that
is not finite, or negative, counts as not reported (0); one above
:data:`MAX_LOAD_FIGURE` is clamped to it. One backend's odd report can therefore never
push a weight to infinity or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from resilientrpc.proto import load_report_pb2

__all__ = [
    "LOAD_REPORT_ALIAS_KEY",
    "LOAD_REPORT_KEY",
    "MAX_LOAD_FIGURE",
    "LoadReport",
    "encode_load_report",
    "parse_load_report",
]

#: The trailing metadata key ORCA per-call load reports travel in.
LOAD_REPORT_KEY = "endpoint-load-metrics-bin"
#: The same report under a key grpcio passes through to the application.
LOAD_REPORT_ALIAS_KEY = "resilientrpc-load-metrics-bin"
_KEYS = (LOAD_REPORT_KEY, LOAD_REPORT_ALIAS_KEY)
#: The largest figure (utilization, queries or errors per second) taken from a report.
MAX_LOAD_FIGURE = 1e9


def _figure(value: float) -> float:
    """A reported figure made safe: not finite or negative -> 0 (unreported), huge -> clamped."""
    if not math.isfinite(value) or value <= 0.0:
        return 0.0
    return min(value, MAX_LOAD_FIGURE)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """The load figures weighting uses, from one report.

    >>> LoadReport(cpu_utilization=0.5, rps_fractional=200.0).utilization
    0.5
    """

    cpu_utilization: float = 0.0
    mem_utilization: float = 0.0
    application_utilization: float = 0.0
    rps_fractional: float = 0.0
    eps: float = 0.0

    def to_proto(self) -> load_report_pb2.OrcaLoadReport:
        """The report as the ORCA-compatible message."""
        return load_report_pb2.OrcaLoadReport(
            cpu_utilization=self.cpu_utilization,
            mem_utilization=self.mem_utilization,
            application_utilization=self.application_utilization,
            rps_fractional=self.rps_fractional,
            eps=self.eps,
        )

    def serialize(self) -> bytes:
        """The report's wire bytes, as sent in the trailer."""
        return bytes(self.to_proto().SerializeToString())

    @property
    def utilization(self) -> float:
        """Application utilization when the server sets it, else CPU utilization (gRPC A58)."""
        return (
            self.application_utilization
            if self.application_utilization > 0
            else self.cpu_utilization
        )


def parse_load_report(metadata: Sequence[tuple[str, str | bytes]] | None) -> LoadReport | None:
    """The load report in trailing ``metadata``, or None when there is none or it is garbled."""
    if not metadata:
        return None
    for key, value in metadata:
        if key in _KEYS and isinstance(value, bytes):
            message = load_report_pb2.OrcaLoadReport()
            try:
                message.ParseFromString(value)
            except DecodeError:
                return None
            return LoadReport(
                cpu_utilization=_figure(message.cpu_utilization),
                mem_utilization=_figure(message.mem_utilization),
                application_utilization=_figure(message.application_utilization),
                rps_fractional=_figure(message.rps_fractional),
                eps=_figure(message.eps),
            )
    return None


def encode_load_report(report: LoadReport) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The trailing-metadata pairs a server sends to report ``report`` (ORCA key and alias)."""
    data = report.serialize()
    return (LOAD_REPORT_KEY, data), (LOAD_REPORT_ALIAS_KEY, data)
