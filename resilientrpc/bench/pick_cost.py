"""Pick cost against the number of endpoints, without any network (scenario 4).

For each strategy and endpoint count, a :class:`~resilientrpc.balancer.Balancer` is
given that many addresses, every endpoint is marked READY through
:meth:`~resilientrpc.balancer.Balancer.set_state` (as the channel's background does),
and ``picker.pick(metadata)`` followed by the pick's ``done(outcome)`` is timed in a
tight loop. The counts are measured in interleaved rounds and the median per-pick time
is kept; the result is the ratio of larger counts to the smallest, which should stay
flat. The time one picker rebuild takes is measured too, for information.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from resilientrpc.balancer import Balancer
from resilientrpc.bench.drivers import KEY_HEADER
from resilientrpc.bench.results import Row, at_most, ratio
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
from resilientrpc.endpoint import Outcome
from resilientrpc.picker import Picker
from resilientrpc.strategies import build_strategy

__all__ = [
    "DEFAULT_SIZES",
    "PICK_COST_GOAL",
    "PICK_COST_POLICIES",
    "PickCost",
    "measure_pick_cost",
    "pick_cost_rows",
    "policy_for",
]

PICK_COST_GOAL = at_most(1.2)
DEFAULT_SIZES = (10, 100, 1000)
PICK_COST_POLICIES = (
    "round_robin",
    "weighted_round_robin",
    "least_request",
    "peak_ewma",
    "random",
    "pick_first",
    "ring_hash",
)

_OK = Outcome(grpc.StatusCode.OK, 0.001)
#: Distinct ring_hash keys the timed loop cycles through (a power of two).
_KEYS = 256


def _addresses(count: int) -> list[str]:
    return [f"10.0.{index // 250}.{index % 250 + 1}:50051" for index in range(count)]


def policy_for(name: str, addresses: Sequence[str]) -> LoadBalancingPolicy:
    """The validated policy value a strategy name stands for in this scenario.

    weighted_round_robin gets static weights 1 to 4 (cycling), so that its scheduler does
    real work; ring_hash hashes the :data:`KEY_HEADER` header.
    """
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted_round_robin":
        return WeightedRoundRobin(
            weights={address: float(1 + index % 4) for index, address in enumerate(addresses)}
        )
    if name == "least_request":
        return LeastRequest()
    if name == "peak_ewma":
        return PeakEwma()
    if name == "random":
        return Random()
    if name == "pick_first":
        return PickFirst()
    if name == "ring_hash":
        return RingHash(request_hash_header=KEY_HEADER)
    raise ValueError(f"unknown strategy {name!r}; expected one of {PICK_COST_POLICIES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PickCost:
    """One strategy at one endpoint count: median seconds per pick+done and per rebuild."""

    policy: str
    size: int
    per_pick: float
    rebuild: float
    rounds: int


def _ready_balancer(name: str, size: int, seed: int) -> Balancer:
    addresses = _addresses(size)
    balancer = Balancer(build_strategy(policy_for(name, addresses), rng=random.Random(seed)))
    added, _ = balancer.set_addresses(addresses)
    for endpoint in added:
        balancer.set_state(endpoint, grpc.ChannelConnectivity.READY)
    if balancer.picker.state is not grpc.ChannelConnectivity.READY:
        raise RuntimeError(f"{name} with {size} endpoints did not become READY")
    return balancer


def _time_picks(
    picker: Picker, picks: int, metadata: Sequence[tuple[tuple[str, str], ...]]
) -> float:
    """Seconds per ``pick`` + ``done``, over ``picks`` picks."""
    pick = picker.pick
    mask = len(metadata) - 1
    ok = _OK
    clock = time.perf_counter
    started = clock()
    for index in range(picks):
        result = pick(metadata[index & mask])
        if result is None:
            raise RuntimeError(f"{picker!r} picked nothing")
        result.done(ok)
    return (clock() - started) / picks


def _time_rebuild(balancer: Balancer, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        balancer.rebuild()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_pick_cost(
    *,
    policies: Sequence[str] = PICK_COST_POLICIES,
    sizes: Sequence[int] = DEFAULT_SIZES,
    picks: int = 2000,
    rounds: int = 15,
    rebuilds: int = 5,
    seed: int = 1,
) -> list[PickCost]:
    """Median per-pick and per-rebuild seconds of each policy at each endpoint count.

    Bounded: ``len(policies) * len(sizes) * rounds * picks`` picks in all. The sizes of
    one policy are timed in interleaved rounds, so drift hits them alike.
    """
    if not sizes or min(sizes) < 1 or picks < 1 or rounds < 1 or rebuilds < 1:
        raise ValueError("sizes, picks, rounds and rebuilds must be positive")
    metadata = [((KEY_HEADER, f"key-{index}"),) for index in range(_KEYS)]
    results: list[PickCost] = []
    for name in policies:
        balancers = {size: _ready_balancer(name, size, seed) for size in sizes}
        rebuild = {size: _time_rebuild(balancers[size], rebuilds) for size in sizes}
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        order = list(sizes)
        for number in range(rounds):
            shift = number % len(order)
            for size in (*order[shift:], *order[:shift]):
                samples[size].append(_time_picks(balancers[size].picker, picks, metadata))
        for size in sizes:
            results.append(
                PickCost(
                    policy=name,
                    size=size,
                    per_pick=statistics.median(samples[size]),
                    rebuild=rebuild[size],
                    rounds=rounds,
                )
            )
    return results


def pick_cost_rows(results: Sequence[PickCost], *, scenario: str = "4 pick cost") -> list[Row]:
    """Per policy: each larger count's pick cost over the smallest's (goal: flat within
    1.2x), then the rebuild cost of the largest over the smallest (information)."""
    by_policy: dict[str, list[PickCost]] = {}
    for result in results:
        by_policy.setdefault(result.policy, []).append(result)
    rows: list[Row] = []
    for policy, unordered in by_policy.items():
        costs = sorted(unordered, key=lambda cost: cost.size)
        smallest, largest = costs[0], costs[-1]
        per_pick = " / ".join(f"{cost.per_pick * 1e6:.2f}" for cost in costs)
        sizes = "/".join(str(cost.size) for cost in costs)
        for cost in costs[1:]:
            rows.append(
                Row(
                    scenario=scenario,
                    twin="-",
                    subject=f"{policy} pick, {cost.size} / {smallest.size} endpoints",
                    value=ratio(cost.per_pick, smallest.per_pick),
                    goal=PICK_COST_GOAL,
                    context=f"{per_pick} us per pick+done at {sizes} endpoints",
                )
            )
        if len(costs) > 1:
            rebuilds = " / ".join(f"{cost.rebuild * 1e3:.3f}" for cost in costs)
            rows.append(
                Row(
                    scenario=scenario,
                    twin="-",
                    subject=f"{policy} picker rebuild, {largest.size} / {smallest.size} (info)",
                    value=ratio(largest.rebuild, smallest.rebuild),
                    context=f"{rebuilds} ms per rebuild at {sizes} endpoints",
                )
            )
    return rows
