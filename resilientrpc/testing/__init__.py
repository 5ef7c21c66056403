"""Fault-injecting gRPC backends for tests, the demo, the benchmark and users' own checks.

Every backend serves the ``resilientrpc.echo.v1.Echo`` service (all four call shapes,
each reply naming the backend), the ``resilientrpc.faults.v1.Faults`` service that
reconfigures it at run time, and ``grpc.health.v1.Health``, on ``127.0.0.1``:

- :class:`Backend` runs in this process (``stop()`` is an abrupt crash);
- :class:`BackendProcess` runs in a child process, so ``kill()`` (SIGKILL) and
  ``pause()`` (SIGSTOP) are real;
- either runs instrumented with ``otlp_endpoint="127.0.0.1:PORT"``: a server span per
  call, the child of the client's attempt, exported over OTLP/gRPC
  (:mod:`resilientrpc.testing.instrumented`);
- :func:`~resilientrpc.testing.fault_run.run_fault_scenario` runs three of them, one
  failing and one hung, behind a traced channel: the run the fault report is shown on;
- :class:`DelayProxy` puts a slow network in front of any of them: each new connection
  held before it is forwarded, every chunk of bytes delayed;
- :class:`Faults` / :class:`LoadReport` say what they do wrong: latency and jitter, an
  error rate and code, hanging, the health status, and an ORCA load report sent as the
  ``endpoint-load-metrics-bin`` trailer. grpcio's core swallows that key on the client,
  so the same bytes also travel as ``resilientrpc-load-metrics-bin``
  (:data:`LOAD_REPORT_ALIAS_METADATA_KEY`), which Python clients can read. For retries:
  the next N calls failing, stalls, streams failing after N replies, and retry hints
  (``grpc-retry-pushback-ms``, ``google.rpc.RetryInfo``) on injected failures;
  ``previous_attempts()`` tells what each call's :data:`PREVIOUS_ATTEMPTS_HEADER` said.

>>> from resilientrpc.testing import Backend, Faults, echo_pb2, echo_pb2_grpc
>>> with Backend("b1", faults=Faults(latency=0.01)) as backend:  # doctest: +SKIP
...     with grpc.insecure_channel(backend.address) as channel:
...         reply = echo_pb2_grpc.EchoStub(channel).Echo(echo_pb2.EchoRequest(message="hi"))
...     assert reply.backend == "b1"
"""

from __future__ import annotations

from resilientrpc.proto import (
    echo_pb2,
    echo_pb2_grpc,
    faults_pb2,
    faults_pb2_grpc,
    load_report_pb2,
)
from resilientrpc.testing.backend import (
    DEFAULT_MAX_WORKERS,
    HOST,
    Backend,
    Backends,
    start_backends,
)
from resilientrpc.testing.faults import (
    DEFAULT_ERROR_CODE,
    DEFAULT_ERROR_RATE,
    DEFAULT_FAIL_AFTER_MESSAGES,
    DEFAULT_FAIL_NEXT,
    DEFAULT_HANG,
    DEFAULT_HEALTH,
    DEFAULT_LATENCY,
    DEFAULT_LATENCY_JITTER,
    DEFAULT_PUSHBACK_MS,
    DEFAULT_RETRY_INFO_SECONDS,
    DEFAULT_STALL_RATE,
    DEFAULT_STALL_SECONDS,
    HEALTH_STATUSES,
    LOAD_REPORT_ALIAS_METADATA_KEY,
    LOAD_REPORT_METADATA_KEY,
    Faults,
    LoadReport,
)
from resilientrpc.testing.process import BackendProcess, BackendStartError
from resilientrpc.testing.proxy import DelayProxy
from resilientrpc.testing.servicer import (
    ECHO_METADATA_PREFIX,
    ECHO_SERVICE_NAME,
    PREVIOUS_ATTEMPTS_HEADER,
    PUSHBACK_HEADER,
)

__all__ = [
    "DEFAULT_ERROR_CODE",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_FAIL_AFTER_MESSAGES",
    "DEFAULT_FAIL_NEXT",
    "DEFAULT_HANG",
    "DEFAULT_HEALTH",
    "DEFAULT_LATENCY",
    "DEFAULT_LATENCY_JITTER",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_PUSHBACK_MS",
    "DEFAULT_RETRY_INFO_SECONDS",
    "DEFAULT_STALL_RATE",
    "DEFAULT_STALL_SECONDS",
    "ECHO_METADATA_PREFIX",
    "ECHO_SERVICE_NAME",
    "HEALTH_STATUSES",
    "HOST",
    "LOAD_REPORT_ALIAS_METADATA_KEY",
    "LOAD_REPORT_METADATA_KEY",
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_HEADER",
    "Backend",
    "BackendProcess",
    "BackendStartError",
    "Backends",
    "DelayProxy",
    "Faults",
    "LoadReport",
    "echo_pb2",
    "echo_pb2_grpc",
    "faults_pb2",
    "faults_pb2_grpc",
    "load_report_pb2",
    "start_backends",
]
