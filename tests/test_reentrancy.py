"""Where user code or a finaliser re-enters the synchronous channel: subscribe,
unsubscribe and close from callbacks, from finalisers (on the callback thread and on the
background loop), and from other threads while a close is under way. None may hang.

Each ``close()`` here runs in a helper thread joined with a timeout, so a deadlock fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from resilientrpc import ResilientChannel
from resilientrpc._loop import CALLBACK_STOP_TIMEOUT
from resilientrpc.testing import Backends, DelayProxy, Faults, echo_pb2, echo_pb2_grpc
from tests.waiting import eventually

Start = Callable[..., Backends]
Connectivity = grpc.ChannelConnectivity


def _dead_address(backends: Start) -> str:
    group = backends(1)
    address = group.addresses[0]
    group.stop()
    return address


def _finishes(function: Callable[[], object], timeout: float = 10.0) -> bool:
    """Run ``function`` in a daemon thread; whether it returned within ``timeout``."""
    thread = threading.Thread(target=function, daemon=True, name="test-closer")
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_close_after_a_ready_future_timed_out_returns(backends: Start) -> None:
    """The reported hang: the dropped future's __del__ unsubscribes during close()."""
    channel = ResilientChannel([_dead_address(backends)])
    with pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=0.2)
    gc.collect()  # the future is now referenced by the channel's subscriptions only
    assert _finishes(channel.close), "close() hung"


def test_many_abandoned_ready_futures_then_close(backends: Start) -> None:
    channel = ResilientChannel([_dead_address(backends)])
    for _ in range(20):
        grpc.channel_ready_future(channel)  # dropped at once, still subscribed
    assert _finishes(channel.close), "close() hung"


def test_callback_that_unsubscribes_subscribes_and_closes(backends: Start) -> None:
    group = backends(1)
    channel = ResilientChannel(group.addresses)
    seen: list[grpc.ChannelConnectivity] = []
    closed = threading.Event()

    def other(state: grpc.ChannelConnectivity) -> None:
        seen.append(state)

    def callback(state: grpc.ChannelConnectivity) -> None:
        if state is not Connectivity.READY:
            return
        channel.unsubscribe(callback)
        channel.subscribe(other)
        channel.close()  # from the callback thread: must not wait for itself
        closed.set()

    channel.subscribe(callback)
    assert closed.wait(10), "the callback never got to close the channel"
    assert _finishes(channel.close)
    assert channel.get_state() is Connectivity.SHUTDOWN


class _ClosesOnCollection:
    """An object whose finaliser closes the channel, as a user's wrapper might."""

    def __init__(self, channel: ResilientChannel, done: threading.Event) -> None:
        self.channel = channel
        self.done = done

    def __del__(self) -> None:
        self.channel.close()
        self.done.set()


def test_finaliser_on_the_callback_thread_closes_the_channel(backends: Start) -> None:
    group = backends(1)
    channel = ResilientChannel(group.addresses)
    done = threading.Event()
    holder: list[Any] = [_ClosesOnCollection(channel, done)]

    def callback(state: grpc.ChannelConnectivity) -> None:
        if state is Connectivity.READY and holder:
            holder.pop()  # the last reference dies here, on the callback thread

    channel.subscribe(callback)
    assert done.wait(10), "the finaliser never ran"
    assert _finishes(channel.close)


def test_close_on_the_background_loop_does_not_raise_or_hang(backends: Start) -> None:
    """A finaliser may run on the channel's own loop thread; close() there must not wait."""
    group = backends(1)
    channel = ResilientChannel(group.addresses)
    errors: list[BaseException] = []

    def close_on_loop() -> None:
        try:
            channel.close()
        except BaseException as error:
            errors.append(error)

    channel._loop.call(close_on_loop)
    assert eventually(lambda: not channel._loop.thread.is_alive()), "the loop never stopped"
    assert errors == []
    assert channel.get_state() is Connectivity.SHUTDOWN
    assert _finishes(channel.close)


def test_concurrent_closes_all_return_after_the_channel_is_shut(backends: Start) -> None:
    group = backends(2)
    channel = ResilientChannel(group.addresses)
    grpc.channel_ready_future(channel).result(timeout=5)
    states: list[grpc.ChannelConnectivity] = []
    lock = threading.Lock()

    def close() -> None:
        channel.close()
        with lock:  # every caller returns only once the channel is closed
            states.append(channel.get_state())

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a close() hung"
    assert states == [Connectivity.SHUTDOWN] * 8
    assert not channel._loop.thread.is_alive()


