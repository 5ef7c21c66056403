"""Backends whose connections are slow to set up are reached, on both twins.

Through a real delaying TCP proxy that holds every new connection before forwarding it:
a short connect timeout (grpc's ``min_reconnect_backoff_ms``) would abandon each attempt
and retry forever; the library keeps gRPC's 20 s connect timeout with fast reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from resilientrpc.testing import Backend, DelayProxy
from tests.twins import ChannelHandle, Twin

Open = Callable[..., ChannelHandle]


@pytest.mark.parametrize("delay", [1.5])
def test_a_slow_to_connect_backend_is_reached_at_the_first_attempt(
    twin: Twin, open_channel: Open, backend: Callable[..., Backend], delay: float
) -> None:
    server = backend("far")
    with DelayProxy(server.address, connect_delay=delay) as proxy:
        channel = open_channel([proxy.address])
        started = time.monotonic()
        reply = channel.echo(timeout=delay + 5, wait_for_ready=True)
        elapsed = time.monotonic() - started
        assert reply.backend == "far"
        # One connection attempt (the sync twin opens two connections: calls + watch),
        # so the call waits the proxy's delay and not much more.
        assert elapsed < delay + 1.0, elapsed
        assert proxy.accepted <= 2, proxy.accepted


def test_a_user_connect_timeout_is_honoured(
    twin: Twin, open_channel: Open, backend: Callable[..., Backend]
) -> None:
    """The connect timeout is grpc's option; a user who shortens it gets what they asked."""
    server = backend("far")
    with DelayProxy(server.address, connect_delay=1.0) as proxy:
        channel = open_channel([proxy.address], options=[("grpc.min_reconnect_backoff_ms", 200)])
        channel.echo(timeout=10, wait_for_ready=True)
        assert proxy.accepted > 2  # attempts abandoned after 200 ms, then retried
