"""Closing channels leaves nothing for grpc.aio to deliver to a closed event loop.

grpc.aio has one poller thread per process; every loop that made a grpc.aio object reads
its wake-up socket, and whichever loop drains the queue hands each completion to the loop
its operation belongs to with ``call_soon_threadsafe``. A completion that comes after its
loop closed makes the draining loop log, through asyncio's exception handler on the
``asyncio`` logger (printed to stderr when logging is not configured), "Exception in
callback PollerCompletionQueue._handle_events ... RuntimeError: Event loop is closed".
The test opens and closes many sync channels (each with its own loop and watch-only
grpc.aio channels), right after load, while another channel keeps a loop bound to grpc.aio
alive to do the draining, and catches that log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

import resilientrpc
from resilientrpc.testing import Backends, Faults, echo_pb2, echo_pb2_grpc

Start = Callable[..., Backends]
REQUEST = echo_pb2.EchoRequest(message="x")
#: Rounds of channels opened, loaded and closed; channels per round. Without the fix
#: (watches left pending at close) a run of this size logs the error about 10 times.
ROUNDS = 15
CHANNELS = 6
#: Seconds of load on each round's channels before they close.
LOAD_SECONDS = 0.05
#: The whole scenario's time limit, seconds.
SCENARIO_SECONDS = 30.0


class _Records(logging.Handler):
    """Every record with an exception that mentions a closed event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info is not None and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if "Event loop is closed" in text:
            self.found.append(text)


@pytest.fixture
def closed_loop_errors() -> Iterator[list[str]]:
    """What the ``asyncio`` and ``grpc`` loggers reported about closed loops."""
    handler = _Records()
    loggers = [logging.getLogger("asyncio"), logging.getLogger("grpc")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.found
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _load(stub: Any, stop: threading.Event, deadline: float) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            stub.Echo(REQUEST, timeout=2)


def _settle() -> None:
    """Give late completions time to arrive while the draining loop still runs."""
    time.sleep(0.2)


def test_closing_many_sync_channels_after_load_logs_no_closed_loop_error(
    backends: Start, closed_loop_errors: list[str]
) -> None:
    group = backends(3, faults=Faults(latency=0.002))
    deadline = time.monotonic() + SCENARIO_SECONDS
    with resilientrpc.ResilientChannel(group.addresses) as anchor:  # a loop that drains
        grpc.channel_ready_future(anchor).result(timeout=5)
        for _round in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            channels = [resilientrpc.ResilientChannel(group.addresses) for _ in range(CHANNELS)]
            stop = threading.Event()
            callers = [
                threading.Thread(
                    target=_load, args=(echo_pb2_grpc.EchoStub(channel), stop, deadline)
                )
                for channel in channels
            ]
            for caller in callers:
                caller.start()
            time.sleep(LOAD_SECONDS)
            stop.set()
            for caller in callers:
                caller.join()
            for channel in channels:
                channel.close()
        _settle()
    assert closed_loop_errors == []
