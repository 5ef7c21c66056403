"""Server-sent load: the ORCA ``OrcaLoadReport`` carried in the ``endpoint-load-metrics-bin`` trailer.

Backends that already send ORCA per-call reports are understood as they are; the message
is defined in ``protos/resilientrpc/proto/load_report.proto`` with the same field numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from resilientrpc.proto import load_report_pb2

__all__ = ["LOAD_REPORT_KEY", "LoadReport", "encode_load_report", "parse_load_report"]

#: The trailing metadata key ORCA per-call load reports travel in.
LOAD_REPORT_KEY = "endpoint-load-metrics-bin"


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
        if key == LOAD_REPORT_KEY and isinstance(value, bytes):
            message = load_report_pb2.OrcaLoadReport()
            try:
                message.ParseFromString(value)
            except DecodeError:
                return None
            return LoadReport(
                cpu_utilization=message.cpu_utilization,
                mem_utilization=message.mem_utilization,
                application_utilization=message.application_utilization,
                rps_fractional=message.rps_fractional,
                eps=message.eps,
            )
    return None


def encode_load_report(report: LoadReport) -> tuple[str, bytes]:
    """The trailing-metadata pair a server sends to report ``report``."""
    message = load_report_pb2.OrcaLoadReport(
        cpu_utilization=report.cpu_utilization,
        mem_utilization=report.mem_utilization,
        application_utilization=report.application_utilization,
        rps_fractional=report.rps_fractional,
        eps=report.eps,
    )
    return LOAD_REPORT_KEY, message.SerializeToString()
