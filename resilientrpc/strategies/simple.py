"""The strategies that need no learning: ordered failover, round robin, random."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Collection

from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy

__all__ = ["PickFirstStrategy", "RandomStrategy", "RoundRobinStrategy"]


class PickFirstStrategy(Strategy):
    """Ordered failover: every call goes to the first endpoint, in target order, that can take it.

    With ``shuffle`` the order is shuffled once, when the channel is built, so that a fleet of
    clients spreads over the backends while each one sticks to its own first choice.
    """

    name = "pick_first"
    failover = "ordered"  # a retry takes the next address in order

    def __init__(
        self,
        *,
        shuffle: bool = False,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rng=rng, clock=clock)
        self.shuffle = shuffle
        self._rank: dict[str, float] = {}
        self._order = itertools.count()  # ranks in target order, newcomers last

    def _ranks(self, members: tuple[Endpoint, ...]) -> dict[str, float]:
        """Each member's place in the order; members that stay keep theirs."""
        previous = self._rank
        rank: dict[str, float] = {}  # keeps the order of members that stay, forgets the rest
        for endpoint in members:
            address = endpoint.address
            if address in previous:
                rank[address] = previous[address]
            else:
                rank[address] = self.rng.random() if self.shuffle else next(self._order)
        self._rank = rank
        return rank

    def worth_waiting_for(
        self,
        ready: tuple[Endpoint, ...],
        members: tuple[Endpoint, ...],
        unanswered: Collection[Endpoint],
    ) -> bool:
        """Only an unanswered endpoint placed before the first ready one could change the
        choice; when the first in order is ready, start-up has nothing to wait for."""
        rank = self._ranks(members)
        candidates = [*ready, *(e for e in unanswered if e.address in rank)]
        return min(candidates, key=lambda e: rank[e.address]) not in ready

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        rank = self._ranks(members)
        first = min(ready, key=lambda e: rank[e.address])

        def choose(metadata: Metadata | None) -> Endpoint:
            return first

        return choose


class RoundRobinStrategy(Strategy):
    """Each call to the next endpoint in turn, from a random start offset (as gRPC does)."""

    name = "round_robin"

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        count = len(ready)
        sequence = itertools.count(self.rng.randrange(count))

        def choose(metadata: Metadata | None) -> Endpoint:
            return ready[next(sequence) % count]

        return choose


class RandomStrategy(Strategy):
    """Each call to an endpoint chosen uniformly at random."""

    name = "random"

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        randrange = self.rng.randrange
        count = len(ready)

        def choose(metadata: Metadata | None) -> Endpoint:
            return ready[randrange(count)]

        return choose
