"""Weighted round robin: static per-address weights, or weights from ORCA load reports.

Weights from reports follow gRPC A58: ``qps / (utilization + eps / qps * penalty)``,
usable only after a blackout period of continuous reports and forgotten after the
expiration period; endpoints without a usable weight get the mean of those that have
one, and with fewer than two usable weights every endpoint weighs the same. The picker
rebuilds on a timer (``weightUpdatePeriod``) to take up new weights.

Scheduling is a stride schedule over a shared sequence counter: endpoint *i* with
scaled weight *w* (out of ``SCALE``) is due in generation *g* when
``(w * g + offset_i) mod SCALE >= SCALE - w``, which happens ``w / SCALE`` of the time
and interleaves endpoints smoothly. It needs no lock, only ``next()`` on a counter.
Weights are clamped to ``[mean / MAX_RATIO, mean * MAX_RATIO]`` so a pick needs a few
steps at most, whatever the spread of weights.

Weights come from servers (reports) and users (config), so nothing here trusts them: a
weight that is not finite or not positive counts as unknown, a huge one is clamped to
:data:`MAX_WEIGHT`, and the scheduler's arithmetic therefore stays finite.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence

from resilientrpc.config import MAX_STATIC_WEIGHT
from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy

__all__ = [
    "MAX_RATIO",
    "MAX_WEIGHT",
    "SCALE",
    "StrideScheduler",
    "WeightedRoundRobinStrategy",
    "orca_weight",
]

#: Resolution of scaled weights.
SCALE = 1 << 16
#: Largest ratio between an endpoint's weight and the mean that scheduling honours.
MAX_RATIO = 10.0
#: The largest weight taken from a report; larger ones count as this. The same bound
#: the service config puts on static weights.
MAX_WEIGHT = MAX_STATIC_WEIGHT


def _known(weight: float) -> bool:
    """Whether ``weight`` is usable: finite and positive (NaN is not)."""
    return math.isfinite(weight) and weight > 0.0


def _bounded(weight: float) -> float:
    """``weight`` clamped to :data:`MAX_WEIGHT` if usable; 0 (unknown) otherwise."""
    return min(weight, MAX_WEIGHT) if _known(weight) else 0.0


def orca_weight(qps: float, eps: float, utilization: float, penalty: float) -> float:
    """A58's weight for one report, at most :data:`MAX_WEIGHT`; 0 when it has no usable load.

    >>> orca_weight(1e300, 0.0, 1e-300, 1.0) == MAX_WEIGHT  # would overflow
    True
    """
    if not (_known(qps) and _known(utilization)):
        return 0.0
    try:
        weight = qps / (utilization + eps / qps * penalty)  # may overflow to inf
    except ZeroDivisionError:
        return 0.0
    if math.isnan(weight) or weight <= 0.0:
        return 0.0
    return min(weight, MAX_WEIGHT)


class StrideScheduler:
    """Lock-free weighted choice of an index, proportional to ``weights`` (all > 0)."""

    __slots__ = ("_count", "_offsets", "_scaled", "_sequence")

    def __init__(self, weights: Sequence[float], next_start: int = 0) -> None:
        weights = [_bounded(w) or 1.0 for w in weights]  # unknown ones as equals
        mean = sum(weights) / len(weights)
        clamped = [min(max(w, mean / MAX_RATIO), mean * MAX_RATIO) for w in weights]
        top = max(clamped)
        # Each is at least SCALE / MAX_RATIO**2 (655) after clamping, never 0.
        self._scaled = [round(w / top * SCALE) for w in clamped]
        self._count = len(weights)
        # Spread the endpoints' phases so equal weights interleave instead of bunching.
        self._offsets = [(i * SCALE) // self._count for i in range(self._count)]
        self._sequence = itertools.count(next_start)

    def pick(self) -> int:
        count = self._count
        scaled = self._scaled
        offsets = self._offsets
        sequence = self._sequence
        while True:
            step = next(sequence)
            index = step % count
            weight = scaled[index]
            if (weight * (step // count) + offsets[index]) % SCALE >= SCALE - weight:
                return index


class WeightedRoundRobinStrategy(Strategy):
    """Round robin in proportion to endpoint weights."""

    name = "weighted_round_robin"

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        blackout_period: float = 10.0,
        weight_expiration_period: float = 180.0,
        weight_update_period: float = 1.0,
        error_utilization_penalty: float = 1.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rng=rng, clock=clock)
        self.weights = dict(weights) if weights is not None else None
        self.blackout_period = blackout_period
        self.weight_expiration_period = weight_expiration_period
        self.error_utilization_penalty = error_utilization_penalty
        if self.weights is None:
            self.uses_load_reports = True
            self.refresh_period = max(weight_update_period, 0.1)

    def static_weight(self, address: str) -> float | None:
        if self.weights is None:
            return None
        return self.weights.get(address, 1.0)

    def refresh(self, members: tuple[Endpoint, ...]) -> None:
        if self.weights is not None:
            return
        now = self.clock()
        for endpoint in members:
            endpoint.weight = self._report_weight(endpoint, now)

    def _report_weight(self, endpoint: Endpoint, now: float) -> float:
        load = endpoint.load
        if load is None:
            return 0.0
        if now - endpoint.load_stamp >= self.weight_expiration_period:
            endpoint.load_since = math.inf
            return 0.0
        if now - endpoint.load_since < self.blackout_period:  # no blackout when it is <= 0
            return 0.0
        return orca_weight(
            load.rps_fractional, load.eps, load.utilization, self.error_utilization_penalty
        )

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        weights = _usable_weights([e.weight for e in ready])
        scheduler = StrideScheduler(weights, self.rng.randrange(len(ready) * 64))
        pick: Callable[[], int] = scheduler.pick

        def choose(metadata: Metadata | None) -> Endpoint:
            return ready[pick()]

        return choose


def _usable_weights(weights: list[float]) -> list[float]:
    """Weights with the unknown ones set to the mean of the known; all 1 if < 2 known."""
    weights = [_bounded(w) for w in weights]
    known = [w for w in weights if w > 0]
    if len(known) < 2:
        return [1.0] * len(weights)
    mean = sum(known) / len(known)
    return [w if w > 0 else mean for w in weights]
