"""Outlier detection against real backends, on both twins: ejection, half-open, limits.

Each test drives calls from a few threads (bounded in count and time) while a backend
fails or turns slow, and reads what happened from ``channel.endpoints()``: the ejection,
its reason, the half-open trials and the readmission, as the events recorded them.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import grpc

from resilientrpc import events
from resilientrpc.config import (
    ConsecutiveFailures,
    LatencyEjection,
    OutlierDetection,
    PeakEwma,
    RoundRobin,
    ServiceConfig,
)
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.events import EndpointEvent
from resilientrpc.testing import Backends, Faults
from tests.twins import ChannelHandle
from tests.waiting import eventually

#: Most calls one load thread makes (a bound; tests stop their load much sooner).
MAX_CALLS = 50_000


@contextmanager
def load(handle: ChannelHandle, threads: int = 4) -> Iterator[None]:
    """Calls from ``threads`` threads until the block ends; failures are expected."""
    stop = threading.Event()

    def run() -> None:
        for _ in range(MAX_CALLS):
            if stop.is_set():
                return
            with suppress(grpc.RpcError):
                handle.echo(timeout=1.0)

    workers = [threading.Thread(target=run, name=f"load-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)


def status_of(handle: ChannelHandle, address: str) -> EndpointStatus:
    return next(s for s in handle.endpoints() if s.address == address)


def kinds(status: EndpointStatus, *wanted: str) -> list[EndpointEvent]:
    return [e for e in status.events if e.kind in wanted]


def outlier_events(status: EndpointStatus) -> list[EndpointEvent]:
    return kinds(status, events.EJECTED, events.HALF_OPEN, events.READMITTED)


def consecutive(count: int = 3, **overrides: Any) -> ServiceConfig:
    settings = OutlierDetection(
        interval=0.1,
        base_ejection_time=0.3,
        max_ejection_time=5.0,
        max_ejection_percent=50,
        consecutive_failures=ConsecutiveFailures(count=count),
        half_open_trials=2,
    )
    return ServiceConfig(
        load_balancing=RoundRobin(), outlier_detection=dataclasses.replace(settings, **overrides)
    )


def test_failing_backend_is_ejected_then_readmitted_through_half_open(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(4)
    bad = group[0]
    bad.configure(error_rate=1.0)
    handle = open_channel(group.addresses, config=consecutive())
    handle.wait_ready(5)
    with load(handle):
        # Still failing: ejected, half-open after 0.3 s, the trial fails, out for longer.
        assert eventually(lambda: len(kinds(status_of(handle, bad.address), events.EJECTED)) >= 2)
        first, second = kinds(status_of(handle, bad.address), events.EJECTED)[:2]
        assert first.reason == "3 consecutive failures (UNAVAILABLE); out for 0.3 s"
        assert second.reason == "trial call failed (UNAVAILABLE) while half-open; out for 0.6 s"
        bad.configure(error_rate=0.0)
        assert eventually(
            lambda: kinds(status_of(handle, bad.address), events.READMITTED) != [], timeout=5
        )
    status = status_of(handle, bad.address)
    assert not status.ejected and not status.half_open and status.available
    history = [(e.kind, e.reason) for e in outlier_events(status)]
    assert history[-1] == (events.READMITTED, "2 trial calls succeeded")
    assert history[-2] == (events.HALF_OPEN, "ejection over; 2 trial calls decide")
    # The second ejection lasted its 0.6 s, the first its 0.3 s (sweeps every 0.1 s,
    # and some slack for a busy machine).
    timeline = outlier_events(status)
    spans = [
        later.monotonic - earlier.monotonic
        for earlier, later in itertools.pairwise(timeline)
        if earlier.kind == events.EJECTED and later.kind == events.HALF_OPEN
    ]
    assert 0.3 <= spans[0] < 0.6 <= spans[1] < 1.2
    assert status.reason == "2 trial calls succeeded"


def test_never_more_than_max_ejection_percent(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(4)
    for bad in group[:3]:
        bad.configure(error_rate=1.0)
    handle = open_channel(group.addresses, config=consecutive(max_ejection_percent=50))
    handle.wait_ready(5)
    most = 0
    with load(handle):
        for _ in range(150):  # about a second of samples
            out = sum(1 for s in handle.endpoints() if s.ejected or s.half_open)
            most = max(most, out)
            threading.Event().wait(0.005)
    assert most == 2  # 50 % of 4; the third failing backend is never ejected
    assert status_of(handle, group[3].address).ejected is False


def test_never_ejects_the_last_available_endpoint(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(2, faults=Faults(error_rate=1.0))
    handle = open_channel(group.addresses, config=consecutive(max_ejection_percent=100))
    handle.wait_ready(5)
    most = 0
    with load(handle):
        for _ in range(150):
            statuses = handle.endpoints()
            most = max(most, sum(1 for s in statuses if s.ejected))
            threading.Event().wait(0.005)
    assert most == 1


def slow_one(group: Backends) -> None:
    group[0].configure(latency=0.02)
    for fast in group[1:]:
        fast.configure(latency=0.001)


def test_slow_backend_is_ejected_by_peak_ewma_defaults(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    """A bare peak_ewma runs latency ejection (every 1 s) with no outlier config at all."""
    group = backends(3)
    slow_one(group)
    handle = open_channel(group.addresses, config=ServiceConfig(load_balancing=PeakEwma()))
    handle.wait_ready(5)
    with load(handle, threads=8):
        assert eventually(lambda: status_of(handle, group[0].address).ejected, timeout=8)
    reason = status_of(handle, group[0].address).reason or ""
    assert reason.startswith("mean latency ") and "x peers' median" in reason, reason
    assert reason.endswith("; out for 10 s"), reason


def test_slow_backend_is_readmitted_when_fast_again(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(3)
    slow_one(group)
    config = ServiceConfig(
        load_balancing=RoundRobin(),
        outlier_detection=OutlierDetection(
            interval=0.2,
            base_ejection_time=0.4,
            max_ejection_percent=34,
            latency_ejection=LatencyEjection(),
            half_open_trials=2,
        ),
    )
    handle = open_channel(group.addresses, config=config)
    handle.wait_ready(5)
    slow = group[0].address
    with load(handle):
        assert eventually(lambda: status_of(handle, slow).ejected, timeout=5)
        # Still slow: its trials are timed, and it goes out again for longer.
        assert eventually(
            lambda: len(kinds(status_of(handle, slow), events.EJECTED)) >= 2, timeout=5
        )
        second = kinds(status_of(handle, slow), events.EJECTED)[1]
        assert second.reason.startswith("trial calls slow: mean latency "), second.reason
        assert second.reason.endswith("; out for 0.8 s"), second.reason
        group[0].configure(latency=0.001)
        assert eventually(lambda: kinds(status_of(handle, slow), events.READMITTED) != [], 5)
    status = status_of(handle, slow)
    assert status.available and not status.ejected
    assert status.reason == "2 trial calls succeeded"
    assert all(not s.ejected for s in handle.endpoints())
