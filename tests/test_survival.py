"""Background work survives what comes from outside: extreme load reports, extreme
weights, a strategy that raises, one endpoint whose connection cannot be opened.

The reported failure: one backend's finite but extreme ORCA report overflowed a weight to
inf and then NaN in the scheduler, the weight refresh and the connectivity watches died,
and when another backend then died it stayed in the picker: a third of all calls failed
UNAVAILABLE, forever.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from resilientrpc._methods import EndpointTransport
from resilientrpc.balancer import Balancer
from resilientrpc.endpoint import Endpoint, EndpointStatus
from resilientrpc.load_report import (
    MAX_LOAD_FIGURE,
    LoadReport,
    encode_load_report,
    parse_load_report,
)
from resilientrpc.options import ChannelOptions
from resilientrpc.strategies import RoundRobinStrategy, WeightedRoundRobinStrategy
from resilientrpc.strategies.weighted import MAX_RATIO, MAX_WEIGHT, StrideScheduler, orca_weight
from resilientrpc.supervisor import Supervisor
from resilientrpc.targets import parse_targets
from resilientrpc.testing import Backend, Backends
from tests.twins import ChannelHandle, Twin
from tests.waiting import eventually

Open = Callable[..., ChannelHandle]
Start = Callable[..., Backends]

EXTREME = LoadReport(rps_fractional=1e300, cpu_utilization=1e-300)


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    assert eventually(condition, timeout), "timed out"


def _available(handle: ChannelHandle) -> set[str]:
    return {s.address for s in handle.endpoints() if s.available}


def _balancer(handle: ChannelHandle) -> Balancer:
    balancer: Balancer = handle.channel._balancer
    return balancer


def _failures_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "background task" in r.getMessage()
    ]


# -- numbers from servers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.inf, 0.0),
        (-math.inf, 0.0),
        (math.nan, 0.0),
        (-3.0, 0.0),
        (1e300, MAX_LOAD_FIGURE),
        (0.5, 0.5),
    ],
)
def test_every_reported_figure_is_checked_where_it_enters(value: float, expected: float) -> None:
    sent = LoadReport(
        cpu_utilization=value,
        mem_utilization=value,
        application_utilization=value,
        rps_fractional=value,
        eps=value,
    )
    got = parse_load_report(list(encode_load_report(sent)))
    assert got is not None
    figures = [
        got.cpu_utilization,
        got.mem_utilization,
        got.application_utilization,
        got.rps_fractional,
        got.eps,
    ]
    assert figures == [expected] * 5


@pytest.mark.parametrize(
    ("qps", "eps", "utilization", "penalty", "expected"),
    [
        (1e300, 0.0, 1e-300, 1.0, MAX_WEIGHT),  # overflows to inf without the clamp
        (1e9, 1e9, 1e-300, 1e300, 1e9 / 1e300),
        (math.nan, 0.0, 0.5, 1.0, 0.0),
        (100.0, 0.0, math.inf, 1.0, 0.0),
        (100.0, 0.0, 0.5, 1.0, 200.0),
    ],
)
def test_orca_weights_stay_finite(
    qps: float, eps: float, utilization: float, penalty: float, expected: float
) -> None:
    weight = orca_weight(qps, eps, utilization, penalty)
    assert math.isfinite(weight)
    assert weight == pytest.approx(expected)


def test_the_scheduler_survives_any_weights() -> None:
    scheduler = StrideScheduler([1e308, math.inf, math.nan, 1.0, -5.0, 0.0])
    counts = collections.Counter(scheduler.pick() for _ in range(6000))
    assert set(counts) == set(range(6))  # nothing raised, nobody starved
    # The huge one is held to MAX_RATIO x the mean; the unknown ones weigh alike.
    assert counts[0] / 6000 <= MAX_RATIO / 6
    assert max(counts[i] for i in range(1, 6)) - min(counts[i] for i in range(1, 6)) <= 2


def test_static_weights_of_1e308_keep_working() -> None:
    weights = {"a:1": 1e308, "b:1": 1e308, "c:1": 1.0}
    strategy = WeightedRoundRobinStrategy(weights=weights)
    endpoints = tuple(Endpoint(a, static_weight=strategy.static_weight(a)) for a in weights)
    for endpoint in endpoints:
        endpoint.state = grpc.ChannelConnectivity.READY
    choose = strategy.chooser(endpoints, endpoints)
    picks = [choose(None) for _ in range(2100)]
    counts = collections.Counter(e.address for e in picks if e is not None)
    assert sum(counts.values()) == 2100
    assert counts["a:1"] == pytest.approx(counts["b:1"], rel=0.1)
    assert counts["c:1"] > 0


def test_extreme_load_report_then_a_dead_backend_loses_no_calls(
    twin: Twin, open_channel: Open, backends: Start, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(3, names=["wild", "steady", "doomed"])
    group[0].configure(load_report=EXTREME)
    for backend in group[1:]:
        backend.configure(load_report=LoadReport(cpu_utilization=0.5, rps_fractional=100))
    config = {
        "loadBalancingConfig": [
            {"weighted_round_robin": {"blackoutPeriod": "0s", "weightUpdatePeriod": "0.1s"}}
        ]
    }
    handle = open_channel(group.addresses, config=config)
    handle.wait_ready(5)
    _wait(lambda: len(_available(handle)) == 3)
    for _ in range(60):  # every backend reports
        handle.echo()

    def weighed(statuses: list[EndpointStatus]) -> bool:
        return all(s.weight > 1.0 for s in statuses)

    _wait(lambda: weighed(handle.endpoints()))
    assert all(math.isfinite(s.weight) for s in handle.endpoints())
    assert max(s.weight for s in handle.endpoints()) == MAX_WEIGHT
    group[2].stop()
    _wait(lambda: group[2].address not in _available(handle))
    codes: collections.Counter[str] = collections.Counter()
    for _ in range(90):
        try:
            codes[handle.echo(timeout=2).backend] += 1
        except grpc.RpcError as error:
            codes[error.code().name] += 1
    assert set(codes) <= {"wild", "steady"}, codes
    assert _failures_logged(caplog) == []


# -- a strategy that raises -----------------------------------------------------------


def test_a_raising_strategy_falls_back_to_the_endpoints_available_now(
    twin: Twin, open_channel: Open, backends: Start, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(3, names=["b0", "b1", "b2"])
    handle = open_channel(group.addresses)
    _wait(lambda: len(_available(handle)) == 3)
    strategy: Any = _balancer(handle).strategy

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("a strategy bug")

    strategy.chooser = broken
    strategy.refresh = broken
    with caplog.at_level(logging.ERROR, logger="resilientrpc"):
        group[1].stop()
        _wait(lambda: group[1].address not in _available(handle))
        seen = collections.Counter(handle.echo(timeout=2).backend for _ in range(60))
        assert set(seen) == {"b0", "b2"}  # round robin over the living
        assert abs(seen["b0"] - seen["b2"]) <= 2, seen
        # The watches are still alive: a second death is noticed too.
        group[2].stop()
        _wait(lambda: group[2].address not in _available(handle))
        seen = collections.Counter(handle.echo(timeout=2).backend for _ in range(20))
        assert seen == {"b0": 20}
    failures = [r for r in caplog.records if "strategy round_robin failed" in r.getMessage()]
    assert len(failures) == 1  # each distinct failure logged once, not per rebuild
    assert _failures_logged(caplog) == []


# -- one endpoint's connection cannot be opened ---------------------------------------


def test_one_endpoint_failing_to_open_leaves_the_others_working(
    backend: Callable[..., Backend],
) -> None:
    asyncio.run(_one_endpoint_failing_to_open(backend))


async def _one_endpoint_failing_to_open(backend: Callable[..., Backend]) -> None:
    good = backend("good")
    options = ChannelOptions.build(None, None)
    bad_address = "127.0.0.1:9"

    def connect(endpoint: Endpoint) -> grpc.aio.Channel:
        if endpoint.address == bad_address:
            raise RuntimeError("no connection for you")
        channel = options.aio_channel(endpoint.address)
        endpoint.transport = EndpointTransport(channel)
        return channel

    async def disconnect(endpoint: Endpoint, control: grpc.aio.Channel) -> None:
        await control.close()

    balancer = Balancer(RoundRobinStrategy())
    supervisor = Supervisor(
        balancer,
        parse_targets([bad_address, good.address]),
        connect=connect,
        disconnect=disconnect,
    )
    supervisor.start()
    try:
        for _ in range(200):
            if balancer.picker.state is grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.01)
        statuses = {s.address: s for s in balancer.statuses()}
        assert statuses[good.address].available
        assert statuses[bad_address].state == "TRANSIENT_FAILURE"
        assert "no connection for you" in (statuses[bad_address].last_error or "")
    finally:
        await supervisor.aclose()
