"""The request handling of a test backend: Echo with injected faults, Faults, Health.

This module owns what happens inside one backend's calls, independent of how the
server around it runs (in process or in a child process):

- :class:`BackendState`: the backend's current :class:`~resilientrpc.testing.Faults`,
  its call counter, the ``resilientrpc-previous-rpc-attempts`` header of each recent
  call, its random source, and the per-call release events that let a stopping backend
  free every sleeping or hung handler thread.
- :class:`EchoServicer`: the four Echo call shapes with stall, latency, hang, error and
  load report injection (the ORCA ``endpoint-load-metrics-bin`` trailer, plus the same
  bytes under ``resilientrpc-load-metrics-bin`` because grpcio clients never see the ORCA
  key), retry hints on injected failures (``grpc-retry-pushback-ms``, a
  ``google.rpc.RetryInfo`` in ``grpc-status-details-bin``), failures after N streamed
  replies, and ``x-echo-*`` metadata echoed back.
- :class:`FaultsServicer`: the ``Configure`` and ``Stats`` RPCs.
- :func:`add_backend_services`: registers those and a ``grpc.health.v1`` servicer (a
  :class:`~resilientrpc.health.HeartbeatHealthServicer` in ``Backend``, whose Watch
  streams re-send the status every second).

Lock order: ``BackendState._configure_lock`` before the health servicer's own lock;
``BackendState._lock`` is a leaf (nothing is called while holding it).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from resilientrpc.errors import ConfigError
from resilientrpc.health import HeartbeatHealthServicer
from resilientrpc.proto import echo_pb2, echo_pb2_grpc, faults_pb2, faults_pb2_grpc
from resilientrpc.retry import PREVIOUS_ATTEMPTS_HEADER, PUSHBACK_HEADER
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
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_HEADER",
    "RECORD_LIMIT",
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

# The request header a retry carries (how many attempts preceded it) and A6's pushback
# trailer, sent on injected failures when set: the retry step's own names.

RECORD_LIMIT = 100_000
"""How many recent calls' previous-attempts headers a backend keeps (oldest dropped)."""

_HEALTH_SERVICES = ("", ECHO_SERVICE_NAME)
_INT32_MAX = 2**31 - 1


def _previous_attempts(value: str | bytes) -> int | None:
    """The header's count; None unless it is a decimal number that fits an int32."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
        if number <= _INT32_MAX:
            return number
    return None


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
        self._previous_attempts: deque[int | None] = deque(maxlen=RECORD_LIMIT)
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

    def count_call(self, previous_attempts: int | None = None) -> None:
        """Count one received Echo-service call and record its previous-attempts header."""
        with self._lock:
            self._calls += 1
            self._previous_attempts.append(previous_attempts)

    def previous_attempts(self) -> list[int | None]:
        """The previous-attempts header of each recent call (None: absent), oldest first."""
        return self.stats()[1]

    def stats(self) -> tuple[int, list[int | None]]:
        """The call count and :meth:`previous_attempts`, taken together."""
        with self._lock:
            return self._calls, list(self._previous_attempts)

    def take_failure(self, error_rate: float) -> bool:
        """Whether a call's first reply fails: ``fail_next`` (counted down), else the draw."""
        with self._lock:
            if self._faults.fail_next > 0:
                self._faults = dataclasses.replace(
                    self._faults, fail_next=self._faults.fail_next - 1
                )
                return True
            return error_rate > 0 and self._random.random() < error_rate

    def random(self) -> float:
        """A draw in [0, 1) from the backend's own (optionally seeded) random source."""
        with self._lock:
            return self._random.random()

    def configure(self, changes: Mapping[str, object]) -> Faults:
        """Replace the named fields of the faults; returns the new faults."""
        with self._configure_lock:
            # Read and replace under the leaf lock: calls count fail_next down meanwhile.
            with self._lock:
                faults = self._faults = replace_faults(self._faults, changes)
            self._publish_health(faults.health)
            return faults

    def apply_fault_config(self, config: faults_pb2.FaultConfig) -> Faults:
        """Apply the fields a ``FaultConfig`` sets; returns the new faults."""
        with self._configure_lock:
            with self._lock:
                faults = self._faults = apply_fault_config(self._faults, config)
            self._publish_health(faults.health)
            return faults

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


@dataclass(frozen=True, slots=True)
class _Call:
    """What one call meets: the faults when it began and the trailing metadata it sends."""

    faults: Faults
    trailing: tuple[tuple[str, str | bytes], ...]