def test_subscribe_and_unsubscribe_from_many_threads_during_close(backends: Start) -> None:
    channel = ResilientChannel([_dead_address(backends)])
    stop = threading.Event()

    def churn() -> None:
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            future = grpc.channel_ready_future(channel)
            future.cancel()
            grpc.channel_ready_future(channel)  # dropped without cancelling

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(0.05)
    closed = _finishes(channel.close)
    stop.set()
    for worker in workers:
        worker.join(10)
    assert closed, "close() hung"
    assert not any(worker.is_alive() for worker in workers)


@pytest.mark.parametrize("shape", ["future", "stream"])
def test_a_done_callback_on_a_grpc_thread_closes_the_channel(backends: Start, shape: str) -> None:
    """Closing from the done callback of a call in flight must work (it ran on grpc's own
    thread once, where closing waited for that very thread)."""
    group = backends(1, faults=Faults(latency=0.2))  # still in flight when the callback is added
    channel = ResilientChannel(group.addresses)
    grpc.channel_ready_future(channel).result(timeout=5)
    stub = echo_pb2_grpc.EchoStub(channel)
    closed = threading.Event()
    ran_on: list[str] = []

    def close(_call: Any) -> None:
        # On grpc's own thread, close() would wait for that thread's call handling to
        # end while it runs this callback (it deadlocked about 1 run in 3).
        ran_on.append(threading.current_thread().name)
        channel.close()
        closed.set()

    if shape == "future":
        call: Any = stub.Echo.future(echo_pb2.EchoRequest(message="x"), timeout=5)
        call.add_done_callback(close)
        call.result()
    else:
        call = stub.ServerStream(echo_pb2.EchoRequest(message="x", count=3), timeout=5)
        call.add_done_callback(close)
        assert len(list(call)) == 3
    assert closed.wait(10), "close() from the done callback never returned"
    assert ran_on == [f"{channel._loop.thread.name}-callbacks"]
    assert eventually(lambda: not channel._loop.thread.is_alive())


def test_a_done_callback_waiting_on_a_call_that_is_still_waiting_for_an_endpoint(
    backend: Callable[..., Any],
) -> None:
    """A done callback retries a call that timed out while connecting and waits for it:
    the retry starts once the backend is READY (settling never waits for user callbacks)."""
    server = backend("b1")
    request = echo_pb2.EchoRequest(message="x")
    with DelayProxy(server.address, connect_delay=1.0) as proxy:
        channel = ResilientChannel([proxy.address])
        stub = echo_pb2_grpc.EchoStub(channel)
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def retry(_future: Any) -> None:
            started = time.monotonic()
            try:
                retried = stub.Echo.future(request, timeout=5, wait_for_ready=True)
                outcome["backend"] = retried.result(timeout=8).backend
            except BaseException as error:
                outcome["error"] = repr(error)
            outcome["took"] = time.monotonic() - started
            finished.set()

        stub.Echo.future(request, timeout=0.3).add_done_callback(retry)
        assert finished.wait(12)
        assert outcome.get("backend") == "b1", outcome
        assert outcome["took"] < 2.0, outcome  # READY after ~0.7 s more, not the deadline
        assert _finishes(channel.close)


def test_close_returns_even_if_a_user_callback_never_does(
    backends: Start, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(1)
    channel = ResilientChannel(group.addresses)
    release = threading.Event()
    entered = threading.Event()

    def stuck(state: grpc.ChannelConnectivity) -> None:
        entered.set()
        release.wait(30)

    channel.subscribe(stuck)
    assert entered.wait(5)
    started = time.monotonic()
    try:
        assert _finishes(channel.close, timeout=CALLBACK_STOP_TIMEOUT + 5)
        assert time.monotonic() - started < CALLBACK_STOP_TIMEOUT + 2
        assert any("still running" in r.getMessage() for r in caplog.records)
    finally:
        release.set()  # let the left-behind callback end before the leak check


def test_a_finished_calls_done_callback_runs_at_once_in_the_callers_thread(
    backends: Start,
) -> None:
    """grpc.Future's contract: on a call already done, add_done_callback calls at once."""
    group = backends(1)
    with ResilientChannel(group.addresses) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        future = echo_pb2_grpc.EchoStub(channel).Echo.future(
            echo_pb2.EchoRequest(message="x"), timeout=5
        )
        future.result()
        ran_on: list[threading.Thread] = []
        future.add_done_callback(lambda _f: ran_on.append(threading.current_thread()))
        assert ran_on == [threading.current_thread()]
