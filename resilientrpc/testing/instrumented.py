"""Instrumented testing backends: a server span per call, exported over OTLP/gRPC.

A backend started with ``otlp_endpoint="127.0.0.1:PORT"`` (``--otlp-endpoint``) installs
opentelemetry-instrumentation-grpc's *server* interceptor with a TracerProvider of its own
(``service.name`` :data:`SERVICE_NAME`, a batch span processor, the OTLP/gRPC exporter,
insecure) and flushes and shuts it down when it stops. The interceptor extracts the
caller's context from the request metadata with the global propagator (W3C
``traceparent`` by default), so each server span is the child of the client span whose
context the attempt carried.

How the instrumentation installs on a server, as probed on 0.49b0 and 0.66b2: both
offer ``server_interceptor(tracer_provider=..., filter_=None)``, a plain
``grpc.ServerInterceptor`` to pass in ``grpc.server(..., interceptors=[...])``;
``GrpcInstrumentorServer().instrument()`` instead wraps ``grpc.server`` itself for the
whole process, which would instrument every server a test starts. So the backend passes
the interceptor to its own server only.

This module imports the SDK, the exporter and the instrumentation only when a backend
asks for them: the library does not need them (they come with ``resilientrpc[dev]``;
``pip install 'resilientrpc[otlp]' opentelemetry-instrumentation-grpc`` elsewhere).
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from resilientrpc.errors import ConfigError
from resilientrpc.faults_command import loopback_address

__all__ = [
    "SCHEDULE_DELAY_MS",
    "SERVICE_NAME",
    "SHUTDOWN_TIMEOUT",
    "ServerTracing",
    "otlp_endpoint_value",
]

SERVICE_NAME = "resilientrpc-testing-backend"
"""The ``service.name`` resource attribute of a backend's spans."""

SCHEDULE_DELAY_MS = 200
"""How long the batch span processor waits before it exports: spans arrive promptly."""

SHUTDOWN_TIMEOUT = 3.0
"""Seconds a stopping backend gives its spans to reach the receiver (below the 5 s a
:class:`~resilientrpc.testing.BackendProcess` child has to exit after SIGTERM)."""

_MISSING = (
    "an instrumented backend needs opentelemetry-instrumentation-grpc and the "
    "OpenTelemetry SDK and OTLP exporter: "
    "pip install 'resilientrpc[otlp]' opentelemetry-instrumentation-grpc"
)


def otlp_endpoint_value(value: object, field: str = "otlp_endpoint") -> str:
    """``value`` if it is a loopback ``host:port`` string, else one :class:`ConfigError`."""
    if not isinstance(value, str):
        raise ConfigError(field, f"expected a loopback HOST:PORT string, got {value!r}")
    try:
        _, port = loopback_address(value)
    except ConfigError as error:
        raise ConfigError(field, error.message) from None
    if port == 0:  # a receiver listens on a chosen port; an exporter cannot send to port 0
        raise ConfigError(field, f"expected a port in [1, 65535], got {value!r}")
    return value


class ServerTracing:
    """The TracerProvider and server interceptor of one instrumented backend.

    >>> tracing = ServerTracing("127.0.0.1:4317")  # doctest: +SKIP
    >>> server = grpc.server(executor, interceptors=[tracing.interceptor])  # doctest: +SKIP
    >>> tracing.shutdown()  # after the server stopped  # doctest: +SKIP
    """

    def __init__(self, endpoint: str, *, field: str = "otlp_endpoint") -> None:
        endpoint = otlp_endpoint_value(endpoint, field)
        # Imported here: only an instrumented backend needs them. noqa PLC0415: optional.
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )
            from opentelemetry.instrumentation.grpc import server_interceptor  # noqa: PLC0415
            from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
            from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
            from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        except ImportError as error:
            raise ConfigError(field, f"{_MISSING} ({error})") from None
        # shutdown_on_exit=False: shutdown() below is bounded in time; the SDK's own exit
        # hook is not, and would hold a child that SIGTERM told to stop.
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME}), shutdown_on_exit=False
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=True),
                schedule_delay_millis=SCHEDULE_DELAY_MS,
            )
        )
        self.endpoint = endpoint
        self.interceptor: grpc.ServerInterceptor = server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self._provider
        )

    @property
    def provider(self) -> Any:
        """The backend's own SDK ``TracerProvider``."""
        return self._provider

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> bool:
        """Export what is left and shut the provider down; False if it took over ``timeout``.

        The exporter's retries of an unreachable receiver are not bounded by the SDK, so
        the shutdown runs in a daemon thread that is left behind if it overruns.
        """
        stopper = threading.Thread(
            target=self._provider.shutdown, name="backend-tracing-shutdown", daemon=True
        )
        stopper.start()
        stopper.join(timeout)
        return not stopper.is_alive()
