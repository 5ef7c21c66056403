"""The request handling of a test backend: Echo with injected faults, Faults, Health.

This module owns what happens inside one backend's calls, independent of how the
server around it runs (in process or in a child process):

- :class:`BackendState`: the backend's current :class:`~resilientrpc.testing.Faults`,
  its call counter and random source, and the per-call release events that let a
  stopping backend free every sleeping or hung handler thread.
- :class:`EchoServicer`: the four Echo call shapes with latency, hang, error and load
  report injection (the ORCA ``endpoint-load-metrics-bin`` trailer, plus the same bytes
  under ``resilientrpc-load-metrics-bin`` because grpcio clients never see the ORCA key),
  and ``x-echo-*`` metadata echoed back.
- :class:`FaultsServicer`: the ``Configure`` RPC.
- :func:`add_backend_services`: registers those and a ``grpc.health.v1`` servicer (a
  :class:`~resilientrpc.health.HeartbeatHealthServicer` in ``Backend``, whose Watch
  streams re-send the status every second).

Lock order: ``BackendState._configure_lock`` before the health servicer's own lock;
``BackendState._lock`` is a leaf (nothing is called while holding it).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from resilientrpc.errors import ConfigError
from resilientrpc.health import HeartbeatHealthServicer
from resilientrpc.proto import echo_pb2, echo_pb2_grpc, faults_pb2, faults_pb2_grpc
from resilientrpc.testing.faults import (
    LOAD_REPORT_ALIAS_METADATA_KEY,
    LOAD_REPORT_METADATA_KEY,
    Faults,
    apply_fault_config,
    fault_config_from_faults,
    replace_faults,
)

__all__ = [
    "ECHO_METADATA_PREFIX",
    "ECHO_SERVICE_NAME",
    "BackendState",
    "CallGate",
    "EchoServicer",
    "FaultsServicer",
    "add_backend_services",
]

ECHO_SERVICE_NAME = "resilientrpc.echo.v1.Echo"
"""Full name of the Echo service, also the health service name a backend reports."""

ECHO_METADATA_PREFIX = "x-echo-"
"""Request metadata whose key starts with this comes back as initial and trailing metadata."""

_HEALTH_SERVICES = ("", ECHO_SERVICE_NAME)


class BackendState:
    """The mutable state of one backend, shared by its servicers and its owner.

    Thread-safe. ``name`` may be assigned until the server starts (it defaults to the
    address, known only once the port is bound).
    """

    def __init__(
        self,
        *,
        name: str,
        faults: Faults,
        seed: int | None,
        health_servicer: health.HealthServicer | HeartbeatHealthServicer,
    ) -> None:
        self.name = name
        """The name replies carry in ``EchoReply.backend`` and error details."""
        self._faults = faults
        self.health_servicer = health_servicer
        self._lock = threading.Lock()
        self._configure_lock = threading.Lock()
        self._random = random.Random(seed)
        self._calls = 0
        self._stopped = False
        self._open_calls: set[threading.Event] = set()
        self._publish_health(faults.health)

    @property
    def faults(self) -> Faults:
        """The faults in effect now."""
        with self._lock:
            return self._faults

    @property
    def calls(self) -> int:
        """How many Echo-service calls the backend has received."""
        with self._lock:
            return self._calls

    def count_call(self) -> None:
        """Count one received Echo-service call."""
        with self._lock:
            self._calls += 1

    def random(self) -> float:
        """A draw in [0, 1) from the backend's own (optionally seeded) random source."""
        with self._lock:
            return self._random.random()

    def configure(self, changes: Mapping[str, object]) -> Faults:
        """Replace the named fields of the faults; returns the new faults."""
        with self._configure_lock:
            faults = replace_faults(self.faults, changes)
            self._install(faults)
            return faults

    def apply_fault_config(self, config: faults_pb2.FaultConfig) -> Faults:
        """Apply the fields a ``FaultConfig`` sets; returns the new faults."""
        with self._configure_lock:
            faults = apply_fault_config(self.faults, config)
            self._install(faults)
            return faults

    def _install(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
        self._publish_health(faults.health)

    def _publish_health(self, status_name: str) -> None:
        status = health_pb2.HealthCheckResponse.ServingStatus.Value(status_name)
        for service in _HEALTH_SERVICES:
            self.health_servicer.set(service, status)

    def open_call(self, context: grpc.ServicerContext) -> CallGate:
        """A gate for one call, released when the call ends or the backend stops."""
        released = threading.Event()
        with self._lock:
            if self._stopped:
                released.set()
            else:
                self._open_calls.add(released)
        if not context.add_callback(released.set):
            released.set()  # the call has already terminated
        return CallGate(self, released)

    def close_call(self, released: threading.Event) -> None:
        """Forget a call's gate (called by :class:`CallGate`)."""
        with self._lock:
            self._open_calls.discard(released)

    def stop(self) -> None:
        """Release every sleeping or hung call, now and from now on."""
        with self._lock:
            self._stopped = True
            pending = list(self._open_calls)
            self._open_calls.clear()
        for released in pending:
            released.set()


class CallGate:
    """Where one call waits: injected latency and hangs end early when it is released."""

    def __init__(self, state: BackendState, released: threading.Event) -> None:
        self._state = state
        self._released = released

    def __enter__(self) -> CallGate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state.close_call(self._released)

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the call ended or the backend stopped first."""
        return not self._released.wait(seconds)

    def hang(self) -> None:
        """Wait until the call ends or the backend stops."""
        self._released.wait()


class EchoServicer:
    """The Echo service of a backend, with the backend's faults injected.

    Every reply shape goes through the same gate before its first message: latency (and
    jitter), then hang, then the error draw. Later messages of a stream only get the
    latency. Trailing metadata (load report, ``x-echo-*`` entries) is set when the call
    starts, so failed calls carry it too.
    """

    def __init__(self, state: BackendState) -> None:
        self._state = state

    def Echo(
        self, request: echo_pb2.EchoRequest, context: grpc.ServicerContext
    ) -> echo_pb2.EchoReply:
        faults = self._begin(context)
        with self._state.open_call(context) as gate:
            self._before_reply(faults, gate, context, first=True)
            return self._reply(request.message, 0)

    def ServerStream(
        self, request: echo_pb2.EchoRequest, context: grpc.ServicerContext
    ) -> Iterator[echo_pb2.EchoReply]:
        faults = self._begin(context)
        with self._state.open_call(context) as gate:
            for index in range(max(request.count, 1)):
                self._before_reply(faults, gate, context, first=index == 0)
                yield self._reply(request.message, index)

    def ClientStream(
        self, request_iterator: Iterator[echo_pb2.EchoRequest], context: grpc.ServicerContext
    ) -> echo_pb2.EchoReply:
        faults = self._begin(context)
        with self._state.open_call(context) as gate:
            messages = [request.message for request in request_iterator]
            self._before_reply(faults, gate, context, first=True)
            return self._reply(",".join(messages), len(messages))

    def BidiStream(
        self, request_iterator: Iterator[echo_pb2.EchoRequest], context: grpc.ServicerContext
    ) -> Iterator[echo_pb2.EchoReply]:
        faults = self._begin(context)
        with self._state.open_call(context) as gate:
            index = 0
            for request in request_iterator:
                self._before_reply(faults, gate, context, first=index == 0)
                yield self._reply(request.message, index)
                index += 1
            if index == 0:  # an empty stream still meets the injected faults
                self._before_reply(faults, gate, context, first=True)

    def _begin(self, context: grpc.ServicerContext) -> Faults:
        """Count the call, set its metadata, and snapshot the faults it will meet."""
        self._state.count_call()
        faults = self._state.faults
        echoed = tuple(
            (key, value)
            for key, value in context.invocation_metadata()
            if key.startswith(ECHO_METADATA_PREFIX)
        )
        if echoed:
            context.send_initial_metadata(echoed)
        trailing: tuple[tuple[str, str | bytes], ...] = echoed
        if faults.load_report is not None:
            report = faults.load_report.serialize()
            trailing += (
                (LOAD_REPORT_METADATA_KEY, report),  # for ORCA-aware (non-Python) clients
                (LOAD_REPORT_ALIAS_METADATA_KEY, report),  # grpcio hides the key above
            )
        if trailing:
            context.set_trailing_metadata(trailing)
        return faults

    def _before_reply(
        self, faults: Faults, gate: CallGate, context: grpc.ServicerContext, *, first: bool
    ) -> None:
        delay = faults.latency
        if faults.latency_jitter > 0:
            delay += self._state.random() * faults.latency_jitter
        if delay > 0 and not gate.sleep(delay):
            context.abort(grpc.StatusCode.CANCELLED, f"call ended on {self._state.name}")
        if not first:
            return
        if faults.hang:
            gate.hang()
            context.abort(grpc.StatusCode.CANCELLED, f"hung call released on {self._state.name}")
        if faults.error_rate > 0 and self._state.random() < faults.error_rate:
            context.abort(faults.error_code, f"injected fault on {self._state.name}")

    def _reply(self, message: str, index: int) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(message=message, backend=self._state.name, index=index)


class FaultsServicer:
    """The Faults service: ``Configure`` applies the set fields, returns the result."""

    def __init__(self, state: BackendState) -> None:
        self._state = state

    def Configure(
        self, request: faults_pb2.FaultConfig, context: grpc.ServicerContext
    ) -> faults_pb2.FaultConfig:
        try:
            faults = self._state.apply_fault_config(request)
        except ConfigError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return fault_config_from_faults(faults)


def add_backend_services(server: grpc.Server, state: BackendState) -> None:
    """Register Echo, Faults and the backend's health servicer on ``server``."""
    echo_pb2_grpc.add_EchoServicer_to_server(EchoServicer(state), server)
    faults_pb2_grpc.add_FaultsServicer_to_server(FaultsServicer(state), server)
    health_pb2_grpc.add_HealthServicer_to_server(state.health_servicer, server)
