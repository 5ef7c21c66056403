"""Consistent hashing of a request metadata value onto a ring of endpoints (ring_hash).

Each endpoint owns points on a 64-bit ring in proportion to its weight (at least
``min_ring_size`` points in all, at most ``max_ring_size``); a call's key, the value of
the configured request header, hashes to a point and goes to the owner of the next point
clockwise. When that owner cannot take traffic the call walks on to the next endpoint on
the ring, so only the keys of a lost endpoint move, about 1/N of them. A call without the
header gets a random point (gRPC A76). The ring depends on membership only and is rebuilt
when the set of addresses changes, not when health does.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections.abc import Callable

from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Metadata
from resilientrpc.strategies.base import Strategy

__all__ = ["Ring", "RingHashStrategy", "hash_key"]


def hash_key(value: str | bytes) -> int:
    """A stable 64-bit hash of a key (the same in every process and run)."""
    data = value.encode() if isinstance(value, str) else value
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """Sorted points of a hash ring and the endpoint owning each."""

    __slots__ = ("members", "owners", "points")

    def __init__(self, members: tuple[Endpoint, ...], weights: list[float], scale: float) -> None:
        entries: list[tuple[int, int]] = []
        for index, (endpoint, weight) in enumerate(zip(members, weights, strict=True)):
            for replica in range(max(1, math.ceil(weight * scale))):
                entries.append((hash_key(f"{endpoint.address}_{replica}"), index))
        entries.sort()
        self.members = members
        self.points = [point for point, _ in entries]
        self.owners = [index for _, index in entries]

    def owner_order(self, key_hash: int) -> int:
        """Ring position of the first point at or after ``key_hash`` (wrapping)."""
        position = bisect.bisect_left(self.points, key_hash)
        return 0 if position == len(self.points) else position


class RingHashStrategy(Strategy):
    """Sends all calls with the same header value to the same endpoint while it is up."""

    name = "ring_hash"

    def __init__(
        self,
        *,
        request_hash_header: str,
        min_ring_size: int = 1024,
        max_ring_size: int = 8_388_608,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rng=rng, clock=clock)
        self.header = request_hash_header
        self.min_ring_size = min_ring_size
        self.max_ring_size = max_ring_size
        self._ring: Ring | None = None
        self._scale = 0.0

    def ring(self, members: tuple[Endpoint, ...]) -> Ring:
        ring = self._ring
        if ring is None or ring.members != members:
            weights = [e.static_weight or 1.0 for e in members]
            ring = Ring(members, weights, self._points_per_weight(sum(weights)))
            self._ring = ring
        return ring

    def _points_per_weight(self, total: float) -> float:
        """Points per unit of weight, kept across membership changes while it still fits.

        Keeping it is what makes a membership change move only the changed endpoint's
        keys (recomputing it, as gRPC does, would reshuffle ~1/N more). It is recomputed
        when the ring would fall below half ``min_ring_size`` or above ``max_ring_size``.
        """
        scale = self._scale
        if not self.min_ring_size / 2 <= scale * total <= self.max_ring_size:
            scale = min(self.min_ring_size, self.max_ring_size) / total
            self._scale = scale
        return scale

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        ring = self.ring(members)
        header = self.header
        owners = ring.owners
        candidates = ring.members
        ready_set = set(ready)
        usable = [e in ready_set for e in candidates]
        size = len(owners)
        getrandbits = self.rng.getrandbits

        def choose(metadata: Metadata | None) -> Endpoint | None:
            key_hash = None
            if metadata:
                for key, value in metadata:
                    if key == header:
                        key_hash = hash_key(value)
                        break
            if key_hash is None:
                key_hash = getrandbits(64)
            position = ring.owner_order(key_hash)
            for step in range(size):
                owner = owners[(position + step) % size]
                if usable[owner]:
                    return candidates[owner]
            return None

        return choose
