"""Hand-built pieces for the pure-function tests: a settable clock and ready endpoints."""

from __future__ import annotations

import dataclasses

import grpc

from resilientrpc.endpoint import Endpoint

__all__ = ["Clock", "ready_endpoints"]


@dataclasses.dataclass
class Clock:
    """A clock that stands still until a test moves ``now``; counts how often it is read."""

    now: float = 100.0
    reads: int = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def ready_endpoints(count: int, clock: Clock | None = None) -> tuple[Endpoint, ...]:
    """``count`` READY endpoints 127.0.0.1:<10000 + i> (never dialled)."""
    endpoints = tuple(
        Endpoint(f"127.0.0.1:{10000 + i}", clock=clock if clock is not None else Clock())
        for i in range(count)
    )
    for endpoint in endpoints:
        endpoint.state = grpc.ChannelConnectivity.READY
    return endpoints
