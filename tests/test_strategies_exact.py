"""Strategies pinned down exactly: each documented rule, called directly (no balancer).

These are the tests `make mutate` relies on for ``resilientrpc/strategies`` (see
docs/mutation.md): seeded ``random.Random``, a hand-moved clock, hand-built endpoints.
The strategy is called directly, because a balancer hides a failing strategy behind its
round-robin fallback.
"""

from __future__ import annotations

import collections
import math
import random
from typing import Any

import grpc
import pytest

from resilientrpc.config import (
    LeastRequest,
    LoadBalancingPolicy,
    PeakEwma,
    PickFirst,
    Random,
    RingHash,
    RoundRobin,
    WeightedRoundRobin,
)
from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.load_report import LoadReport
from resilientrpc.strategies import (
    LeastRequestStrategy,
    PeakEwmaStrategy,
    PickFirstStrategy,
    RandomStrategy,
    RingHashStrategy,
    RoundRobinStrategy,
    Strategy,
    WeightedRoundRobinStrategy,
    build_strategy,
)
from resilientrpc.strategies.base import two_distinct
from resilientrpc.strategies.ring_hash import Ring, hash_key
from resilientrpc.strategies.weighted import MAX_WEIGHT, StrideScheduler, orca_weight
from tests.fakes import Clock, ready_endpoints

OK = grpc.StatusCode.OK
SEEDS = range(12)


def picks(strategy: Strategy, ready: tuple[Endpoint, ...], count: int) -> list[int]:
    """Indexes into ``ready`` of ``count`` picks of one chooser (all members ready)."""
    choose = strategy.chooser(ready, ready)
    chosen = [choose(None) for _ in range(count)]
    return [ready.index(endpoint) for endpoint in chosen if endpoint is not None]


# -- building strategies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "kind", "fields"),
    [
        (PickFirst(shuffle_address_list=True), PickFirstStrategy, {"shuffle": True}),
        (RoundRobin(), RoundRobinStrategy, {}),
        (Random(), RandomStrategy, {}),
        (LeastRequest(choice_count=3), LeastRequestStrategy, {"choice_count": 3}),
        (PeakEwma(decay=3.0, choice_count=4), PeakEwmaStrategy, {"decay": 3.0, "choice_count": 4}),
        (
            WeightedRoundRobin(
                weights={"127.0.0.1:1": 2.0},
                blackout_period=3.0,
                weight_expiration_period=40.0,
                error_utilization_penalty=0.5,
            ),
            WeightedRoundRobinStrategy,
            {
                "weights": {"127.0.0.1:1": 2.0},
                "blackout_period": 3.0,
                "weight_expiration_period": 40.0,
                "error_utilization_penalty": 0.5,
            },
        ),
        (
            WeightedRoundRobin(weight_update_period=2.0),
            WeightedRoundRobinStrategy,
            {"weights": None, "refresh_period": 2.0},
        ),
        (
            RingHash(request_hash_header="x-key", min_ring_size=16, max_ring_size=64),
            RingHashStrategy,
            {"header": "x-key", "min_ring_size": 16, "max_ring_size": 64},
        ),
    ],
)
def test_build_strategy_passes_every_field_and_both_seams(
    policy: LoadBalancingPolicy, kind: type[Strategy], fields: dict[str, Any]
) -> None:
    rng, clock = random.Random(5), Clock()
    strategy = build_strategy(policy, rng=rng, clock=clock)
    assert type(strategy) is kind
    assert strategy.rng is rng and strategy.clock is clock
    assert {name: getattr(strategy, name) for name in fields} == fields


def test_build_strategy_refuses_what_is_not_a_policy() -> None:
    with pytest.raises(TypeError, match="not a load-balancing policy: 'round_robin'"):
        build_strategy("round_robin")  # type: ignore[arg-type]  # the wrong type is the point


def test_strategy_defaults_are_the_grpc_ones() -> None:
    assert LeastRequestStrategy().choice_count == 2
    assert PeakEwmaStrategy().choice_count == 2
    assert PickFirstStrategy().shuffle is False
    ring = RingHashStrategy(request_hash_header="k")
    assert (ring.min_ring_size, ring.max_ring_size) == (1024, 8_388_608)
    wrr = WeightedRoundRobinStrategy()
    assert (wrr.blackout_period, wrr.weight_expiration_period) == (10.0, 180.0)
    assert (wrr.refresh_period, wrr.error_utilization_penalty) == (1.0, 1.0)
    assert isinstance(RoundRobinStrategy().rng, random.Random)


