"""Fault-detection runs: callers under load while one backend hangs, dies or turns unhealthy.

One *event run* is: three fresh backends in child processes, a channel over them with
health checking on (the same service config for every variant), :data:`CLIENTS`
callers each making unary calls with a :data:`CALL_DEADLINE` deadline one after
another, and a script of events (SIGSTOP, kill -9, NOT_SERVING then SERVING) sent to
one backend at fixed times. Every call is logged as a :class:`CallRecord` (when it
started and ended, who answered, its status); what the rows report is read from that
log afterwards by :mod:`resilientrpc.bench.faults`. The same log and the same reading
serve grpcio's native round_robin, the sync ``ResilientChannel`` and the asyncio twin.

Every load loop stops after its time budget or :data:`MAX_CALLS` calls per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc

import resilientrpc
from resilientrpc.bench.aio_driver import AIO_MODULE
from resilientrpc.bench.drivers import REQUEST
from resilientrpc.bench.fleet import native_target
from resilientrpc.testing import echo_pb2_grpc

__all__ = [
    "CALL_DEADLINE",
    "CLIENTS",
    "HEALTH_CONFIG",
    "MAX_CALLS",
    "READY_TIMEOUT",
    "CallRecord",
    "EventRun",
    "FaultVariant",
    "run_events",
    "status_of",
]

#: Concurrent callers of an event run.
CLIENTS = 8
#: Deadline of every call of an event run, seconds.
CALL_DEADLINE = 0.5
#: Calls one caller makes at most in one run (the time budget ends it first).
MAX_CALLS = 50_000
#: Seconds a variant has to reach every backend before its run is reported as failed.
READY_TIMEOUT = 5.0
#: The service config of every variant: round_robin with health checking (gRFC A17).
HEALTH_CONFIG: Mapping[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
}
#: The same without health checking: the resilient fallback while no Watch exists.
PLAIN_CONFIG: Mapping[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}

FaultVariant = Literal["native", "sync", "aio"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call: start and end (seconds since the load began), who answered, its status."""

    start: float
    end: float
    #: The backend name in the reply; None when the call failed.
    backend: str | None
    code: grpc.StatusCode


@dataclass(frozen=True, slots=True)
class EventRun:
    """The log of one event run and when each scripted event took effect."""

    variant: FaultVariant
    records: tuple[CallRecord, ...]
    #: Event name -> seconds since the load began when the event was sent.
    events: Mapping[str, float]
    #: Seconds the callers kept starting calls.
    duration: float
    #: The service config used (the fallback when health checking never admitted anyone).
    config: Mapping[str, Any]


#: A scripted event: (seconds after the load began, name, action).
Script = Sequence[tuple[float, str, Callable[[], object]]]


