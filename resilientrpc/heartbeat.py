"""Health heartbeats: one asyncio task per endpoint, on ``grpc.health.v1`` (gRFC A17).

While an endpoint's connection is READY, its heartbeat keeps a ``Watch`` stream open on
the channel the supervisor watches (for the sync twin that channel shares the calls'
connection, see :mod:`resilientrpc.options`) and reports what it learns through
:meth:`~resilientrpc.balancer.Balancer.set_health`:

- SERVING: healthy. NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN: unhealthy at once, the
  status named in the reason. A stream that fails (or ends): unhealthy, and it is
  reopened after a jittered exponential backoff (:data:`INITIAL_BACKOFF` doubling to
  :data:`MAX_BACKOFF`). ``Watch`` UNIMPLEMENTED: healthy, as A17 says, and the heartbeat
  carries on with ``Check`` alone.
- **Heartbeat deadline** ``T = interval + timeout``. A sign of life is any ``Watch``
  message, or an answered ``Check``: whatever status the *server* sends counts (NOT_FOUND,
  UNIMPLEMENTED, ...), DEADLINE_EXCEEDED, UNAVAILABLE and CANCELLED do not. Whenever the
  stream has been quiet for ``interval`` a ``Check`` goes out with deadline ``timeout``.
  No sign of life for ``T``: unhealthy (:data:`~resilientrpc.events.HEARTBEAT_MISSED`).
  This catches a hung server whose TCP connection stays open. Life coming back restores
  the last reported status.
- Our own loop running late must not by itself kill an endpoint: a deadline noticed more
  than :data:`LATE` after its time is checked once more :data:`RECHECK` later, after the
  stream's pending messages have had their turn.

The connection leaving READY stops the heartbeat and resets the verdict to None (no
verdict: the endpoint waits for its first report after reconnecting, as in A17). Every
stream carries the client's interval in its metadata
(:data:`~resilientrpc.health.INTERVAL_METADATA`), so a
:class:`~resilientrpc.health.HeartbeatHealthServicer` ticks the stream often enough that
no ``Check`` is needed.

An exception in one endpoint's heartbeat is logged, and that heartbeat starts over after
a backoff; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from resilientrpc import events
from resilientrpc.balancer import Balancer
from resilientrpc.config import HealthCheckConfig
from resilientrpc.endpoint import Connectivity, Endpoint
from resilientrpc.health import INTERVAL_METADATA

__all__ = ["INITIAL_BACKOFF", "LATE", "MAX_BACKOFF", "RECHECK", "Heartbeats"]

_log = logging.getLogger(__name__)

#: Seconds before a failed Watch stream is first reopened (then doubled, jittered).
INITIAL_BACKOFF = 0.1
#: The longest wait before reopening a failed Watch stream, seconds.
MAX_BACKOFF = 2.0
#: A wake-up this much later than asked means our loop was busy, seconds.
LATE = 0.05
#: How much longer a deadline noticed late waits before it declares an endpoint dead.
RECHECK = 0.05

#: ``Check`` outcomes that do not show the server alive (made up by the client's grpc).
_NO_LIFE = frozenset(
    {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
)
_SERVING = health_pb2.HealthCheckResponse.SERVING

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


def _status_name(status: int) -> str:
    try:
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    except ValueError:
        return f"status {status}"
    return name


class Heartbeats:
    """The heartbeats of one channel's endpoints; used on the supervisor's loop only."""

    def __init__(
        self,
        balancer: Balancer,
        config: HealthCheckConfig,
        spawn: Spawn,
        rng: random.Random | None = None,
    ) -> None:
        self._balancer = balancer
        self._config = config
        self._spawn = spawn
        self._rng = rng if rng is not None else random.Random()
        self._tasks: dict[Endpoint, asyncio.Task[None]] = {}

    def connectivity(
        self, endpoint: Endpoint, control: grpc.aio.Channel, state: grpc.ChannelConnectivity
    ) -> None:
        """Follow a connectivity change: beat while READY, no verdict otherwise."""
        if state is Connectivity.READY:
            if endpoint not in self._tasks:
                beat = _Heartbeat(endpoint, control, self._balancer, self._config, self._rng)
                self._tasks[endpoint] = self._spawn(beat.run(), f"heartbeat {endpoint.address}")
            return
        self.stop(endpoint)
        self._balancer.set_health(
            endpoint, None, f"connection {state.name}: no health verdict until it is READY"
        )

    def stop(self, endpoint: Endpoint) -> None:
        """Stop ``endpoint``'s heartbeat, if it has one (its stream is cancelled)."""
        task = self._tasks.pop(endpoint, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        for endpoint in list(self._tasks):
            self.stop(endpoint)


class _Heartbeat:
    """One endpoint's heartbeat while its connection is READY."""

    def __init__(
        self,
        endpoint: Endpoint,
        control: grpc.aio.Channel,
        balancer: Balancer,
        config: HealthCheckConfig,
        rng: random.Random,
    ) -> None:
        self._endpoint = endpoint
        self._balancer = balancer
        self._stub = health_pb2_grpc.HealthStub(control)
        self._request = health_pb2.HealthCheckRequest(service=config.service_name)
        self._metadata = ((INTERVAL_METADATA, str(max(1, round(config.interval * 1000)))),)
        self._interval = config.interval
        self._timeout = config.timeout
        self._deadline = config.interval + config.timeout
        self._rng = rng
        #: The last status the server reported (healthy, reason); None before any.
        self._status: tuple[bool, str] | None = None
        self._dead = False
        self._watching = True
        self._life = 0.0

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            try:
                await self._beat()
            except Exception:  # this endpoint only: log, start over after a pause
                _log.exception("heartbeat of %s failed; starting over", self._endpoint.address)
            await asyncio.sleep(self._jittered(backoff))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _jittered(self, backoff: float) -> float:
        return backoff * self._rng.uniform(0.8, 1.2)

    def _report(self, healthy: bool, reason: str) -> None:
        """A status from the server (or its stream failing); applies unless dead."""
        self._status = (healthy, reason)
        if not self._dead:
            self._balancer.set_health(self._endpoint, healthy, reason)

    def _alive(self, now: float) -> None:
        self._life = now
        if self._dead:
            self._dead = False
            if self._status is None:
                self._balancer.set_health(self._endpoint, None, "heartbeat back, no report yet")
            else:
                self._balancer.set_health(self._endpoint, *self._status)

    async def _check(self) -> health_pb2.HealthCheckResponse:
        response: health_pb2.HealthCheckResponse = await self._stub.Check(
            self._request, timeout=self._timeout
        )
        return response

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        self._life = loop.time()
        backoff = INITIAL_BACKOFF
        reopen_at = self._life
        check_sent = -math.inf
        grace_until: float | None = None
        call: Any = None
        read: asyncio.Future[Any] | None = None
        check: asyncio.Future[health_pb2.HealthCheckResponse] | None = None
        scheduled = self._life
        try:
            while True:
                now = loop.time()
                late = now - scheduled > LATE
                if read is not None and read.done():
                    outcome, read = read, None
                    try:
                        message = outcome.result()
                    except grpc.aio.AioRpcError as error:
                        message = error
                    if isinstance(message, health_pb2.HealthCheckResponse):
                        self._alive(now)
                        grace_until = None
                        backoff = INITIAL_BACKOFF
                        status = message.status
                        self._report(status == _SERVING, _status_name(status))
                        read = asyncio.ensure_future(call.read())
                    elif (
                        isinstance(message, grpc.aio.AioRpcError)
                        and message.code() is grpc.StatusCode.UNIMPLEMENTED
                    ):
                        call, self._watching = None, False
                        self._report(True, "health Watch UNIMPLEMENTED: healthy (A17), Check only")
                    else:
                        call = None
                        if isinstance(message, grpc.aio.AioRpcError):
                            why = f"{message.code().name}: {message.details()}"
                        else:
                            why = "ended by the server"
                        self._report(False, f"health Watch stream failed: {why}")
                        reopen_at = now + self._jittered(backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF)
                if check is not None and check.done():
                    answered, check = check, None
                    try:
                        response = answered.result()
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in _NO_LIFE:
                            self._alive(now)
                            grace_until = None
                    else:
                        self._alive(now)
                        grace_until = None
                        if not self._watching:
                            self._report(response.status == _SERVING, _status_name(response.status))
                if self._watching and call is None and now >= reopen_at:
                    call = self._stub.Watch(self._request, metadata=self._metadata)
                    read = asyncio.ensure_future(call.read())
                if check is None and now >= max(self._life, check_sent) + self._interval:
                    check_sent = now
                    check = asyncio.ensure_future(self._check())
                if not self._dead and now >= self._life + self._deadline:
                    if grace_until is None and late:
                        grace_until = now + RECHECK  # our loop was late: let the stream catch up
                    elif grace_until is None or now >= grace_until:
                        self._dead, grace_until = True, None
                        self._balancer.set_health(
                            self._endpoint,
                            False,
                            f"no heartbeat for {now - self._life:.2f} s "
                            f"(interval {self._interval:g} s + timeout {self._timeout:g} s)",
                            kind=events.HEARTBEAT_MISSED,
                        )
                wakes = [math.inf]
                if check is None:
                    wakes.append(max(self._life, check_sent) + self._interval)
                if not self._dead:
                    wakes.append(self._life + self._deadline)
                if grace_until is not None:
                    wakes.append(grace_until)
                if self._watching and call is None:
                    wakes.append(reopen_at)
                scheduled = max(min(wakes), now)
                pending = {f for f in (read, check) if f is not None}
                if pending:
                    timeout = None if scheduled == math.inf else scheduled - now
                    await asyncio.wait(
                        pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(scheduled - now)
        finally:
            if call is not None:
                call.cancel()
            # Every outcome is retrieved, even one that came as we stopped: an unretrieved
            # error's traceback would keep the channel (and grpc.aio's poller) alive.
            left = [f for f in (read, check) if f is not None]
            read = check = call = None
            for future in left:
                future.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            left.clear()