# -- power of two choices ---------------------------------------------------------------


def test_two_distinct_draws_every_ordered_pair_alike() -> None:
    rng = random.Random(2)
    draws = collections.Counter(two_distinct(rng, 3) for _ in range(6000))
    assert set(draws) == {(i, j) for i in range(3) for j in range(3) if i != j}
    assert all(900 <= n <= 1100 for n in draws.values())


@pytest.mark.parametrize("kind", [LeastRequestStrategy, PeakEwmaStrategy])
def test_one_ready_endpoint_takes_every_call(kind: type[LeastRequestStrategy]) -> None:
    (only,) = ready_endpoints(1)
    assert picks(kind(rng=random.Random(1)), (only,), 5) == [0] * 5


def test_least_request_of_two_samples_with_two_distinct_and_ties_go_to_the_first() -> None:
    ready = ready_endpoints(4)
    for endpoint, outstanding in zip(ready, (1, 1, 0, 2), strict=True):
        endpoint.outstanding = outstanding
    got = picks(LeastRequestStrategy(rng=random.Random(9)), ready, 200)
    replay = random.Random(9)
    expected = []
    for _ in range(200):
        i, j = two_distinct(replay, 4)
        expected.append(i if ready[i].outstanding <= ready[j].outstanding else j)
    assert got == expected


@pytest.mark.parametrize("kind", [LeastRequestStrategy, PeakEwmaStrategy])
@pytest.mark.parametrize(("choice_count", "count"), [(3, 3), (5, 4)])
def test_sampling_every_endpoint_always_finds_the_least_loaded(
    kind: type[LeastRequestStrategy], choice_count: int, count: int
) -> None:
    ready = ready_endpoints(count)
    for endpoint, outstanding in zip(ready, (2, 1, 0, 3), strict=False):
        endpoint.outstanding = outstanding
    strategy = kind(choice_count=choice_count, rng=random.Random(4))
    assert picks(strategy, ready, 50) == [2] * 50


@pytest.mark.parametrize("kind", [LeastRequestStrategy, PeakEwmaStrategy])
def test_three_of_four_skips_the_busiest_and_finds_the_idlest_three_times_in_four(
    kind: type[LeastRequestStrategy],
) -> None:
    ready = ready_endpoints(4)
    for endpoint, outstanding in zip(ready, (2, 1, 0, 3), strict=True):
        endpoint.outstanding = outstanding
    counts = collections.Counter(picks(kind(choice_count=3, rng=random.Random(4)), ready, 4000))
    assert counts[3] == 0 and counts[0] == 0  # the two busiest: never the least of three
    assert counts[2] == pytest.approx(3000, rel=0.05)
    assert counts[1] == pytest.approx(1000, rel=0.15)


@pytest.mark.parametrize("choice_count", [2, 3])
def test_peak_ewma_decays_estimates_to_the_clock_of_the_pick(choice_count: int) -> None:
    clock = Clock(now=0.0)
    ready = tuple(Endpoint(f"127.0.0.1:{10000 + i}", decay=10.0, clock=clock) for i in range(3))
    for endpoint, latency in zip(ready, (1.0, 0.1, 0.2), strict=True):
        endpoint.state = grpc.ChannelConnectivity.READY
        endpoint.begin()
        endpoint.record(Outcome(OK, latency))
        clock.now = 100.0  # the first was measured long ago: 1 s decayed to ~45 us
    strategy = PeakEwmaStrategy(choice_count=choice_count, rng=random.Random(1), clock=clock)
    got = picks(strategy, ready, 30)  # 0 beats both now; undecayed, it would lose to both
    assert 0 in got and 2 not in got


@pytest.mark.parametrize(("choice_count", "count"), [(2, 2), (2, 3), (3, 4)])
def test_clock_read_once_per_pick_by_peak_ewma_never_by_least_request(
    choice_count: int, count: int
) -> None:
    ready = ready_endpoints(count)
    timed, untimed = Clock(), Clock()
    picks(PeakEwmaStrategy(choice_count=choice_count, clock=timed), ready, 10)
    picks(LeastRequestStrategy(choice_count=choice_count, clock=untimed), ready, 10)
    assert (timed.reads, untimed.reads) == (10, 0)


