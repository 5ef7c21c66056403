"""The failure-aware comparison of the power-of-two-choices strategies, pinned exactly.

Pure tests for ``make mutate`` (docs/mutation.md): hand-built endpoints, a hand-moved
clock, seeded randomness, the chooser called directly. Least request keeps the load
simple (calls in flight), so each test isolates the failure rule: the exact tolerance
boundary, the clock the ratios are decayed to, and equal failure ratios leaving the
choice to load. ``tests/test_failure_aware.py`` has the broader behaviour.
"""

from __future__ import annotations

import math
import random

import grpc
import pytest

from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.strategies import LeastRequestStrategy, PeakEwmaStrategy
from resilientrpc.strategies.p2c import FAILURE_TOLERANCE
from tests.fakes import Clock, ready_endpoints

#: (choice_count, endpoints): both of two (the two-way comparison) and three of three (the
#: filtered sample): every pick compares every endpoint.
SHAPES = [(2, 2), (3, 3)]


def with_ratio(endpoint: Endpoint, clock: Clock, ratio: float) -> None:
    """Give ``endpoint`` a failure ratio of exactly ``ratio`` at ``clock.now``.

    One failure stamps the ratio at now; ``failure_level`` is the ratio as of that stamp,
    so setting it pins the value a pick at the same instant reads (exp(0) is exactly 1).
    """
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.001))
    endpoint.failure_level = ratio


def busy(endpoint: Endpoint, calls: int) -> None:
    for _ in range(calls):
        endpoint.begin()


def chosen(choice_count: int, endpoints: tuple[Endpoint, ...], clock: Clock) -> set[Endpoint]:
    strategy = LeastRequestStrategy(choice_count=choice_count, rng=random.Random(7), clock=clock)
    choose = strategy.chooser(endpoints, endpoints)
    return {endpoint for endpoint in (choose(None) for _ in range(60)) if endpoint is not None}


@pytest.mark.parametrize(("choice_count", "count"), SHAPES)
def test_a_ratio_exactly_the_tolerance_above_does_not_lose(choice_count: int, count: int) -> None:
    clock = Clock(now=50.0)
    *clean, failing = ready_endpoints(count, clock)
    with_ratio(failing, clock, FAILURE_TOLERANCE)  # exactly 0.1 above the others' 0
    for endpoint in clean:
        busy(endpoint, 2)
    assert failing.failure_ratio() == FAILURE_TOLERANCE
    assert chosen(choice_count, (*clean, failing), clock) == {failing}  # load decides


@pytest.mark.parametrize(("choice_count", "count"), SHAPES)
def test_a_ratio_just_over_the_tolerance_above_loses(choice_count: int, count: int) -> None:
    clock = Clock(now=50.0)
    *clean, failing = ready_endpoints(count, clock)
    with_ratio(failing, clock, math.nextafter(FAILURE_TOLERANCE, 1.0))
    for endpoint in clean:
        busy(endpoint, 2)
    got = chosen(choice_count, (*clean, failing), clock)
    assert failing not in got and got


def test_more_choices_measure_the_tolerance_from_the_lowest_ratio() -> None:
    # Everyone fails some; only differences count. 0.45 - 0.3 > 0.1 drops out, 0.35 stays.
    clock = Clock(now=50.0)
    endpoints = ready_endpoints(3, clock)
    for endpoint, ratio in zip(endpoints, (0.3, 0.35, 0.45), strict=True):
        with_ratio(endpoint, clock, ratio)
    busy(endpoints[0], 2)
    assert chosen(3, endpoints, clock) == {endpoints[1]}


def test_equal_failure_ratios_leave_the_choice_to_load() -> None:
    clock = Clock(now=50.0)
    idle, loaded = ready_endpoints(2, clock)
    for endpoint in (idle, loaded):
        with_ratio(endpoint, clock, 0.5)
    busy(loaded, 1)
    assert chosen(2, (idle, loaded), clock) == {idle}
    assert chosen(2, (loaded, idle), clock) == {idle}


@pytest.mark.parametrize("strategy_class", [LeastRequestStrategy, PeakEwmaStrategy])
@pytest.mark.parametrize(("choice_count", "count"), SHAPES)
def test_failure_ratios_are_decayed_to_the_clock_of_the_pick(
    strategy_class: type[LeastRequestStrategy], choice_count: int, count: int
) -> None:
    # The endpoints' clock stopped where the failures happened; the strategy's clock is
    # 100 s (ten time constants) later: the failures are history at the pick.
    recorded = Clock(now=50.0)
    *clean, failing = ready_endpoints(count, recorded)
    for _ in range(20):
        failing.begin()
        failing.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.001))
    for endpoint in clean:
        endpoint.begin()
        endpoint.record(Outcome(grpc.StatusCode.OK, 0.001))
        busy(endpoint, 3)
    assert failing.failure_ratio() > 0.8
    pick_clock = Clock(now=150.0)
    strategy = strategy_class(choice_count=choice_count, rng=random.Random(7), clock=pick_clock)
    choose = strategy.chooser((*clean, failing), ())
    assert {choose(None) for _ in range(60)} == {failing}
