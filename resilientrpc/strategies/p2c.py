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

from resilientrpc.endpoint import DEFAULT_DECAY, Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy, two_distinct

__all__ = ["LeastRequestStrategy", "PeakEwmaStrategy"]


class _PowerOfChoices(Strategy):
    #: Whether the load is a function of time (read the clock once per pick).
    timed = False

    def __init__(
        self,
        *,
        choice_count: int = 2,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rng=rng, clock=clock)
        self.choice_count = choice_count

    @staticmethod
    def load(endpoint: Endpoint, now: float) -> float:
        """The endpoint's load at ``now``; the sampled endpoint with the least wins."""
        raise NotImplementedError

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        count = len(ready)
        load = self.load
        # float() is 0.0: a load that does not depend on time costs no clock reading.
        clock: Callable[[], float] = self.clock if self.timed else float
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
                now = clock()
                return a if load(a, now) <= load(b, now) else b

            return choose_two
        sample_size = min(self.choice_count, count)

        def choose_many(metadata: Metadata | None) -> Endpoint:
            now = clock()
            sample = (ready[i] for i in rng.sample(range(count), sample_size))
            return min(sample, key=lambda endpoint: load(endpoint, now))

        return choose_many


class LeastRequestStrategy(_PowerOfChoices):
    """The sampled endpoint with the fewest calls in flight (gRPC A48)."""

    name = "least_request"

    @staticmethod
    def load(endpoint: Endpoint, now: float) -> float:
        return endpoint.outstanding


class PeakEwmaStrategy(_PowerOfChoices):
    """The sampled endpoint with the lowest peak-EWMA latency x (outstanding + 1).

    The latency estimate jumps up at once on a slow response and decays toward faster
    ones with the configured time constant, so a backend that slows down is avoided
    within a call or two and won back gradually (the Finagle / Linkerd load metric).
    """

    name = "peak_ewma"
    timed = True

    def __init__(
        self,
        *,
        choice_count: int = 2,
        decay: float = DEFAULT_DECAY,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(choice_count=choice_count, rng=rng, clock=clock)
        self.decay = decay

    @staticmethod
    def load(endpoint: Endpoint, now: float) -> float:
        return endpoint.cost(now)