# -- pick first, round robin, random ----------------------------------------------------


def test_pick_first_without_shuffle_keeps_target_order_whatever_the_seed() -> None:
    ready = ready_endpoints(4)
    assert {picks(PickFirstStrategy(rng=random.Random(s)), ready, 1)[0] for s in SEEDS} == {0}


def test_pick_first_shuffle_spreads_clients_and_each_sticks_to_its_choice() -> None:
    ready = ready_endpoints(4)
    firsts = set()
    for seed in SEEDS:
        strategy = PickFirstStrategy(shuffle=True, rng=random.Random(seed))
        first = picks(strategy, ready, 3)
        assert first == picks(strategy, ready, 3) == first[:1] * 3
        firsts.add(first[0])
    assert len(firsts) >= 3


def test_pick_first_ranks_newcomers_after_the_endpoints_that_stay() -> None:
    a, b, c = ready_endpoints(3)
    strategy = PickFirstStrategy()
    assert strategy.chooser((a, b), (a, b))(None) is a
    assert strategy.chooser((c, a, b), (c, a, b))(None) is a  # c came later
    assert strategy.chooser((c, b), (c, b))(None) is b  # a left: forgotten
    assert strategy.chooser((a, b, c), (a, b, c))(None) is b  # a is a newcomer now


@pytest.mark.parametrize("seed", SEEDS)
def test_round_robin_cycles_from_a_start_drawn_from_the_rng(seed: int) -> None:
    ready = ready_endpoints(5)
    start = random.Random(seed).randrange(5)
    assert picks(RoundRobinStrategy(rng=random.Random(seed)), ready, 12) == [
        (start + i) % 5 for i in range(12)
    ]


def test_random_draws_each_pick_from_the_rng() -> None:
    ready = ready_endpoints(5)
    replay = random.Random(3)
    got = picks(RandomStrategy(rng=random.Random(3)), ready, 1000)
    assert got == [replay.randrange(5) for _ in range(1000)]
    assert all(170 <= n <= 230 for n in collections.Counter(got).values())


# -- weighted round robin ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("qps", "eps", "utilization", "expected"),
    [
        (100.0, 10.0, 0.0, 0.0),  # no utilization reported: no weight, whatever the errors
        (0.0, 10.0, 0.5, 0.0),
        (100.0, -50.0, 0.5, 0.0),  # the denominator is zero
        (100.0, -100.0, 0.5, 0.0),  # negative
        (100.0, math.nan, 0.5, 0.0),
        (1.0, 0.0, 2.0, 0.5),  # below 1 is a weight too
        (1e300, 0.0, 1e-300, MAX_WEIGHT),
    ],
)
def test_orca_weight_is_positive_and_finite_or_zero(
    qps: float, eps: float, utilization: float, expected: float
) -> None:
    assert orca_weight(qps, eps, utilization, 1.0) == expected


def test_stride_schedule_follows_the_documented_formula() -> None:
    # Weights 1 x 7 and 10: the heavy one is due every generation, the light ones in
    # turn, phase-shifted by i * SCALE // 8 so they do not bunch up.
    scheduler = StrideScheduler([1.0] * 7 + [10.0])
    assert [scheduler.pick() for _ in range(16)] == [7, 7, 6, 7, 5, 7, 4, 7, 7, 3, 7, 2, 7, 1, 7, 0]


def test_stride_schedule_is_smooth() -> None:
    scheduler = StrideScheduler([1.0] * 7 + [10.0])
    sequence = [scheduler.pick() for _ in range(2000)]
    longest = max(len(run) for run in "".join("x" if i == 7 else " " for i in sequence).split())
    assert longest <= 3


def test_stride_schedule_starts_at_next_start() -> None:
    assert [StrideScheduler([1.0, 1.0, 1.0]).pick() for _ in range(2)] == [0, 0]
    scheduler = StrideScheduler([1.0, 1.0, 1.0], next_start=2)
    assert [scheduler.pick() for _ in range(4)] == [2, 0, 1, 2]


def test_stride_scheduler_counts_an_unknown_weight_as_one() -> None:
    scheduler = StrideScheduler([math.nan, 2.0])
    counts = collections.Counter(scheduler.pick() for _ in range(3000))
    assert counts[0] == pytest.approx(1000, abs=5)


