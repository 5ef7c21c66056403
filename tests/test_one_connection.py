"""One TCP connection per backend, health checking on or off, both twins.

Each backend sits behind a counting :class:`~resilientrpc.testing.DelayProxy`; the sync
twin's call channel and the aio channel it watches (and checks health on) must share one
connection (see :mod:`resilientrpc.options`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from resilientrpc.config import HealthCheckConfig, RoundRobin, ServiceConfig
from resilientrpc.testing import Backends, DelayProxy
from tests.twins import ChannelHandle
from tests.waiting import eventually

BACKENDS = 3
HEALTH = ServiceConfig(
    load_balancing=RoundRobin(),
    health_check=HealthCheckConfig(service_name="", interval=0.2, timeout=0.2),
)


@pytest.fixture
def proxies(backends: Callable[..., Backends]) -> Iterator[list[DelayProxy]]:
    started = [DelayProxy(b.address).start() for b in backends(BACKENDS)]
    yield started
    for proxy in started:
        proxy.stop()


@pytest.mark.parametrize("health", [False, True], ids=["plain", "health-checked"])
def test_each_backend_gets_exactly_one_connection(
    open_channel: Callable[..., ChannelHandle], proxies: list[DelayProxy], health: bool
) -> None:
    handle = open_channel([proxy.address for proxy in proxies], config=HEALTH if health else None)
    assert eventually(lambda: all(s.available for s in handle.endpoints()), 10.0)
    served = {handle.echo().backend for _ in range(3 * BACKENDS)}
    assert len(served) == BACKENDS
    time.sleep(0.5)  # heartbeats (or their Check fallback) on the wire meanwhile
    assert [proxy.accepted for proxy in proxies] == [1] * BACKENDS
    assert [proxy.open_connections for proxy in proxies] == [1] * BACKENDS
    if health:
        assert all(s.healthy for s in handle.endpoints())
