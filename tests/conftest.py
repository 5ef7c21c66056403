"""Shared fixtures: real backends on 127.0.0.1, and the twin (sync / asyncio) under test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilientrpc.testing import Backend, Backends, Faults, start_backends
from tests.threads import snapshot, threads_left
from tests.twins import TWINS, ChannelHandle, Twin


@pytest.fixture(params=TWINS, ids=lambda twin: twin.name)
def twin(request: pytest.FixtureRequest) -> Twin:
    result: Twin = request.param
    return result


@pytest.fixture
def open_channel(twin: Twin) -> Iterator[Callable[..., ChannelHandle]]:
    """Open channels of the twin under test; all are closed at the end of the test."""
    opened: list[ChannelHandle] = []

    def open_(targets: Any, **kwargs: Any) -> ChannelHandle:
        handle = twin.open(targets, **kwargs)
        opened.append(handle)
        return handle

    yield open_
    for handle in opened:
        handle.close()


@pytest.fixture
def backends() -> Iterator[Callable[..., Backends]]:
    """Start in-process backends; all are stopped at the end of the test."""
    started: list[Backends] = []

    def start(
        count: int, *, faults: Faults | None = None, names: list[str] | None = None
    ) -> Backends:
        group = start_backends(count, faults=faults, names=names, seed=7)
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


@pytest.fixture
def backend() -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def start(name: str | None = None, **kwargs: Any) -> Backend:
        b = Backend(name, **kwargs).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


#: grpc.aio's poller thread, one per process, ended by grpc once no grpc.aio object is left.
GRPC_AIO_POLLER = "(_poll_wrapper)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "grpc_aio_poller_may_outlive(reason): grpc.aio's own poller thread may outlive this "
        "test (a grpc behaviour named in the reason); any other thread is still a leak",
    )


@pytest.fixture(autouse=True)
def no_thread_leak(
    caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Every test leaves behind no thread it started, named or not, once it has ended.

    Autouse, so it is set up first and torn down last: after the test's channels and
    backends are closed and stopped. Captured log records keep the tracebacks of
    exceptions the library logged, whose frames hold channels (and so grpc.aio's poller
    thread) alive; those are dropped first: what the test saw is already formatted.
    """
    before = snapshot()
    yield
    for when in ("setup", "call"):
        for record in caplog.get_records(when):
            record.exc_info = None
    leftover = threads_left(before)
    if request.node.get_closest_marker("grpc_aio_poller_may_outlive") is not None:
        leftover = [name for name in leftover if not name.endswith(GRPC_AIO_POLLER)]
    assert leftover == [], f"threads left running: {leftover}"


@pytest.fixture(autouse=True)
def default_semantic_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the default RPC conventions whatever the shell that runs them sets
    (tests/test_tracing_semconv.py sets ``OTEL_SEMCONV_STABILITY_OPT_IN`` itself)."""
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