def _shares(weights: list[float], count: int = 6000) -> list[float]:
    ready = ready_endpoints(len(weights))
    for endpoint, weight in zip(ready, weights, strict=True):
        endpoint.weight = weight
    counts = collections.Counter(picks(WeightedRoundRobinStrategy(), ready, count))
    return [counts[i] / count for i in range(len(weights))]


@pytest.mark.parametrize(
    ("weights", "usable"),
    [
        ([math.nan, 1.0, 3.0], [2.0, 1.0, 3.0]),  # unknown: the mean of the known
        ([0.0, 2.0, 4.0], [3.0, 2.0, 4.0]),
        ([0.5, 2.0, 4.0, 0.0], [0.5, 2.0, 4.0, 6.5 / 3]),
        ([1.0, 3.0, -1.0], [1.0, 3.0, 2.0]),
        ([5.0, 0.0, 0.0], [1.0, 1.0, 1.0]),  # fewer than two known: all alike
    ],
)
def test_weighted_round_robin_shares(weights: list[float], usable: list[float]) -> None:
    assert _shares(weights) == pytest.approx([w / sum(usable) for w in usable], abs=0.005)


@pytest.mark.parametrize("seed", [*SEEDS, 95])  # 95: randrange(192) != randrange(195)
def test_weighted_chooser_starts_the_schedule_at_a_random_generation(seed: int) -> None:
    ready = ready_endpoints(3)
    for endpoint, weight in zip(ready, (1.0, 2.0, 3.0), strict=True):
        endpoint.weight = weight
    scheduler = StrideScheduler([1.0, 2.0, 3.0], random.Random(seed).randrange(3 * 64))
    expected = [scheduler.pick() for _ in range(20)]
    assert picks(WeightedRoundRobinStrategy(rng=random.Random(seed)), ready, 20) == expected


def test_static_weights_and_report_weights_are_exclusive() -> None:
    static = WeightedRoundRobinStrategy(weights={"127.0.0.1:1": 3.0})
    assert (static.static_weight("127.0.0.1:1"), static.static_weight("127.0.0.1:2")) == (3.0, 1.0)
    assert (static.uses_load_reports, static.refresh_period) == (False, None)
    reported = WeightedRoundRobinStrategy(weight_update_period=0.01)
    assert reported.static_weight("127.0.0.1:1") is None
    assert (reported.uses_load_reports, reported.refresh_period) == (True, 0.1)


def _report(endpoint: Endpoint, cpu: float = 0.5) -> None:
    endpoint.begin()
    endpoint.record(Outcome(OK, 0.001, LoadReport(cpu_utilization=cpu, rps_fractional=100)))


def test_report_weights_blackout_expiry_and_restart() -> None:
    clock = Clock()
    (endpoint,) = ready_endpoints(1, clock)
    strategy = WeightedRoundRobinStrategy(
        blackout_period=10.0, weight_expiration_period=60.0, clock=clock
    )
    strategy.refresh((endpoint,))
    assert endpoint.weight == 0.0  # no report yet
    _report(endpoint)
    clock.now += 10.0  # exactly the blackout: over
    strategy.refresh((endpoint,))
    assert endpoint.weight == 200.0
    clock.now += 50.0  # exactly the expiration after the last report: forgotten
    strategy.refresh((endpoint,))
    assert endpoint.weight == 0.0
    _report(endpoint)  # reports again: a new blackout from now
    clock.now += 5.0
    strategy.refresh((endpoint,))
    assert endpoint.weight == 0.0
    clock.now += 5.0
    strategy.refresh((endpoint,))
    assert endpoint.weight == 200.0


@pytest.mark.parametrize("blackout", [0.0, -1.0])
def test_report_weights_without_blackout_count_at_once(blackout: float) -> None:
    clock = Clock()
    (endpoint,) = ready_endpoints(1, clock)
    _report(endpoint)
    WeightedRoundRobinStrategy(blackout_period=blackout, clock=clock).refresh((endpoint,))
    assert endpoint.weight == 200.0


def test_static_weights_are_not_refreshed() -> None:
    (endpoint,) = ready_endpoints(1)
    endpoint.weight = 3.0
    WeightedRoundRobinStrategy(weights={endpoint.address: 3.0}).refresh((endpoint,))
    assert endpoint.weight == 3.0


