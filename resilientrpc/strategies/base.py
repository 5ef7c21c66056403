"""The contract every load-balancing strategy meets.

A strategy turns the set of endpoints that may take traffic into a *chooser*: a function
from call metadata to one endpoint. The balancer calls :meth:`Strategy.chooser` whenever
it builds a picker; the chooser then runs on the data path, concurrently, lock-free.
Strategies do no I/O and take their randomness and clock as seams, so each is testable
as a pure function of hand-built endpoints.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Collection

from resilientrpc.endpoint import DEFAULT_DECAY, Endpoint
from resilientrpc.picker import Chooser

__all__ = ["Strategy", "two_distinct"]


class Strategy(abc.ABC):
    """Chooses endpoints for calls; one instance per channel."""

    #: The JSON name in ``loadBalancingConfig``.
    name: str = ""
    #: Whether ``done`` should parse the load-report trailer for this strategy.
    uses_load_reports = False
    #: Seconds between picker rebuilds for strategies whose weights change over time.
    refresh_period: float | None = None
    #: Time constant of the endpoints' latency estimates, seconds.
    decay: float = DEFAULT_DECAY
    #: How a retry picks among the endpoints its call has not tried (failover):
    #: ``"random"`` - uniformly, leaving the strategy's own sequence untouched (asking a
    #: round robin again would shift every later call's start, so that with one bad
    #: backend of two every call would try it first); ``"strategy"`` - the strategy's own
    #: choice (stateless, load-aware choosers); ``"ordered"`` - the first untried in order.
    failover = "random"

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock

    @abc.abstractmethod
    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        """A choice function over ``ready`` (non-empty), knowing all ``members``."""

    def static_weight(self, address: str) -> float | None:
        """The configured weight of ``address``, for strategies that have them."""
        return None

    def worth_waiting_for(
        self,
        ready: tuple[Endpoint, ...],
        members: tuple[Endpoint, ...],
        unanswered: Collection[Endpoint],
    ) -> bool:
        """Whether the first READY picker should wait (the start-up grace) for endpoints
        still on their first connection attempt: by default, whenever there are some."""
        return bool(unanswered)

    def refresh(self, members: tuple[Endpoint, ...]) -> None:  # noqa: B027 - optional hook
        """Recompute per-endpoint weights before a periodic picker rebuild."""


def two_distinct(rng: random.Random, count: int) -> tuple[int, int]:
    """Two different indexes below ``count`` (>= 2), uniformly: the power of two choices."""
    first = rng.randrange(count)
    second = rng.randrange(count - 1)
    if second >= first:
        second += 1
    return first, second