def status_of(error: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call, sync or asyncio (UNKNOWN if it carries none)."""
    code = getattr(error, "code", None)
    result = code() if callable(code) else None
    return result if isinstance(result, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _record(started: float, t0: float, call: Callable[[], Any]) -> CallRecord:
    try:
        reply = call()
    except grpc.RpcError as error:
        code = status_of(error)
        return CallRecord(started - t0, time.monotonic() - t0, None, code)
    return CallRecord(started - t0, time.monotonic() - t0, reply.backend, grpc.StatusCode.OK)


class _SyncClients:
    """Threads calling a sync channel (native grpc or ResilientChannel)."""

    def __init__(self, channel: Any, resilient: bool) -> None:
        self._channel = channel
        self._stub = echo_pb2_grpc.EchoStub(channel)
        self._resilient = resilient
        self._threads: list[threading.Thread] = []
        self._logs: list[list[CallRecord]] = []

    def ready(self, names: int) -> bool:
        return _wait_ready_sync(self._channel, self._stub, self._resilient, names)

    def start(self, t0: float, seconds: float) -> None:
        stop = t0 + seconds
        echo = self._stub.Echo

        def caller(log: list[CallRecord]) -> None:
            for _ in range(MAX_CALLS):
                started = time.monotonic()
                if started >= stop:
                    return
                log.append(_record(started, t0, lambda: echo(REQUEST, timeout=CALL_DEADLINE)))

        self._logs = [[] for _ in range(CLIENTS)]
        self._threads = [
            threading.Thread(target=caller, args=(log,), name=f"bench-fault-caller-{index}")
            for index, log in enumerate(self._logs)
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> list[CallRecord]:
        for thread in self._threads:
            thread.join()
        return [record for log in self._logs for record in log]

    def close(self) -> None:
        self._channel.close()


def _wait_ready_sync(channel: Any, stub: Any, resilient: bool, names: int) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    if resilient:
        while time.monotonic() < deadline:
            statuses = channel.endpoints()
            if len(statuses) >= names and all(status.available for status in statuses):
                return True
            time.sleep(0.01)
        return False
    seen: set[str] = set()
    while len(seen) < names and time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            seen.add(stub.Echo(REQUEST, timeout=CALL_DEADLINE, wait_for_ready=True).backend)
    return len(seen) >= names


class _AioClients:
    """Tasks calling ``resilientrpc.aio.ResilientChannel`` on a loop in its own thread."""

    def __init__(self, addresses: Sequence[str], config: Mapping[str, Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-fault-aio")
        self._thread.start()
        self._future: Any = None
        module = importlib.import_module(AIO_MODULE)

        async def open_channel() -> Any:
            return module.ResilientChannel(list(addresses), config=dict(config))

        self._channel = self._run(open_channel())
        self._stub = echo_pb2_grpc.EchoStub(self._channel)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def ready(self, names: int) -> bool:
        async def wait() -> bool:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                statuses = self._channel.endpoints()
                if len(statuses) >= names and all(status.available for status in statuses):
                    return True
                await asyncio.sleep(0.01)
            return False

        return bool(self._run(wait()))

    def start(self, t0: float, seconds: float) -> None:
        stop = t0 + seconds
        echo = self._stub.Echo

        async def caller(log: list[CallRecord]) -> None:
            for _ in range(MAX_CALLS):
                started = time.monotonic()
                if started >= stop:
                    return
                try:
                    reply = await echo(REQUEST, timeout=CALL_DEADLINE)
                except grpc.RpcError as error:
                    log.append(
                        CallRecord(started - t0, time.monotonic() - t0, None, status_of(error))
                    )
                else:
                    log.append(
                        CallRecord(
                            started - t0, time.monotonic() - t0, reply.backend, grpc.StatusCode.OK
                        )
                    )

        async def load() -> list[CallRecord]:
            logs: list[list[CallRecord]] = [[] for _ in range(CLIENTS)]
            await asyncio.gather(*(caller(log) for log in logs))
            return [record for log in logs for record in log]

        self._future = asyncio.run_coroutine_threadsafe(load(), self._loop)

    def join(self) -> list[CallRecord]:
        return list(self._future.result())

    def close(self) -> None:
        async def close() -> None:
            await self._channel.close()

        try:
            self._run(close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


def _clients(
    variant: FaultVariant, addresses: Sequence[str], config: Mapping[str, Any]
) -> _SyncClients | _AioClients:
    if variant == "native":
        options = (("grpc.service_config", json.dumps(config)),)
        return _SyncClients(grpc.insecure_channel(native_target(addresses), options=options), False)
    if variant == "sync":
        return _SyncClients(
            resilientrpc.ResilientChannel(list(addresses), config=dict(config)), True
        )
    return _AioClients(addresses, config)


def run_events(
    variant: FaultVariant,
    addresses: Sequence[str],
    script: Script,
    seconds: float,
    *,
    fallback: bool = True,
    health: bool = True,
) -> EventRun:
    """Load the backends at ``addresses`` for ``seconds`` while ``script`` plays.

    The variant uses :data:`HEALTH_CONFIG`. If a resilient variant does not admit every
    backend within :data:`READY_TIMEOUT` (a build whose channel has no health Watch yet
    never sees SERVING) and ``fallback`` is set, it runs with :data:`PLAIN_CONFIG`
    instead, which the run records; without ``fallback`` it raises TimeoutError. With
    ``health=False`` it uses :data:`PLAIN_CONFIG` from the start.
    """
    config: Mapping[str, Any] = HEALTH_CONFIG if health else PLAIN_CONFIG
    clients = _clients(variant, addresses, config)
    if not clients.ready(len(addresses)):
        clients.close()
        if variant == "native" or not fallback or config is PLAIN_CONFIG:
            raise TimeoutError(f"{variant}: not every backend admitted in {READY_TIMEOUT} s")
        config = PLAIN_CONFIG
        clients = _clients(variant, addresses, config)
        if not clients.ready(len(addresses)):
            clients.close()
            raise TimeoutError(f"{variant}: not every backend ready in {READY_TIMEOUT} s")
    events: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        clients.start(t0, seconds)
        for at, name, action in sorted(script, key=lambda item: item[0]):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            events[name] = time.monotonic() - t0  # when the signal or request is sent
            action()
        records = clients.join()
    finally:
        clients.close()
    return EventRun(variant, tuple(records), events, seconds, config)