# -- ring hash --------------------------------------------------------------------------


def test_hash_key_is_a_stable_64_bit_blake2b() -> None:
    assert hash_key("user-1") == hash_key(b"user-1") == 0x9AAC_5A86_21EA_E188
    assert 0 <= hash_key("") < 2**64


def test_ring_needs_one_weight_per_member() -> None:
    with pytest.raises(ValueError, match="zip"):
        Ring(ready_endpoints(2), [1.0], 1.0)


def test_ring_gives_each_member_at_least_one_point_and_more_by_weight() -> None:
    members = ready_endpoints(3)
    assert len(Ring(members, [1.0, 1.0, 1.0], 0.001).points) == 3
    assert collections.Counter(Ring(members, [1.0, 2.0, 3.0], 100.0).owners) == {
        0: 100,
        1: 200,
        2: 300,
    }


def test_ring_owner_order_is_the_first_point_at_or_after_the_key() -> None:
    ring = Ring(ready_endpoints(3), [1.0, 1.0, 1.0], 4.0)
    assert ring.owner_order(ring.points[5]) == 5
    assert ring.owner_order(ring.points[5] + 1) == 6
    assert ring.owner_order(ring.points[-1] + 1) == 0  # wraps
    assert ring.owner_order(0) == 0


def test_ring_hash_walks_clockwise_past_endpoints_that_are_down() -> None:
    members = ready_endpoints(4)
    strategy = RingHashStrategy(request_hash_header="x-key")
    ring = strategy.ring(members)
    down = members[0]
    choose = strategy.chooser(members[1:], members)
    size = len(ring.owners)
    for key in (f"k{i}" for i in range(300)):
        position = ring.owner_order(hash_key(key))
        while members[ring.owners[position % size]] is down:
            position += 1
        assert choose([("other", "x"), ("x-key", key)]) is members[ring.owners[position % size]]


def test_ring_hash_finds_nothing_when_nothing_is_ready() -> None:
    members = ready_endpoints(2)
    assert RingHashStrategy(request_hash_header="x-key").chooser((), members)(None) is None


def test_ring_hash_without_the_header_spreads_evenly() -> None:
    members = ready_endpoints(3)
    choose = RingHashStrategy(request_hash_header="x-key", rng=random.Random(1)).chooser(
        members, members
    )
    counts = collections.Counter(choose([("other", "v")]) for _ in range(3000))
    assert all(800 <= counts[e] <= 1200 for e in members)


def test_ring_hash_keeps_its_ring_while_membership_is_the_same() -> None:
    members = ready_endpoints(3)
    strategy = RingHashStrategy(request_hash_header="x-key")
    ring = strategy.ring(members)
    strategy.chooser(members[:1], members)
    assert strategy.ring(members) is ring
    assert strategy.ring(members[:2]) is not ring


def test_ring_hash_points_follow_static_weights() -> None:
    light, heavy = ready_endpoints(2)
    heavy.static_weight = 3.0
    ring = RingHashStrategy(request_hash_header="k", min_ring_size=400).ring((light, heavy))
    assert collections.Counter(ring.owners) == {0: 100, 1: 300}


def test_ring_hash_heavy_weights_still_fill_min_ring_size() -> None:
    members = ready_endpoints(3)
    for endpoint in members:
        endpoint.static_weight = 200.0
    ring = RingHashStrategy(request_hash_header="k").ring(members)
    assert len(ring.points) == 3 * math.ceil(1024 / 3)


@pytest.mark.parametrize(
    ("before", "after", "min_size", "max_size", "points"),
    [
        (10, 4, 1024, 4096, 1024),  # 410 < 1024 / 2: recomputed
        (8, 4, 1024, 4096, 512),  # exactly 1024 / 2: kept
        (2, 4, 1024, 2048, 2048),  # exactly the maximum: kept
        (2, 5, 1024, 2048, 1025),  # above it: recomputed
    ],
)
def test_ring_hash_points_per_weight_are_kept_while_the_ring_fits(
    before: int, after: int, min_size: int, max_size: int, points: int
) -> None:
    members = ready_endpoints(10)
    strategy = RingHashStrategy(
        request_hash_header="k", min_ring_size=min_size, max_ring_size=max_size
    )
    strategy.ring(members[:before])
    assert len(strategy.ring(members[:after]).points) == points
