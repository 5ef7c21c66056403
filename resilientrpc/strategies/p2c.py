"""Load-aware strategies by the power of two choices: least request and peak-EWMA.

Both sample ``choice_count`` distinct endpoints at random and send to the one with the
lower load; they differ only in what "load" means. Sampling instead of scanning keeps a
pick O(1) however many endpoints there are, and avoids the herd that always-pick-the-best
causes when many clients share the same view.

Failures come first: of the sampled endpoints, one whose recent failure ratio
(:meth:`Endpoint.failure_ratio`) is more than :data:`FAILURE_TOLERANCE` above another's
loses to it whatever their loads. Otherwise a backend that fails at once has no calls in
flight and a tiny latency, and the lowest load of all: measured before this rule, one
backend of four answering UNAVAILABLE at once drew 38 % of all attempts under
least_request and 45 % under peak_ewma. The ratio decays with the strategy's time
constant, so an endpoint that lost its traffic this way is tried again later (a recovered
one wins it back). With no failures anywhere the rule costs two attribute reads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from resilientrpc.endpoint import DEFAULT_DECAY, Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy, two_distinct

__all__ = ["FAILURE_TOLERANCE", "LeastRequestStrategy", "PeakEwmaStrategy"]

#: How much higher (0..1) a sampled endpoint's failure ratio must be than another's for it
#: to lose the comparison before load is looked at.
FAILURE_TOLERANCE = 0.1


class _PowerOfChoices(Strategy):
    failover = "strategy"  # two random choices, compared on load: the best a retry can do

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
        real_clock = self.clock
        # float() is 0.0: a load that does not depend on time costs no clock reading.
        clock: Callable[[], float] = real_clock if self.timed else float
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
                if a.failure_level or b.failure_level:  # zero without failures: no clock
                    now = real_clock()
                    fa, fb = a.failure_ratio(now), b.failure_ratio(now)
                    if fa - fb > FAILURE_TOLERANCE:
                        return b
                    if fb - fa > FAILURE_TOLERANCE:
                        return a
                now = clock()
                return a if load(a, now) <= load(b, now) else b

            return choose_two
        sample_size = min(self.choice_count, count)

        def choose_many(metadata: Metadata | None) -> Endpoint:
            sample = [ready[i] for i in rng.sample(range(count), sample_size)]
            if any(endpoint.failure_level for endpoint in sample):
                now = real_clock()
                ratios = [endpoint.failure_ratio(now) for endpoint in sample]
                bar = min(ratios) + FAILURE_TOLERANCE
                sample = [e for e, ratio in zip(sample, ratios, strict=True) if ratio <= bar]
            now = clock()
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
