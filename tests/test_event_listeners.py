"""``add_event_listener`` / ``remove_event_listener`` on both channels, against real backends.

An endpoint's transition (here: its backend stops, so its connection leaves READY) reaches
every listener as an :class:`~resilientrpc.events.EndpointEvent`: on the sync channel's
callback thread, on the asyncio channel's loop. A listener that raises does not stop the
others, a removed one hears nothing more, and one that closes the channel deadlocks
nothing.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import grpc
import pytest

import resilientrpc.aio
from resilientrpc import ResilientChannel
from resilientrpc.events import CONNECTIVITY, EndpointEvent
from resilientrpc.testing import Backends
from tests.waiting import eventually

Start = Callable[..., Backends]


def _raise(event: EndpointEvent) -> None:
    raise RuntimeError("a listener that fails")


def _left(events: list[EndpointEvent], address: str) -> bool:
    return any(e.kind == CONNECTIVITY and e.address == address for e in events)


def test_sync_listeners_hear_a_transition_on_the_callback_thread(
    backends: Start, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(2)
    heard: list[tuple[EndpointEvent, str]] = []
    removed: list[EndpointEvent] = []
    with ResilientChannel(group.addresses) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        channel.add_event_listener(_raise)  # first: the others must still hear
        channel.add_event_listener(lambda e: heard.append((e, threading.current_thread().name)))
        channel.add_event_listener(removed.append)
        channel.remove_event_listener(removed.append)
        channel.remove_event_listener(print)  # never added: ignored
        group[1].stop()
        assert eventually(lambda: _left([e for e, _ in heard], group.addresses[1]))
    event, thread = next(pair for pair in heard if pair[0].address == group.addresses[1])
    assert event.reason.startswith(("IDLE", "TRANSIENT_FAILURE", "CONNECTING"))
    assert thread.endswith("-callbacks")
    assert removed == []
    assert "a listener that fails" in caplog.text


def test_sync_listener_that_closes_the_channel_does_not_deadlock(backends: Start) -> None:
    group = backends(2)
    channel = ResilientChannel(group.addresses)
    grpc.channel_ready_future(channel).result(timeout=5)
    closed = threading.Event()

    def close(event: EndpointEvent) -> None:
        channel.close()  # from the callback thread: must not wait for itself
        closed.set()

    channel.add_event_listener(close)
    group[0].stop()
    assert closed.wait(10), "the listener never got to close the channel"
    closer = threading.Thread(target=channel.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hung"
    assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN


def test_aio_listeners_hear_a_transition_on_the_loop(
    backends: Start, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(2)

    async def scenario() -> tuple[list[EndpointEvent], list[EndpointEvent], bool]:
        heard: list[EndpointEvent] = []
        removed: list[EndpointEvent] = []
        on_loop = True
        loop = asyncio.get_running_loop()

        def listen(event: EndpointEvent) -> None:
            nonlocal on_loop
            on_loop = on_loop and asyncio.get_running_loop() is loop
            heard.append(event)

        async with resilientrpc.aio.ResilientChannel(group.addresses) as channel:
            await asyncio.wait_for(channel.channel_ready(), 5)
            channel.add_event_listener(_raise)
            channel.add_event_listener(listen)
            channel.add_event_listener(removed.append)
            channel.remove_event_listener(removed.append)
            group[1].stop()
            for _ in range(500):
                if _left(heard, group.addresses[1]):
                    break
                await asyncio.sleep(0.01)
        return heard, removed, on_loop

    try:
        heard, removed, on_loop = asyncio.run(scenario())
    finally:
        gc.collect()
    assert _left(heard, group.addresses[1]), heard
    assert on_loop
    assert removed == []
    assert "a listener that fails" in caplog.text


def test_aio_listener_that_closes_the_channel_does_not_deadlock(backends: Start) -> None:
    group = backends(2)

    async def scenario() -> grpc.ChannelConnectivity:
        channel = resilientrpc.aio.ResilientChannel(group.addresses)
        await asyncio.wait_for(channel.channel_ready(), 5)
        closing: list[asyncio.Task[None]] = []
        channel.add_event_listener(lambda e: closing.append(asyncio.ensure_future(channel.close())))
        group[0].stop()
        for _ in range(500):
            if closing:
                break
            await asyncio.sleep(0.01)
        assert closing, "the listener never ran"
        await asyncio.wait_for(asyncio.gather(*closing), 10)
        await asyncio.wait_for(channel.close(), 10)
        return channel.get_state()

    try:
        assert asyncio.run(scenario()) is grpc.ChannelConnectivity.SHUTDOWN
    finally:
        gc.collect()
