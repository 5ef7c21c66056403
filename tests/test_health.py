"""``resilientrpc.health``: stock Check/Watch semantics, plus a Watch that ticks every interval.

Every test runs a real grpc server on 127.0.0.1 (port 0) and talks to it with real stubs.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from resilientrpc.errors import ConfigError
from resilientrpc.health import (
    INTERVAL_METADATA,
    MIN_HEARTBEAT_INTERVAL,
    HeartbeatHealthServicer,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

#: Long enough that no heartbeat falls inside a test that looks at changes only.
QUIET = 60.0


class Served:
    """A running server with one Health servicer, and a stub on a channel to it."""

    def __init__(self, server: grpc.Server, executor: futures.ThreadPoolExecutor, port: int):
        self.server = server
        self.executor = executor
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = health_pb2_grpc.HealthStub(self.channel)

    def check(self, service: str) -> tuple[grpc.StatusCode, int | None]:
        try:
            response = self.stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError as error:
            return error.code(), None
        return grpc.StatusCode.OK, response.status

    def watch(self, service: str, timeout: float = 10.0) -> Any:
        return self.stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=timeout)


@contextmanager
def serve(servicer: Any, *, max_workers: int = 8) -> Iterator[Served]:
    executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="health-test")
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    served = Served(server, executor, port)
    try:
        yield served
    finally:
        served.channel.close()
        if isinstance(servicer, HeartbeatHealthServicer):
            servicer.close()
        server.stop(None).wait()
        executor.shutdown(wait=True)


def next_status(watch: Any) -> int:
    status: int = next(watch).status
    return status


def test_check_and_watch_match_the_stock_servicer() -> None:
    stock = health.HealthServicer()
    ours = HeartbeatHealthServicer(interval=QUIET)
    services = ["", "a.Service", "b.Service", "never.Set"]
    with serve(stock) as theirs, serve(ours) as mine:

        def both_check() -> None:
            for service in services:
                assert mine.check(service) == theirs.check(service), service

        def both_watch(service: str) -> tuple[Any, Any]:
            pair = theirs.watch(service), mine.watch(service)
            assert next_status(pair[0]) == next_status(pair[1]), service
            return pair

        both_check()  # "" SERVING, every other name NOT_FOUND
        assert mine.check("") == (grpc.StatusCode.OK, SERVING)
        assert mine.check("never.Set") == (grpc.StatusCode.NOT_FOUND, None)
        watches = {service: both_watch(service) for service in services}

        steps: list[tuple[str, Any]] = [
            ("a.Service", SERVING),
            ("b.Service", NOT_SERVING),
            ("a.Service", NOT_SERVING),
            ("", NOT_SERVING),
            ("b.Service", SERVICE_UNKNOWN),
            ("a.Service", NOT_SERVING),  # the same status again is sent again
        ]
        for service, status in steps:
            stock.set(service, status)
            ours.set(service, status)
            stock_watch, our_watch = watches[service]
            assert next_status(stock_watch) == next_status(our_watch) == status
            both_check()

        stock.enter_graceful_shutdown()
        ours.enter_graceful_shutdown()
        for service in ("", "a.Service", "b.Service"):
            stock_watch, our_watch = watches[service]
            assert next_status(stock_watch) == next_status(our_watch) == NOT_SERVING
        stock.set("a.Service", SERVING)  # ignored after graceful shutdown
        ours.set("a.Service", SERVING)
        stock.set("c.Service", SERVING)
        ours.set("c.Service", SERVING)
        both_check()
        assert mine.check("a.Service") == (grpc.StatusCode.OK, NOT_SERVING)
        assert mine.check("c.Service") == (grpc.StatusCode.NOT_FOUND, None)
        for service in ("never.Set", "c.Service"):
            both_watch(service)  # SERVICE_UNKNOWN on both
        for pair in watches.values():
            for watch in pair:
                watch.cancel()


def test_watch_sends_the_status_every_interval() -> None:
    interval = 0.1
    servicer = HeartbeatHealthServicer(interval=interval)
    servicer.set("svc", NOT_SERVING)
    with serve(servicer) as served:
        watch = served.watch("svc", timeout=5)
        started = time.monotonic()
        arrivals: list[float] = []
        statuses: list[int] = []
        try:
            for response in watch:
                now = time.monotonic() - started
                if now > 1.0:
                    break
                arrivals.append(now)
                statuses.append(response.status)
        finally:
            watch.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 8, arrivals
    assert max(gaps) <= 2 * interval, gaps
    assert set(statuses) == {NOT_SERVING}


def gaps_between_messages(served: Served, metadata: Any, count: int) -> list[float]:
    watch = served.stub.Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=10, metadata=metadata
    )
    arrivals = []
    try:
        for _response in watch:
            arrivals.append(time.monotonic())
            if len(arrivals) > count:
                break
    finally:
        watch.cancel()
    return [b - a for a, b in itertools.pairwise(arrivals[1:])]


@pytest.mark.parametrize(
    ("requested_ms", "tick"),
    [("200", 0.1), ("10", MIN_HEARTBEAT_INTERVAL), ("bogus", None)],
    ids=["half-of-200ms", "floored", "unreadable"],
)
def test_a_client_interval_in_the_metadata_sets_the_streams_tick(
    requested_ms: str, tick: float | None
) -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET if tick is not None else 0.3)
    with serve(servicer) as served:
        gaps = gaps_between_messages(served, ((INTERVAL_METADATA, requested_ms),), 4)
    expected = tick if tick is not None else 0.3
    assert all(expected * 0.8 <= gap <= expected + 0.5 for gap in gaps), gaps


def test_a_client_interval_longer_than_the_servicers_keeps_the_servicers() -> None:
    with serve(HeartbeatHealthServicer(interval=0.1)) as served:
        gaps = gaps_between_messages(served, ((INTERVAL_METADATA, "60000"),), 3)
    assert all(0.08 <= gap <= 0.6 for gap in gaps), gaps


def test_a_change_arrives_at_once() -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET)
    with serve(servicer) as served:
        watch = served.watch("")
        try:
            assert next_status(watch) == SERVING
            delays = []
            for status in [NOT_SERVING, SERVING] * 3:
                changed = time.monotonic()
                servicer.set("", status)
                assert next_status(watch) == status
                delays.append(time.monotonic() - changed)
        finally:
            watch.cancel()
    assert max(delays) < 0.05, delays


def test_cancelled_watches_free_their_server_threads() -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET)
    with serve(servicer, max_workers=2) as served:
        for _ in range(10):
            watch = served.watch("", timeout=3)
            assert next_status(watch) == SERVING  # the handler is running on a server thread
            watch.cancel()
        assert served.check("") == (grpc.StatusCode.OK, SERVING)


def test_graceful_shutdown_sends_not_serving_to_open_watches() -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET)
    servicer.set("svc", SERVING)
    with serve(servicer) as served:
        watches = [served.watch(""), served.watch("svc")]
        try:
            for watch in watches:
                assert next_status(watch) == SERVING
            started = time.monotonic()
            servicer.enter_graceful_shutdown()
            for watch in watches:
                assert next_status(watch) == NOT_SERVING
            assert time.monotonic() - started < 0.5
            servicer.set("svc", SERVING)
            assert served.check("svc") == (grpc.StatusCode.OK, NOT_SERVING)
        finally:
            for watch in watches:
                watch.cancel()


def test_close_ends_open_watches_after_a_pending_change() -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET)
    with serve(servicer) as served:
        watch = served.watch("")
        assert next_status(watch) == SERVING
        started = time.monotonic()
        servicer.enter_graceful_shutdown()
        servicer.close()
        assert [response.status for response in watch] == [NOT_SERVING]
        assert time.monotonic() - started < 1.0
        assert watch.code() is grpc.StatusCode.OK
        late = served.watch("")
        assert [response.status for response in late] == [NOT_SERVING]
        assert served.check("") == (grpc.StatusCode.OK, NOT_SERVING)


def test_server_stop_releases_watch_handlers() -> None:
    servicer = HeartbeatHealthServicer(interval=QUIET)
    executor = futures.ThreadPoolExecutor(2, thread_name_prefix="health-stop")
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert next_status(watch) == SERVING
        started = time.monotonic()
        server.stop(None).wait()
        done = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
        done.start()
        done.join(timeout=3)
        assert not done.is_alive(), "a Watch handler kept its server thread after stop"
        assert time.monotonic() - started < 3
        with pytest.raises(grpc.RpcError):
            next(watch)


@pytest.mark.parametrize("interval", [0, -1.0, math.nan, math.inf, True, "1"])
def test_interval_must_be_a_positive_number(interval: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        HeartbeatHealthServicer(interval=interval)
    assert raised.value.path == "interval"


def test_repr_and_interval() -> None:
    servicer = HeartbeatHealthServicer(interval=0.25)
    assert servicer.interval == 0.25
    assert repr(servicer) == "HeartbeatHealthServicer(interval=0.25)"
    assert HeartbeatHealthServicer().interval == 1.0
