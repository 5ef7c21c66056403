"""Load-aware strategies by the power of two choices: least request and peak-EWMA.

Both sample ``choice_count`` distinct endpoints at random and send to the one with the
lower load; they differ only in what "load" means. Sampling instead of scanning keeps a
pick O(1) however many endpoints there are, and avoids the herd that always-pick-the-best
causes when many clients share the same view.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy, two_distinct

__all__ = ["LeastRequestStrategy", "PeakEwmaStrategy"]


class _PowerOfChoices(Strategy):
    def __init__(
        self,
        *,
        choice_count: int = 2,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rng=rng, clock=clock)
        self.choice_count = choice_count

    def load_function(self) -> Callable[[Endpoint], float]:
        raise NotImplementedError

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        count = len(ready)
        load = self.load_function()
        if count == 1:
            only = ready[0]

            def choose_only(metadata: Metadata | None) -> Endpoint:
                return only

            return choose_only
        rng = self.rng
        if self.choice_count == 2 or count == 2:

            def choose_two(metadata: Metadata | None) -> Endpoint:
                i, j = two_distinct(rng, count)
                a, b = ready[i], ready[j]
                return a if load(a) <= load(b) else b

            return choose_two
        sample_size = min(self.choice_count, count)

        def choose_many(metadata: Metadata | None) -> Endpoint:
            return min((ready[i] for i in rng.sample(range(count), sample_size)), key=load)

        return choose_many


class LeastRequestStrategy(_PowerOfChoices):
    """The sampled endpoint with the fewest calls in flight (gRPC A48)."""

    name = "least_request"

    def load_function(self) -> Callable[[Endpoint], float]:
        return _outstanding


def _outstanding(endpoint: Endpoint) -> float:
    return endpoint.outstanding


class PeakEwmaStrategy(_PowerOfChoices):
    """The sampled endpoint with the lowest peak-EWMA latency x (outstanding + 1).

    The latency estimate jumps up at once on a slow response and decays toward faster
    ones with the configured time constant, so a backend that slows down is avoided
    within a call or two and won back gradually (the Finagle / Linkerd load metric).
    """

    name = "peak_ewma"

    def load_function(self) -> Callable[[Endpoint], float]:
        clock = self.clock

        def cost(endpoint: Endpoint) -> float:
            return endpoint.cost(clock())

        return cost
