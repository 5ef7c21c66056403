"""A burst of calls issued while the channel is still connecting spreads over every
backend that connects within the start-up grace, on both twins and for every shape.

The reported herd: 200 futures over 4 backends put 104-200 on one backend (the first to
connect), though the other three were READY within 0.1 ms. (grpcio's native round_robin
sends such a burst to one backend too.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import grpc
import pytest

import resilientrpc.aio
from resilientrpc import ResilientChannel
from resilientrpc.balancer import STARTUP_GRACE
from resilientrpc.testing import Backends, DelayProxy, echo_pb2, echo_pb2_grpc

Start = Callable[..., Backends]
STRATEGIES = ["round_robin", "least_request", "peak_ewma", "random", "weighted_round_robin"]
NAMES = ["b0", "b1", "b2", "b3"]
REQUEST = echo_pb2.EchoRequest(message="burst")


def _config(strategy: str) -> dict[str, object]:
    return {"loadBalancingConfig": [{strategy: {}}]}


def _assert_spread(counts: collections.Counter[str], total: int, strategy: str) -> None:
    assert sum(counts.values()) == total, counts
    assert set(counts) == set(NAMES), counts
    fair = total / len(NAMES)
    if strategy == "round_robin":  # rotation over all four from the first pick: exact
        assert set(counts.values()) == {fair}, counts
    else:
        assert min(counts.values()) >= fair * 0.4, counts


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sync_futures_at_construction_spread(backends: Start, strategy: str) -> None:
    group = backends(4, names=NAMES)
    with ResilientChannel(group.addresses, config=_config(strategy)) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        futures = [stub.Echo.future(REQUEST, timeout=10) for _ in range(200)]
        counts = collections.Counter(f.result().backend for f in futures)
    _assert_spread(counts, 200, strategy)


def test_sync_streams_at_construction_spread(backends: Start) -> None:
    group = backends(4, names=NAMES)
    with ResilientChannel(group.addresses, config=_config("round_robin")) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        request = echo_pb2.EchoRequest(message="s", count=1)
        streams = [stub.ServerStream(request, timeout=10) for _ in range(40)]
        counts = collections.Counter(next(iter(s)).backend for s in streams)
    _assert_spread(counts, 40, "round_robin")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_aio_gathered_calls_at_construction_spread(backends: Start, strategy: str) -> None:
    group = backends(4, names=NAMES)

    async def burst() -> collections.Counter[str]:
        async with resilientrpc.aio.ResilientChannel(
            group.addresses, config=_config(strategy)
        ) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            replies = await asyncio.gather(*(stub.Echo(REQUEST, timeout=10) for _ in range(120)))
        return collections.Counter(reply.backend for reply in replies)

    _assert_spread(asyncio.run(burst()), 120, strategy)


def test_a_backend_that_never_finishes_connecting_delays_start_by_the_grace_only(
    backends: Start,
) -> None:
    group = backends(2, names=["b0", "b1"])
    with DelayProxy(group[1].address, connect_delay=30) as stuck:  # CONNECTING for 30 s
        started = time.monotonic()
        with ResilientChannel([group[0].address, stuck.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            futures = [stub.Echo.future(REQUEST, timeout=10) for _ in range(10)]
            counts = collections.Counter(f.result().backend for f in futures)
            elapsed = time.monotonic() - started
    assert counts == {"b0": 10}
    assert elapsed < STARTUP_GRACE + 1.0, elapsed


def test_a_refused_backend_does_not_hold_start_up(backends: Start) -> None:
    group = backends(2, names=["b0", "dead"])
    group[1].stop()
    with ResilientChannel(group.addresses) as channel:
        ready = time.monotonic()
        grpc.channel_ready_future(channel).result(timeout=5)
        waited = time.monotonic() - ready
        assert channel.get_state() is grpc.ChannelConnectivity.READY
    assert waited < STARTUP_GRACE + 0.5, waited