class EchoServicer:
    """The Echo service of a backend, with the backend's faults injected.

    Every reply shape goes through the same gate before its first message: stall, latency
    (and jitter), then hang, then ``fail_next`` or the error draw. Later messages of a
    stream only get the latency, and the stream fails after ``fail_after_messages``
    replies. Trailing metadata (load report, ``x-echo-*`` entries) is set when the call
    starts, so failed calls carry it too; injected failures add the retry hints.
    """

    def __init__(self, state: BackendState) -> None:
        self._state = state

    def Echo(
        self, request: echo_pb2.EchoRequest, context: grpc.ServicerContext
    ) -> echo_pb2.EchoReply:
        call = self._begin(context)
        with self._state.open_call(context) as gate:
            self._before_reply(call, gate, context, first=True)
            return self._reply(request.message, 0)

    def ServerStream(
        self, request: echo_pb2.EchoRequest, context: grpc.ServicerContext
    ) -> Iterator[echo_pb2.EchoReply]:
        call = self._begin(context)
        with self._state.open_call(context) as gate:
            for index in range(max(request.count, 1)):
                self._before_reply(call, gate, context, first=index == 0)
                yield self._reply(request.message, index)
                self._after_reply(call, context, sent=index + 1)

    def ClientStream(
        self, request_iterator: Iterator[echo_pb2.EchoRequest], context: grpc.ServicerContext
    ) -> echo_pb2.EchoReply:
        call = self._begin(context)
        with self._state.open_call(context) as gate:
            messages = [request.message for request in request_iterator]
            self._before_reply(call, gate, context, first=True)
            return self._reply(",".join(messages), len(messages))

    def BidiStream(
        self, request_iterator: Iterator[echo_pb2.EchoRequest], context: grpc.ServicerContext
    ) -> Iterator[echo_pb2.EchoReply]:
        call = self._begin(context)
        with self._state.open_call(context) as gate:
            index = 0
            for request in request_iterator:
                self._before_reply(call, gate, context, first=index == 0)
                yield self._reply(request.message, index)
                index += 1
                self._after_reply(call, context, sent=index)
            if index == 0:  # an empty stream still meets the injected faults
                self._before_reply(call, gate, context, first=True)

    def _begin(self, context: grpc.ServicerContext) -> _Call:
        """Count the call, set its metadata, and snapshot the faults it will meet."""
        metadata = tuple(context.invocation_metadata())
        previous = next(
            (_previous_attempts(v) for k, v in metadata if k == PREVIOUS_ATTEMPTS_HEADER), None
        )
        self._state.count_call(previous)
        faults = self._state.faults
        echoed = tuple(
            (key, value) for key, value in metadata if key.startswith(ECHO_METADATA_PREFIX)
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
        return _Call(faults, trailing)

    def _before_reply(
        self, call: _Call, gate: CallGate, context: grpc.ServicerContext, *, first: bool
    ) -> None:
        faults = call.faults
        if (
            first
            and faults.stall_rate > 0
            and self._state.random() < faults.stall_rate
            and not gate.sleep(faults.stall_seconds)
        ):
            context.abort(grpc.StatusCode.CANCELLED, f"call ended on {self._state.name}")
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
        if self._state.take_failure(faults.error_rate):
            self._fail(call, context, "injected fault")

    def _after_reply(self, call: _Call, context: grpc.ServicerContext, *, sent: int) -> None:
        if sent == call.faults.fail_after_messages:
            self._fail(call, context, f"injected fault after {sent} replies")

    def _fail(self, call: _Call, context: grpc.ServicerContext, what: str) -> None:
        """End the call with the injected error code and the configured retry hints."""
        faults = call.faults
        status = status_pb2.Status(
            code=faults.error_code.value[0], message=f"{what} on {self._state.name}"
        )
        if faults.retry_info_seconds > 0:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(round(faults.retry_info_seconds * 1e9))
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            status.details.append(detail)
        rich = rpc_status.to_status(status)
        trailing = call.trailing
        if faults.pushback_ms:
            trailing += ((PUSHBACK_HEADER, faults.pushback_ms),)
        if status.details:
            trailing += tuple(rich.trailing_metadata)
        if trailing:
            context.set_trailing_metadata(trailing)
        context.abort(rich.code, rich.details)

    def _reply(self, message: str, index: int) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(message=message, backend=self._state.name, index=index)


class FaultsServicer:
    """The Faults service: ``Configure`` (set fields in, all out) and ``Stats``."""

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

    def Stats(
        self, request: faults_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> faults_pb2.BackendStats:
        calls, previous = self._state.stats()
        return faults_pb2.BackendStats(
            calls=calls, previous_rpc_attempts=[-1 if n is None else n for n in previous]
        )


def add_backend_services(server: grpc.Server, state: BackendState) -> None:
    """Register Echo, Faults and the backend's health servicer on ``server``."""
    echo_pb2_grpc.add_EchoServicer_to_server(EchoServicer(state), server)
    faults_pb2_grpc.add_FaultsServicer_to_server(FaultsServicer(state), server)
    health_pb2_grpc.add_HealthServicer_to_server(state.health_servicer, server)
