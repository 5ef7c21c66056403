"""Load-balancing strategies, and the one place that maps a config policy to a strategy."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

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
from resilientrpc.strategies.base import Strategy
from resilientrpc.strategies.p2c import LeastRequestStrategy, PeakEwmaStrategy
from resilientrpc.strategies.ring_hash import RingHashStrategy
from resilientrpc.strategies.simple import PickFirstStrategy, RandomStrategy, RoundRobinStrategy
from resilientrpc.strategies.weighted import WeightedRoundRobinStrategy

__all__ = [
    "LeastRequestStrategy",
    "PeakEwmaStrategy",
    "PickFirstStrategy",
    "RandomStrategy",
    "RingHashStrategy",
    "RoundRobinStrategy",
    "Strategy",
    "WeightedRoundRobinStrategy",
    "build_strategy",
]


def build_strategy(
    policy: LoadBalancingPolicy,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Strategy:
    """The strategy a validated ``loadBalancingConfig`` entry asks for."""
    if isinstance(policy, PickFirst):
        return PickFirstStrategy(shuffle=policy.shuffle_address_list, rng=rng, clock=clock)
    if isinstance(policy, RoundRobin):
        return RoundRobinStrategy(rng=rng, clock=clock)
    if isinstance(policy, Random):
        return RandomStrategy(rng=rng, clock=clock)
    if isinstance(policy, LeastRequest):
        return LeastRequestStrategy(choice_count=policy.choice_count, rng=rng, clock=clock)
    if isinstance(policy, PeakEwma):
        return PeakEwmaStrategy(
            choice_count=policy.choice_count, decay=policy.decay, rng=rng, clock=clock
        )
    if isinstance(policy, WeightedRoundRobin):
        return WeightedRoundRobinStrategy(
            weights=policy.weights,
            blackout_period=policy.blackout_period,
            weight_expiration_period=policy.weight_expiration_period,
            weight_update_period=policy.weight_update_period,
            error_utilization_penalty=policy.error_utilization_penalty,
            rng=rng,
            clock=clock,
        )
    if isinstance(policy, RingHash):
        return RingHashStrategy(
            request_hash_header=policy.request_hash_header,
            min_ring_size=policy.min_ring_size,
            max_ring_size=policy.max_ring_size,
            rng=rng,
            clock=clock,
        )
    raise TypeError(f"not a load-balancing policy: {policy!r}")
