"""Health heartbeats (gRFC A17 plus a deadline), both twins, against real servers.

Hung (SIGSTOP), killed and restarted backends run in child processes; status flips,
servers without a health service and stock ``grpc_health`` servers run in this process.
Interval and timeout are short (0.2 s + 0.2 s) to keep the suite fast; the bounds carry
generous slack for a loaded two-core machine.
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import resilientrpc
import resilientrpc.aio
from resilientrpc import events
from resilientrpc._loop import LoopThread
from resilientrpc.config import HealthCheckConfig, RoundRobin, ServiceConfig
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.health import HeartbeatHealthServicer
from resilientrpc.testing import Backend, BackendProcess, Faults, echo_pb2_grpc
from resilientrpc.testing.servicer import BackendState, EchoServicer
from tests.twins import ChannelHandle
from tests.waiting import eventually

INTERVAL = 0.2
TIMEOUT = 0.2
#: The heartbeat deadline T = interval + timeout.
DEADLINE = INTERVAL + TIMEOUT
#: Slack for a loaded machine on top of T.
SLACK = 1.5
CONFIG = ServiceConfig(
    load_balancing=RoundRobin(),
    health_check=HealthCheckConfig(service_name="", interval=INTERVAL, timeout=TIMEOUT),
)
OpenChannel = Callable[..., ChannelHandle]
#: Seconds an application's loop keeps running after closing a channel of 200 endpoints.
SETTLE = 3.0


@pytest.fixture
def processes() -> Iterator[Callable[..., BackendProcess]]:
    """Start backends in child processes; all are stopped at the end of the test."""
    started: list[BackendProcess] = []

    def start(name: str, **kwargs: Any) -> BackendProcess:
        child = BackendProcess(name, **kwargs).start()
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


def status(handle: ChannelHandle, address: str) -> EndpointStatus:
    return next(s for s in handle.endpoints() if s.address == address)


def all_available(handle: ChannelHandle, timeout: float = 10.0) -> bool:
    return eventually(lambda: all(s.available for s in handle.endpoints()), timeout)


def time_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` holds (polled every millisecond); fails the test if never."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition never held"
        time.sleep(0.001)
    return time.monotonic() - start


def served_by(handle: ChannelHandle, count: int) -> Counter[str]:
    """Which backends answer ``count`` calls (a call sent to a hung one times out)."""
    return Counter(handle.echo(timeout=2.0).backend for _ in range(count))


def kinds(handle: ChannelHandle, address: str) -> list[str]:
    return [event.kind for event in status(handle, address).events]


def test_a_hung_backend_is_out_within_the_deadline_and_back_when_it_resumes(
    open_channel: OpenChannel, processes: Callable[..., BackendProcess]
) -> None:
    hung, other = processes("hung"), processes("other")
    handle = open_channel([hung.address, other.address], config=CONFIG)
    assert all_available(handle)
    assert set(served_by(handle, 10)) == {"hung", "other"}

    hung.pause()  # SIGSTOP: the TCP connection stays open, nothing answers
    took = time_until(lambda: not status(handle, hung.address).available, DEADLINE + SLACK)
    assert took >= DEADLINE - INTERVAL  # the last tick came at most half an interval before
    out = status(handle, hung.address)
    assert out.healthy is False
    assert out.state == "READY"
    assert out.reason is not None and out.reason.startswith("no heartbeat for")
    assert kinds(handle, hung.address)[-1] == events.HEARTBEAT_MISSED
    assert served_by(handle, 20) == {"other": 20}

    hung.resume()
    assert eventually(lambda: status(handle, hung.address).available, 5.0)
    back = status(handle, hung.address)
    assert back.healthy is True
    assert back.reason == "SERVING"
    assert kinds(handle, hung.address)[-1] == events.HEALTH
    assert eventually(lambda: "hung" in served_by(handle, 4), 5.0)


def test_a_killed_backend_restarted_on_its_port_is_readmitted(
    open_channel: OpenChannel, processes: Callable[..., BackendProcess]
) -> None:
    first, other = processes("first"), processes("other")
    handle = open_channel([first.address, other.address], config=CONFIG)
    assert all_available(handle)

    first.kill()  # kill -9
    assert eventually(lambda: not status(handle, first.address).available, DEADLINE + SLACK)
    # Off READY there is no verdict: the endpoint waits for a report after reconnecting.
    assert eventually(lambda: status(handle, first.address).healthy is None, 5.0)
    assert served_by(handle, 10) == {"other": 10}

    processes("again", port=first.port)
    assert eventually(lambda: status(handle, first.address).available, 10.0)
    assert status(handle, first.address).reason == "SERVING"
    assert eventually(lambda: "again" in served_by(handle, 4), 5.0)


@pytest.mark.parametrize("flip", ["NOT_SERVING", "SERVICE_UNKNOWN"])
def test_a_backend_that_stops_serving_is_out_at_once_and_back_when_serving(
    open_channel: OpenChannel, backend: Callable[..., Backend], flip: str
) -> None:
    flipping, other = backend("flipping"), backend("other")
    handle = open_channel([flipping.address, other.address], config=CONFIG)
    assert all_available(handle)

    flipping.configure(health=flip)
    took = time_until(lambda: not status(handle, flipping.address).available, 1.0)
    assert took < 0.2  # pushed on the Watch stream, not found by a heartbeat
    out = status(handle, flipping.address)
    assert out.healthy is False and out.reason == flip
    assert kinds(handle, flipping.address)[-1] == events.HEALTH
    calls_before = flipping.calls
    assert served_by(handle, 20) == {"other": 20}
    assert flipping.calls == calls_before

    flipping.configure(health="SERVING")
    assert time_until(lambda: status(handle, flipping.address).available, 1.0) < 0.2
    assert eventually(lambda: "flipping" in served_by(handle, 4), 5.0)


@contextmanager
def echo_server(health_servicer: Any) -> Iterator[str]:
    """An Echo server whose health service is ``health_servicer`` (None: none at all)."""
    executor = futures.ThreadPoolExecutor(32, thread_name_prefix="heartbeat-test")
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    state = BackendState(
        name="plain", faults=Faults(), seed=None, health_servicer=HeartbeatHealthServicer()
    )
    echo_pb2_grpc.add_EchoServicer_to_server(EchoServicer(state), server)
    if health_servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()
        executor.shutdown(wait=True)


def test_a_server_without_a_health_service_is_used(open_channel: OpenChannel) -> None:
    with echo_server(None) as address:
        handle = open_channel([address], config=CONFIG)
        assert all_available(handle)
        first = status(handle, address)
        assert first.healthy is True
        assert first.reason is not None and "UNIMPLEMENTED" in first.reason
        # Check (answered UNIMPLEMENTED) keeps the heartbeat going: it stays in.
        time.sleep(3 * DEADLINE)
        assert status(handle, address).available
        assert kinds(handle, address).count(events.HEARTBEAT_MISSED) == 0
        assert handle.echo().backend == "plain"


class HangingHealth(health.HealthServicer):
    """The stock servicer, whose ``Check`` hangs while ``hung`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hung = threading.Event()
        self.released = threading.Event()
        self.checks = 0

    def Check(self, request: Any, context: Any) -> Any:
        self.checks += 1
        if self.hung.is_set():
            self.released.wait(10.0)
        return super().Check(request, context)


def test_a_stock_health_service_works_through_check_and_a_hang_is_caught(
    open_channel: OpenChannel,
) -> None:
    servicer = HangingHealth()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        with echo_server(servicer) as address:
            handle = open_channel([address], config=CONFIG)
            assert all_available(handle)
            # The stock Watch sends on changes only: Check keeps the heartbeat alive.
            time.sleep(3 * DEADLINE)
            assert status(handle, address).available
            assert servicer.checks >= 3
            servicer.hung.set()
            assert eventually(lambda: not status(handle, address).available, DEADLINE + SLACK)
            assert kinds(handle, address)[-1] == events.HEARTBEAT_MISSED
            servicer.hung.clear()
            servicer.released.set()
            assert eventually(lambda: status(handle, address).available, 5.0)
            assert status(handle, address).reason == "SERVING"
    finally:
        servicer.released.set()


@contextmanager
def many_ports(count: int) -> Iterator[list[str]]:
    """``count`` addresses served by one HeartbeatHealthServicer in a child process."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.many_ports", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready, _, _ = select.select([child.stdout], [], [], 20.0)
        assert ready, "the many-ports server did not start"
        yield [f"127.0.0.1:{int(port)}" for port in child.stdout.readline().split()]
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


def threads_now() -> int:
    """This process's OS threads, grpc core's included."""
    return len(os.listdir("/proc/self/task"))


def threads_with_one_and_then_200_sync(addresses: list[str], config: ServiceConfig) -> list[int]:
    counts = []
    with resilientrpc.ResilientChannel(addresses[:1], config=config) as first:
        assert eventually(lambda: all(s.healthy for s in first.endpoints()), 10.0)
        counts.append(threads_now())
        with resilientrpc.ResilientChannel(addresses[1:], config=config) as big:
            assert eventually(lambda: all(s.healthy for s in big.endpoints()), 30.0)
            time.sleep(1.0)  # heartbeats flowing on all 200
            counts.append(threads_now())
    return counts


def threads_with_one_and_then_200_aio(addresses: list[str], config: ServiceConfig) -> list[int]:
    """As the sync one, both channels on one event loop (an application's, in a thread)."""

    async def healthy(channel: resilientrpc.aio.ResilientChannel, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(s.healthy for s in channel.endpoints()):
            assert time.monotonic() < deadline, "endpoints never all healthy"
            await asyncio.sleep(0.01)

    async def measure() -> list[int]:
        counts = []
        async with resilientrpc.aio.ResilientChannel(addresses[:1], config=config) as first:
            await healthy(first, 10.0)
            counts.append(threads_now())
            async with resilientrpc.aio.ResilientChannel(addresses[1:], config=config) as big:
                await healthy(big, 30.0)
                await asyncio.sleep(1.0)
                counts.append(threads_now())
            # grpc.aio ends the connectivity watches of 200 just-closed channels that
            # carried streams only seconds later (see Supervisor._state_change); the
            # loop must still run then, or grpc.aio's poller thread is left behind.
            await asyncio.sleep(SETTLE)
        return counts

    loop = LoopThread("heartbeat-test-loop")
    try:
        return loop.run(measure())
    finally:
        loop.stop()
        gc.collect()  # grpc.aio stays bound to the loop of its live objects


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize(
    "measure",
    [threads_with_one_and_then_200_sync, threads_with_one_and_then_200_aio],
    ids=["sync", "aio"],
)
def test_two_hundred_watched_endpoints_add_at_most_four_threads(
    measure: Callable[[list[str], ServiceConfig], list[int]],
) -> None:
    """A channel watching 200 endpoints costs at most 4 threads, whatever it needs itself.

    A first channel of the same twin (one endpoint) stays open, so grpc's own threads
    are already running; the 200-endpoint channel then adds (sync) its loop and callback
    threads, and nothing per endpoint.
    """
    config = ServiceConfig(load_balancing=RoundRobin(), health_check=HealthCheckConfig())
    with many_ports(201) as addresses:
        with_one, with_many = measure(addresses, config)
    assert with_many - with_one <= 4, (with_one, with_many)
