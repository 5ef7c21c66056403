"""A real faulty run for the fault report: one backend failing, one hung, one healthy.

Three Echo backends run as child processes behind one traced ``ResilientChannel``:
``healthy``, ``flaky`` (30 % of its calls fail with UNAVAILABLE) and ``hung`` (frozen with
SIGSTOP while traffic runs: its heartbeats stop, its attempts time out). The channel
retries UNAVAILABLE and timed-out attempts (``maxAttempts`` 3, a 150 ms
``perAttemptRecvTimeout``) and checks health with a 0.2 s + 0.2 s heartbeat. Its spans go
through the SDK's batch processor and the real OTLP/gRPC exporter to a loopback receiver
(``resilientrpc faults --listen``, or :class:`~resilientrpc.faults_command.SpanReceiver`).

:func:`run_fault_scenario` is this run, shared by ``examples/fault_report.py`` (whose
output the README shows) and ``tests/test_faults_e2e.py``. It needs the
``resilientrpc[otlp]`` extra (the OpenTelemetry SDK and OTLP exporter). Every child is
resumed and stopped when it returns, however it returns (Ctrl-C included).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc

from resilientrpc.channel import ResilientChannel
from resilientrpc.errors import ConfigError
from resilientrpc.proto import echo_pb2, echo_pb2_grpc
from resilientrpc.testing.faults import Faults
from resilientrpc.testing.instrumented import otlp_endpoint_value
from resilientrpc.testing.process import BackendProcess

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

__all__ = [
    "DEFAULT_CALLS",
    "FAULT_RUN_CONFIG",
    "FAULT_RUN_SECONDS",
    "MAX_CALLS",
    "SERVICE_NAME",
    "FaultRun",
    "fault_fleet",
    "run_fault_scenario",
]

#: Calls the run sends unless told otherwise, and the most it sends.
DEFAULT_CALLS = 300
MAX_CALLS = 10_000
#: The run stops sending after this many seconds, however many calls are left.
FAULT_RUN_SECONDS = 300.0
#: The ``service.name`` of the run's spans.
SERVICE_NAME = "resilientrpc-fault-run"
_ECHO = "resilientrpc.echo.v1.Echo"
_READY_TIMEOUT = 10.0
_FLUSH_MILLIS = 10_000

#: The channel's service config: round robin, heartbeats, retries with a per-attempt timeout.
FAULT_RUN_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": "", "interval": "0.2s", "timeout": "0.2s"},
    "methodConfig": [
        {
            "name": [{"service": _ECHO}],
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


@dataclasses.dataclass(frozen=True)
class FaultRun:
    """What the run did, as the client and the backends saw it.

    ``addresses`` maps ``healthy``, ``flaky`` and ``hung`` to ``127.0.0.1:PORT``;
    ``replies`` counts successful calls by the backend that answered; ``failed`` counts
    failed calls by status code name; ``flaky_executions`` is how many Echo calls the
    flaky backend itself counted during the traffic; ``flushed`` whether every span
    reached the exporter's endpoint in time.
    """

    addresses: dict[str, str]
    replies: Counter[str]
    failed: Counter[str]
    flaky_executions: int
    flushed: bool

    @property
    def calls(self) -> int:
        """Calls sent (fewer than asked only if the time limit ran out)."""
        return sum(self.replies.values()) + sum(self.failed.values())


@contextmanager
def fault_fleet() -> Iterator[dict[str, BackendProcess]]:
    """Start the three backends; on exit resume the paused one and stop every child."""
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
            backend.stop()  # SIGTERM, then SIGCONT if it was paused; reaped either way


def _wait_until_all_available(channel: ResilientChannel) -> None:
    """Wait (at most ``_READY_TIMEOUT``) until every endpoint takes calls.

    The channel is ready as soon as one endpoint is; a backend frozen before its
    connection was up would never be tried, and so never found hung.
    """
    deadline = time.monotonic() + _READY_TIMEOUT
    while not all(endpoint.available for endpoint in channel.endpoints()):
        if time.monotonic() >= deadline:
            states = {e.address: e.state for e in channel.endpoints()}
            raise RuntimeError(f"the backends did not all become available: {states}")
        time.sleep(0.01)


def run_fault_scenario(
    otlp_endpoint: str,
    calls: int = DEFAULT_CALLS,
    *,
    span_processors: Sequence[SpanProcessor] = (),
    seconds: float = FAULT_RUN_SECONDS,
) -> FaultRun:
    """Run ``calls`` Echo calls through the faulty fleet, spans exported to ``otlp_endpoint``.

    ``span_processors`` are added to the tracer provider before the OTLP batch processor
    (an in-memory copy, say). Every span is flushed to ``otlp_endpoint`` before this
    returns. ConfigError for a non-loopback endpoint or ``calls`` outside 1..10,000.
    """
    endpoint = otlp_endpoint_value(otlp_endpoint)
    if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= MAX_CALLS:
        raise ConfigError("calls", f"expected an integer in [1, {MAX_CALLS:,}], got {calls!r}")
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - optional extra
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        raise ConfigError(
            "otlp_endpoint", "needs the OTLP exporter: pip install 'resilientrpc[otlp]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    for processor in span_processors:
        provider.add_span_processor(processor)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    replies: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    try:
        with fault_fleet() as fleet:
            addresses = {name: backend.address for name, backend in fleet.items()}
            with ResilientChannel(
                list(addresses.values()), config=FAULT_RUN_CONFIG, tracer_provider=provider
            ) as channel:
                _wait_until_all_available(channel)
                stub = echo_pb2_grpc.EchoStub(channel)
                flaky_before = fleet["flaky"].calls
                fleet["hung"].pause()
                deadline = time.monotonic() + seconds
                for number in range(calls):
                    if time.monotonic() >= deadline:
                        break
                    try:
                        reply = stub.Echo(echo_pb2.EchoRequest(message=str(number)))
                    except grpc.RpcError as error:
                        failed[error.code().name] += 1
                    else:
                        replies[reply.backend] += 1
                flaky_executions = fleet["flaky"].calls - flaky_before
        flushed = provider.force_flush(timeout_millis=_FLUSH_MILLIS)
    finally:
        provider.shutdown()
    return FaultRun(addresses, replies, failed, flaky_executions, flushed)
