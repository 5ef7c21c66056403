"""Failures are not fast: the load-aware strategies weigh an endpoint's recent failures
before its load, so a backend that fails at once does not look like the best one.

Pure tests on hand-built endpoints; ``tests/test_fast_failures.py`` has the scenario
against real backends."""

from __future__ import annotations

import random

import grpc
import pytest

from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.strategies import LeastRequestStrategy, PeakEwmaStrategy
from resilientrpc.strategies.p2c import FAILURE_TOLERANCE
from tests.fakes import Clock, ready_endpoints

STRATEGIES = [LeastRequestStrategy, PeakEwmaStrategy]


def fail(endpoint: Endpoint, times: int, clock: Clock) -> None:
    for _ in range(times):
        clock.now += 0.001
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.0001))


def succeed(endpoint: Endpoint, times: int, clock: Clock, latency: float = 0.005) -> None:
    for _ in range(times):
        clock.now += 0.001
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode.OK, latency))


def busy_healthy_and_failing(clock: Clock) -> tuple[Endpoint, Endpoint]:
    """A healthy endpoint with five calls in flight, and one that failed 20 times."""
    healthy, failing = ready_endpoints(2, clock)
    succeed(healthy, 5, clock)
    fail(failing, 20, clock)
    for _ in range(5):
        healthy.begin()
    return healthy, failing


@pytest.mark.parametrize("strategy_class", STRATEGIES)
def test_a_failing_endpoint_loses_to_a_busier_healthy_one(
    strategy_class: type[LeastRequestStrategy],
) -> None:
    clock = Clock()
    healthy, failing = busy_healthy_and_failing(clock)
    choose = strategy_class(rng=random.Random(3), clock=clock).chooser((healthy, failing), ())
    assert {choose(None) for _ in range(50)} == {healthy}


@pytest.mark.parametrize("strategy_class", STRATEGIES)
def test_within_the_tolerance_load_decides(strategy_class: type[LeastRequestStrategy]) -> None:
    clock = Clock()
    a, b = ready_endpoints(2, clock)
    succeed(a, 5, clock)
    succeed(b, 5, clock)
    fail(b, 1, clock)  # one failure: ratio 0.1, not more than the tolerance above a's 0
    assert b.failure_ratio() <= FAILURE_TOLERANCE + 1e-9
    for _ in range(3):
        a.begin()
    choose = strategy_class(rng=random.Random(3), clock=clock).chooser((a, b), ())
    assert {choose(None) for _ in range(50)} == {b}


def test_with_no_failures_anywhere_the_clock_is_not_read_by_least_request() -> None:
    clock = Clock()
    endpoints = ready_endpoints(4, clock)
    choose = LeastRequestStrategy(rng=random.Random(1), clock=clock).chooser(endpoints, ())
    reads = clock.reads
    for _ in range(100):
        choose(None)
    assert clock.reads == reads


@pytest.mark.parametrize("strategy_class", STRATEGIES)
def test_more_choices_drop_the_failing_before_comparing_load(
    strategy_class: type[LeastRequestStrategy],
) -> None:
    clock = Clock()
    endpoints = ready_endpoints(4, clock)
    for endpoint in endpoints:
        succeed(endpoint, 3, clock)
    fail(endpoints[0], 20, clock)
    fail(endpoints[1], 20, clock)
    for endpoint in endpoints[2:]:
        for _ in range(4):
            endpoint.begin()
    choose = strategy_class(choice_count=4, rng=random.Random(2), clock=clock).chooser(
        endpoints, ()
    )
    assert {choose(None) for _ in range(50)} <= set(endpoints[2:])


@pytest.mark.parametrize("strategy_class", STRATEGIES)
def test_a_failed_endpoint_is_tried_again_once_its_ratio_decays(
    strategy_class: type[LeastRequestStrategy],
) -> None:
    clock = Clock()
    healthy, failing = busy_healthy_and_failing(clock)
    choose = strategy_class(rng=random.Random(3), clock=clock).chooser((healthy, failing), ())
    clock.now += 60.0  # six time constants: the failures are history
    assert failing in {choose(None) for _ in range(50)}
