"""Server side of health heartbeats: a ``grpc.health.v1`` servicer whose Watch streams tick.

:class:`HeartbeatHealthServicer` answers ``Check`` and ``Watch`` the way the stock
``grpc_health.v1.health.HealthServicer`` does (``set(service, status)``; ``""`` is the
whole server; ``Check`` of an unknown service fails with NOT_FOUND, ``Watch`` of one
reports SERVICE_UNKNOWN; :meth:`~HeartbeatHealthServicer.enter_graceful_shutdown`
turns every service NOT_SERVING for good). In addition every open ``Watch`` stream
re-sends the current status each ``interval`` seconds, besides sending at once on every
change. A client can then treat the stream as a heartbeat: no message for
``interval + timeout`` means the server is hung, even while its TCP connection stays
open, and no ``Check`` traffic is needed to find out.

A client tells the servicer its heartbeat interval in the Watch request's metadata,
``resilientrpc-heartbeat-interval-ms`` (:data:`INTERVAL_METADATA`; resilientrpc's
channels send it). That stream then ticks every ``min(interval, requested / 2)``
seconds, never more often than every :data:`MIN_HEARTBEAT_INTERVAL`: a message is always
on its way well within the client's interval, so heartbeats ride the stream with no
``Check`` traffic whatever interval the client chose. A stream without (or with an
unreadable) value ticks every ``interval``.

For sync ``grpc.server``\\ s. Each open ``Watch`` holds the server thread grpc gives the
streaming call (size the server's executor for the watchers it expects) and nothing
else: the handler waits on the servicer's condition with a timeout of ``interval``.
A stream ends when its client cancels it (the RPC's termination callback wakes the
handler), when the server stops, and on :meth:`~HeartbeatHealthServicer.close`.

Lock order: the servicer's ``_condition`` is a leaf. Nothing is called while holding it
(no grpc call, no ``context`` method, no user code); the RPC termination callback only
takes it to flag the stream and wake the waiters.

>>> servicer = HeartbeatHealthServicer(interval=0.5)
>>> servicer.set("my.Service", health_pb2.HealthCheckResponse.SERVING)
>>> servicer.status("my.Service") == health_pb2.HealthCheckResponse.SERVING
True
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from resilientrpc.errors import ConfigError

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "INTERVAL_METADATA",
    "MIN_HEARTBEAT_INTERVAL",
    "OVERALL_HEALTH",
    "HeartbeatHealthServicer",
]

DEFAULT_HEARTBEAT_INTERVAL = 1.0
"""Seconds between two messages on an otherwise quiet Watch stream."""

INTERVAL_METADATA = "resilientrpc-heartbeat-interval-ms"
"""Request metadata key: the client's heartbeat interval, whole milliseconds."""

MIN_HEARTBEAT_INTERVAL = 0.05
"""The shortest tick a client's interval can ask a Watch stream for, seconds."""

OVERALL_HEALTH = ""
"""The service name that stands for the whole server."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def _stream_interval(own: float, metadata: Sequence[tuple[str, Any]] | None) -> float:
    """The tick of one Watch stream: ``own``, or half the client's interval if shorter."""
    for key, value in metadata or ():
        if key == INTERVAL_METADATA:
            try:
                requested = int(value) / 1000.0
            except (TypeError, ValueError):
                return own
            return min(own, max(requested / 2, MIN_HEARTBEAT_INTERVAL))
    return own


class _Stream:
    """One open Watch: set when its RPC terminates (guarded by the servicer's condition)."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


class HeartbeatHealthServicer(health_pb2_grpc.HealthServicer):
    """A ``grpc.health.v1`` Health servicer whose Watch streams re-send every ``interval``.

    Register it like the stock one::

        health = HeartbeatHealthServicer(interval=1.0)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        health.set("my.Service", health_pb2.HealthCheckResponse.SERVING)

    Thread-safe.
    """

    def __init__(self, *, interval: float = DEFAULT_HEARTBEAT_INTERVAL) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ConfigError("interval", f"expected a number of seconds > 0, got {interval!r}")
        self._interval = float(interval)
        self._condition = threading.Condition(threading.Lock())
        self._statuses: dict[str, int] = {OVERALL_HEALTH: _SERVING}
        # Bumped on every set() of a service: a Watch sends at once when it moves.
        self._changes: dict[str, int] = {}
        self._shutting_down = False
        self._closed = False

    def __repr__(self) -> str:
        return f"HeartbeatHealthServicer(interval={self._interval!r})"

    @property
    def interval(self) -> float:
        """Seconds between two messages on an otherwise quiet Watch stream."""
        return self._interval

    def status(self, service: str) -> int | None:
        """The status ``service`` reports, or ``None`` if it was never set."""
        with self._condition:
            return self._statuses.get(service)

    def set(self, service: str, status: int) -> None:
        """Set the status of ``service`` and send it at once to its watchers.

        Ignored after :meth:`enter_graceful_shutdown`, as in the stock servicer.
        """
        with self._condition:
            if self._shutting_down:
                return
            self._set_locked(service, status)

    def enter_graceful_shutdown(self) -> None:
        """Turn every known service NOT_SERVING for good; later :meth:`set` calls are ignored."""
        with self._condition:
            if self._shutting_down:
                return
            for service in list(self._statuses):
                self._set_locked(service, _NOT_SERVING)
            self._shutting_down = True

    def close(self) -> None:
        """End every open Watch stream (after any pending change is sent).

        A Watch opened later gets the current status and ends. Idempotent; ``Check`` and
        :meth:`set` keep working.
        """
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _set_locked(self, service: str, status: int) -> None:
        self._statuses[service] = status
        self._changes[service] = self._changes.get(service, 0) + 1
        self._condition.notify_all()

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        service = request.service
        stream = _Stream()
        interval = _stream_interval(self._interval, context.invocation_metadata())

        def on_termination() -> None:
            with self._condition:
                stream.ended = True
                self._condition.notify_all()

        if not context.add_callback(on_termination):
            return  # the RPC already terminated
        seen = -1
        while True:
            with self._condition:
                deadline = time.monotonic() + interval
                while not (stream.ended or self._closed) and self._changes.get(service, 0) == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
                changed = self._changes.get(service, 0) != seen
                seen = self._changes.get(service, 0)
                status = self._statuses.get(service, _SERVICE_UNKNOWN)
                ended, closed = stream.ended, self._closed
            if ended or (closed and not changed):
                return
            yield health_pb2.HealthCheckResponse(status=status)
            if closed:
                return
