"""What only the asyncio twin has: tasks, cancellation, awaitable lifecycle, read / write.

The behaviour both channels share is the scenario suite (tests/test_channel.py, run on
both twins). Everything here runs against real backends on 127.0.0.1, each scenario in
its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest

import interceptors.aio
import resilientrpc
import resilientrpc.aio
from interceptors.aio import FinishedCall
from resilientrpc import ConfigError, Outcome
from resilientrpc._methods import EndpointTransport
from resilientrpc.aio import AsyncRouter
from resilientrpc.endpoint import Endpoint
from resilientrpc.testing import Backend, Backends, Faults, echo_pb2, echo_pb2_grpc
from tests.threads import snapshot, threads_left

T = TypeVar("T")
StartBackend = Callable[..., Backend]
StartBackends = Callable[..., Backends]

READY = grpc.ChannelConnectivity.READY
CONNECTING = grpc.ChannelConnectivity.CONNECTING
TRANSIENT_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run ``scenario`` on a fresh loop; fail if it leaves any task running.

    grpc's own tasks of a call cancelled just before the end may need a tick or two to
    finish; they get a second. (test_async_with_and_close_leave_no_task_or_thread checks
    the channel's own tasks strictly.)
    """

    async def checked() -> T:
        result = await scenario
        current = asyncio.current_task()
        finishing = [task for task in asyncio.all_tasks() if task is not current]
        if finishing:
            _done, pending = await asyncio.wait(finishing, timeout=1.0)
            assert not pending, f"tasks left behind: {pending}"
        return result

    try:
        return asyncio.run(checked())
    finally:
        # Frames held by caught exceptions keep grpc objects alive past their loop, and
        # grpc.aio stays bound to the loop of its live objects: free them with the loop.
        gc.collect()


def request(message: str = "hi", count: int = 0) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(message=message, count=count)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def ready_channel(addresses: list[str], **kwargs: Any) -> resilientrpc.aio.ResilientChannel:
    channel = resilientrpc.aio.ResilientChannel(addresses, **kwargs)
    await asyncio.wait_for(channel.channel_ready(), 5)
    return channel


def dead_address(backend: StartBackend) -> tuple[str, int]:
    """An address nothing listens on (a backend's, just stopped), and its port."""
    gone = backend("gone")
    address, port = gone.address, gone.port
    gone.stop()
    return address, port


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[grpc.StatusCode]:
    """The code of every outcome reported to a pick's ``done``, in order (a spy)."""
    reported: list[grpc.StatusCode] = []
    record = Endpoint.record

    def spy(self: Endpoint, outcome: Outcome) -> None:
        reported.append(outcome.code)
        record(self, outcome)

    monkeypatch.setattr(Endpoint, "record", spy)
    return reported


async def frees_the_worker(backend: Backend, stub: Any) -> None:
    """A backend with one handler thread answers a new call only if the old one ended.

    The call that held the thread was cancelled; if the cancellation reached the server,
    its handler returned and this call is served at once, not after the injected delay.
    """
    backend.configure(latency=0.0, hang=False)
    reply = await stub.Echo(request("after"), timeout=3)
    assert reply.message == "after"


# -- cancellation -------------------------------------------------------------------------


def test_cancelling_the_callers_task_cancels_the_attempt(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    slow = backend("slow", faults=Faults(latency=30.0), max_workers=1)

    async def scenario() -> None:
        async with await ready_channel([slow.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            caller = asyncio.ensure_future(stub.Echo(request(), timeout=60))
            await eventually(lambda: slow.calls == 1)
            assert channel.endpoints()[0].outstanding == 1
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert outcomes == [grpc.StatusCode.CANCELLED]  # done fired once
            await frees_the_worker(slow, stub)
            assert outcomes == [grpc.StatusCode.CANCELLED, grpc.StatusCode.OK]
            assert channel.endpoints()[0].outstanding == 0

    run(scenario())


def test_call_cancel_on_a_unary_call(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    slow = backend("slow", faults=Faults(hang=True), max_workers=1)

    async def scenario() -> None:
        async with await ready_channel([slow.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            call = stub.Echo(request(), timeout=60)
            fired: list[object] = []
            call.add_done_callback(fired.append)
            await eventually(lambda: slow.calls == 1)
            assert not call.done() and call.time_remaining() is not None
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled() and call.done()
            assert await call.code() is grpc.StatusCode.CANCELLED
            await eventually(lambda: fired == [call])
            assert channel.endpoints()[0].outstanding == 0
            assert outcomes == [grpc.StatusCode.CANCELLED]
            assert not call.cancel()  # already over
            await frees_the_worker(slow, stub)

    run(scenario())


def test_cancelling_a_task_reading_a_stream_mid_stream(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    streaming = backend("streaming", faults=Faults(latency=0.05), max_workers=1)

    async def scenario() -> None:
        async with await ready_channel([streaming.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            received: list[int] = []

            async def read_all() -> None:
                async for reply in stub.ServerStream(request("s", count=1000), timeout=60):
                    received.append(reply.index)

            reader = asyncio.ensure_future(read_all())
            await eventually(lambda: len(received) >= 3)
            assert channel.endpoints()[0].outstanding == 1
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert outcomes == [grpc.StatusCode.CANCELLED]
            await frees_the_worker(streaming, stub)  # 1000 x 50 ms would take a minute

    run(scenario())


def test_cancelled_bidi_stream_is_released(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    echo = backend("echo")

    async def scenario() -> None:
        async with await ready_channel([echo.address]) as channel:
            call = echo_pb2_grpc.EchoStub(channel).BidiStream(timeout=60)
            await call.write(request("one"))
            assert (await call.read()).message == "one"
            assert channel.endpoints()[0].outstanding == 1
            call.cancel()
            assert await call.code() is grpc.StatusCode.CANCELLED
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert outcomes == [grpc.StatusCode.CANCELLED]
            with pytest.raises(asyncio.CancelledError):
                await call.read()

    run(scenario())


def test_abandoned_stream_is_cancelled_and_released(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    streaming = backend("streaming", faults=Faults(latency=0.05), max_workers=1)

    async def scenario() -> None:
        async with await ready_channel([streaming.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            call = stub.ServerStream(request("s", count=1000), timeout=60)
            assert (await call.read()).index == 0
            del call  # neither finished nor cancelled: dropped
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert outcomes == [grpc.StatusCode.CANCELLED]
            await frees_the_worker(streaming, stub)

    run(scenario())


def test_cancelling_a_call_that_waits_for_an_endpoint(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    address, _port = dead_address(backend)

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel([address]) as channel:
            call = echo_pb2_grpc.EchoStub(channel).Echo(request(), wait_for_ready=True)
            await asyncio.sleep(0.2)
            assert not call.done()
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled() and call.done()
            assert await call.code() is grpc.StatusCode.CANCELLED
            assert channel.endpoints()[0].outstanding == 0
            assert outcomes == []  # it never reached an endpoint

    run(scenario())


@pytest.mark.parametrize("path", ["hot", "waiting"])
def test_cancel_ends_the_call_at_once(
    backend: StartBackend, outcomes: list[grpc.StatusCode], path: str
) -> None:
    """As with grpc.aio's own calls: cancelled and done as soon as cancel() returns True."""
    address, _port = dead_address(backend)
    hanging = backend("hanging", faults=Faults(hang=True), max_workers=1)

    async def scenario() -> None:
        if path == "hot":
            channel = await ready_channel([hanging.address])
        else:  # never an endpoint: the call waits in the chain's task
            channel = resilientrpc.aio.ResilientChannel([address])
        async with channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            call = stub.Echo(request(), timeout=60, wait_for_ready=True)
            fired: list[object] = []
            call.add_done_callback(fired.append)
            await asyncio.sleep(0.1)
            assert not call.done() and not call.cancelled()
            assert call.cancel()
            assert call.cancelled() and call.done()  # no loop turn in between
            assert fired == [call]
            assert not call.cancel()
            later: list[object] = []
            call.add_done_callback(later.append)  # on a call that is over: at once
            assert later == [call]
            assert await call.code() is grpc.StatusCode.CANCELLED
            with pytest.raises(asyncio.CancelledError):
                await call
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert outcomes == ([grpc.StatusCode.CANCELLED] if path == "hot" else [])
            if path == "hot":
                await frees_the_worker(hanging, stub)

    run(scenario())


# -- done callbacks -----------------------------------------------------------------------


def raising(call: object) -> None:
    raise RuntimeError("a caller's callback failed")


@pytest.mark.parametrize("path", ["hot", "waiting", "failed"])
def test_a_raising_done_callback_breaks_nothing(
    backend: StartBackend,
    outcomes: list[grpc.StatusCode],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    """Hot: on the endpoint call. Waiting: queued until the chain made it. Failed: none."""
    echo = backend("echo")
    address, _port = dead_address(backend)

    async def scenario() -> None:
        if path == "hot":
            channel = await ready_channel([echo.address])
        elif path == "waiting":
            channel = resilientrpc.aio.ResilientChannel([echo.address])
        else:
            channel = resilientrpc.aio.ResilientChannel([address])
            await asyncio.wait_for(channel.wait_for_state_change(CONNECTING), 5)
        async with channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            calls = [stub.Echo(request(str(n)), timeout=5) for n in range(2)]
            fired: list[object] = []
            for call in calls:
                call.add_done_callback(raising)
                call.add_done_callback(fired.append)
            for call in calls:
                if path == "failed":
                    with pytest.raises(grpc.aio.AioRpcError):
                        await call
                else:
                    assert (await call).backend == "echo"
            await eventually(lambda: len(fired) == 2)
            assert {id(call) for call in fired} == {id(call) for call in calls}  # any order
            await eventually(lambda: channel.endpoints()[0].outstanding == 0)
            assert len(outcomes) == (0 if path == "failed" else 2)
            if path != "failed":
                assert (await stub.Echo(request(), timeout=5)).backend == "echo"

    with caplog.at_level(logging.ERROR, logger="resilientrpc._calls"):  # the shared guard
        run(scenario())
    assert len([r for r in caplog.records if r.name == "resilientrpc._calls"]) == 2
    # The captured records' tracebacks hold the calls' frames, and so their grpc.aio
    # channel and grpc's poller thread, until pytest drops them: let them go now.
    for record in caplog.records:
        record.exc_info = None


# -- lifetime -------------------------------------------------------------------------------


def test_async_with_and_close_leave_no_task_or_thread(backends: StartBackends) -> None:
    group = backends(3)
    threads_before = snapshot()

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel(group.addresses) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            await stub.Echo(request(), timeout=5)
            assert [r.index async for r in stub.ServerStream(request(count=3))] == [0, 1, 2]
            assert len(asyncio.all_tasks()) > 1  # the supervisor's watchers
        assert channel.get_state() is SHUTDOWN
        await channel.close()  # idempotent
        current = asyncio.current_task()
        assert [t for t in asyncio.all_tasks() if t is not current] == []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Echo(request(), timeout=5)
        assert caught.value.code() is grpc.StatusCode.CANCELLED
        assert caught.value.details() == "channel closed"
        with pytest.raises(grpc.aio.UsageError):
            await channel.channel_ready()

    run(scenario())
    group.stop()  # the backends' handler threads end with them
    assert threads_left(threads_before) == []


def test_close_ends_calls_waiting_for_an_endpoint(backend: StartBackend) -> None:
    address, _port = dead_address(backend)

    async def scenario() -> None:
        channel = resilientrpc.aio.ResilientChannel([address])
        call = echo_pb2_grpc.EchoStub(channel).Echo(request(), wait_for_ready=True)
        await asyncio.sleep(0.1)
        await channel.close()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.CANCELLED
        assert caught.value.details() == "channel closed"

    run(scenario())


def test_close_cancels_a_stream_in_flight_on_every_grpcio(backend: StartBackend) -> None:
    """grpcio 1.68.1's ``grpc.aio.Channel.close()`` leaves a running server stream running
    (probed: not done, its done callbacks never called); the channel cancels it itself."""
    echo = backend("echo")

    async def scenario() -> None:
        channel = await ready_channel([echo.address])
        stub = echo_pb2_grpc.EchoStub(channel)
        stream = stub.ServerStream(echo_pb2.EchoRequest(message="s", count=100_000), timeout=20)
        await stream.read()
        ended: list[grpc.StatusCode] = []
        stream.add_done_callback(lambda call: ended.append(FinishedCall(call).code()))
        await channel.close()
        assert stream.done()
        assert ended == [grpc.StatusCode.CANCELLED]
        assert channel.endpoints()[0].outstanding == 0

    run(scenario())


def test_close_with_grace_lets_calls_in_flight_finish(backend: StartBackend) -> None:
    slowish = backend("slowish", faults=Faults(latency=0.3))

    async def scenario() -> None:
        channel = await ready_channel([slowish.address])
        stub = echo_pb2_grpc.EchoStub(channel)
        call = stub.Echo(request("late"), timeout=5)
        await eventually(lambda: slowish.calls == 1)
        await channel.close(grace=5)
        assert (await call).message == "late"
        assert channel.endpoints()[0].outstanding == 0

    run(scenario())


@pytest.mark.parametrize("path", ["hot", "chain"])
def test_a_send_refused_by_a_closing_endpoint_ends_cancelled(
    backend: StartBackend, outcomes: list[grpc.StatusCode], path: str
) -> None:
    """An endpoint picked as its channel closes: CANCELLED "channel closed", not UsageError.

    Staged: the endpoint is marked SHUTDOWN (as the balancer does first) and its transport
    is a closed grpc.aio channel, while the READY picker still holds it.
    """
    echo = backend("echo")

    async def scenario() -> None:
        async with await ready_channel([echo.address]) as channel:
            if path == "chain":
                channel._interceptors.insert(0, Recording())  # before any stub is made
            stub = echo_pb2_grpc.EchoStub(channel)
            [endpoint] = channel._balancer.endpoints
            closed = grpc.aio.insecure_channel(echo.address)
            await closed.close()
            live = endpoint.transport
            endpoint.transport, endpoint.state = EndpointTransport(closed), SHUTDOWN
            try:
                call = stub.Echo(request(), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
            finally:
                endpoint.transport, endpoint.state = live, READY
            assert caught.value.code() is grpc.StatusCode.CANCELLED
            assert caught.value.details() == "channel closed"
            assert isinstance(caught.value.__cause__, grpc.aio.UsageError)
            assert call.done() and await call.code() is grpc.StatusCode.CANCELLED
            assert outcomes == [grpc.StatusCode.CANCELLED]
            assert channel.endpoints()[0].outstanding == 0
            assert (await stub.Echo(request(), timeout=5)).backend == "echo"

    run(scenario())


def test_built_outside_a_loop_starts_on_first_use(backend: StartBackend) -> None:
    echo = backend("echo")
    channel = resilientrpc.aio.ResilientChannel([echo.address])
    assert channel.get_state() is grpc.ChannelConnectivity.IDLE  # nothing started

    async def scenario() -> None:
        async with channel:
            reply = await echo_pb2_grpc.EchoStub(channel).Echo(request(), timeout=5)
            assert reply.backend == "echo"

    run(scenario())


# -- connectivity -------------------------------------------------------------------------


def test_channel_ready_get_state_and_wait_for_state_change(backend: StartBackend) -> None:
    address, port = dead_address(backend)
    revived: list[Backend] = []

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel([address]) as channel:
            assert channel.get_state() is CONNECTING
            await asyncio.wait_for(channel.wait_for_state_change(CONNECTING), 5)
            assert channel.get_state(try_to_connect=True) is TRANSIENT_FAILURE
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(channel.channel_ready(), 0.3)
            revived.append(backend("revived", port=port))
            await asyncio.wait_for(channel.channel_ready(), 10)
            assert channel.get_state() is READY
            reply = await echo_pb2_grpc.EchoStub(channel).Echo(request(), timeout=5)
            assert reply.backend == "revived"
            waiter = asyncio.ensure_future(channel.wait_for_state_change(READY))
            await asyncio.sleep(0.05)
            assert not waiter.done()
        await asyncio.wait_for(waiter, 5)  # closing is a change (to SHUTDOWN)

    run(scenario())


# -- failures are AioRpcError -------------------------------------------------------------


def test_no_endpoint_fails_at_once_naming_addresses(backend: StartBackend) -> None:
    first, _ = dead_address(backend)
    second, _ = dead_address(backend)

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel([first, second]) as channel:
            await asyncio.wait_for(channel.wait_for_state_change(CONNECTING), 5)
            stub = echo_pb2_grpc.EchoStub(channel)
            started = time.monotonic()
            call = stub.Echo(request(), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert time.monotonic() - started < 0.5
            error = caught.value
            assert isinstance(error, grpc.RpcError)
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert first in (error.details() or "") and second in (error.details() or "")
            assert call.done() and not call.cancelled()
            assert await call.code() is grpc.StatusCode.UNAVAILABLE
            assert await call.details() == error.details()
            assert list(await call.trailing_metadata()) == []
            stream = stub.ServerStream(request(count=2), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.read()
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE

    run(scenario())


def test_wait_for_ready_waits_then_deadline_or_endpoint(backend: StartBackend) -> None:
    address, port = dead_address(backend)
    revived: list[Backend] = []

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel([address]) as channel:
            await asyncio.wait_for(channel.wait_for_state_change(CONNECTING), 5)
            stub = echo_pb2_grpc.EchoStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Echo(request(), timeout=0.3, wait_for_ready=True)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert address in (caught.value.details() or "")
            assert 0.25 < time.monotonic() - started < 2
            call = stub.Echo(request(), timeout=10, wait_for_ready=True)
            assert call.time_remaining() is not None
            await asyncio.sleep(0.2)
            assert not call.done()
            revived.append(backend("revived", port=port))
            assert (await call).backend == "revived"

    run(scenario())


def test_a_waiting_call_has_one_deadline(
    backend: StartBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline the wrapper reports is the one the router waits for, on its clock."""
    address, _port = dead_address(backend)
    deadlines: list[float | None] = []
    pick = AsyncRouter.pick

    async def spy(
        self: AsyncRouter, metadata: Any, wait: bool, timeout: Any, deadline: Any = None
    ) -> Any:
        deadlines.append(deadline)
        return await pick(self, metadata, wait, timeout, deadline)

    monkeypatch.setattr(AsyncRouter, "pick", spy)
    skewed = 1000.0  # a channel clock that is not time.monotonic

    async def scenario() -> None:
        channel = resilientrpc.aio.ResilientChannel(
            [address], clock=lambda: time.monotonic() + skewed
        )
        async with channel:
            call = echo_pb2_grpc.EchoStub(channel).Echo(request(), timeout=0.3, wait_for_ready=True)
            remaining = call.time_remaining()
            assert remaining is not None and 0.2 < remaining <= 0.3
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert deadlines == [call._deadline]

    run(scenario())


# -- streaming requests: read / write / done_writing ----------------------------------------


@pytest.mark.parametrize("path", ["hot", "waiting"])
def test_bidi_read_write_done_writing(backend: StartBackend, path: str) -> None:
    """Hot: the picker is READY at call time. Waiting: the call is made while connecting."""
    echo = backend("echo")

    async def scenario() -> None:
        channel = resilientrpc.aio.ResilientChannel([echo.address])
        if path == "hot":
            await channel.channel_ready()
        async with channel:
            call = echo_pb2_grpc.EchoStub(channel).BidiStream(timeout=5)
            for message in ("a", "b", "c"):
                await call.write(request(message))
                reply = await call.read()
                assert reply.message == message and reply.backend == "echo"
            await call.done_writing()
            await call.done_writing()  # idempotent
            assert await call.read() is grpc.aio.EOF
            assert await call.code() is grpc.StatusCode.OK
            with pytest.raises(asyncio.InvalidStateError):
                await call.write(request("late"))
            assert channel.endpoints()[0].outstanding == 0

    run(scenario())


@pytest.mark.parametrize("path", ["hot", "waiting"])
def test_client_stream_write_then_await(backend: StartBackend, path: str) -> None:
    echo = backend("echo")

    async def scenario() -> None:
        channel = resilientrpc.aio.ResilientChannel([echo.address])
        if path == "hot":
            await channel.channel_ready()
        async with channel:
            call = echo_pb2_grpc.EchoStub(channel).ClientStream(timeout=5)
            for message in ("x", "y"):
                await call.write(request(message))
            await call.done_writing()
            reply = await call
            assert reply.message == "x,y" and reply.index == 2

    run(scenario())


def test_writes_waiting_for_room_share_one_done_callback(backend: StartBackend) -> None:
    """A write into a full pipe waits for room or for the call's end, each time: the pipe
    watches the call's end with one done callback, however many writes wait."""
    echo = backend("echo")
    writes = 2000

    async def scenario() -> None:
        async with resilientrpc.aio.ResilientChannel([echo.address]) as channel:
            call = echo_pb2_grpc.EchoStub(channel).BidiStream(timeout=30)  # while CONNECTING
            assert call._pipe is not None  # the chain's path: writes go through the pipe
            await call.write(request("0"))
            endpoint_call = call._call
            registered: list[object] = []
            add = endpoint_call.add_done_callback

            def counting(callback: Any) -> None:
                registered.append(callback)
                add(callback)

            endpoint_call.add_done_callback = counting
            received: list[str] = []

            async def read_all() -> None:
                async for reply in call:
                    received.append(reply.message)

            reader = asyncio.ensure_future(read_all())
            for n in range(1, writes):
                await call.write(request(str(n)))
            await call.done_writing()
            await asyncio.wait_for(reader, 20)
            assert received == [str(n) for n in range(writes)]
            assert len(registered) <= 1
            assert await call.code() is grpc.StatusCode.OK

    run(scenario())


def test_async_request_iterators(backend: StartBackend) -> None:
    echo = backend("echo")

    async def requests(*messages: str) -> Any:
        for message in messages:
            yield request(message)

    async def scenario() -> None:
        async with await ready_channel([echo.address]) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            assert (await stub.ClientStream(requests("p", "q"), timeout=5)).message == "p,q"
            replies = [r.message async for r in stub.BidiStream(requests("u", "v"), timeout=5)]
            assert replies == ["u", "v"]
            mixed = stub.BidiStream(requests("w"), timeout=5)
            with pytest.raises(grpc.aio.UsageError):  # iterator and write() do not mix
                await mixed.write(request("z"))
            assert [r.message async for r in mixed] == ["w"]

    run(scenario())


@pytest.mark.parametrize("path", ["hot", "waiting"])
def test_call_options_pass_through(backend: StartBackend, path: str) -> None:
    echo = backend("echo")

    async def scenario() -> None:
        channel = resilientrpc.aio.ResilientChannel([echo.address])
        if path == "hot":
            await channel.channel_ready()
        async with channel:
            call = echo_pb2_grpc.EchoStub(channel).Echo(
                request("z"),
                timeout=5,
                metadata=grpc.aio.Metadata(("x-echo-id", "7")),
                compression=grpc.Compression.Gzip,
            )
            remaining = call.time_remaining()
            assert remaining is not None and 0 < remaining <= 5
            assert (await call).message == "z"
            assert ("x-echo-id", "7") in list(await call.initial_metadata())
            assert ("x-echo-id", "7") in list(await call.trailing_metadata())
            assert await call.details() == ""

    run(scenario())


# -- layering: an interceptor in front of the balancing step ------------------------------


class Recording(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """A pass-through interceptor, where retry and tracing will stand."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def _pass(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, req: Any
    ) -> Any:
        self.methods.append(details.method.rsplit("/", 1)[-1])
        return await continuation(details, req)

    async def intercept_unary_unary(self, continuation: Any, details: Any, req: Any) -> Any:
        return await self._pass(continuation, details, req)

    async def intercept_unary_stream(self, continuation: Any, details: Any, req: Any) -> Any:
        return await self._pass(continuation, details, req)

    async def intercept_stream_unary(self, continuation: Any, details: Any, req: Any) -> Any:
        return await self._pass(continuation, details, req)

    async def intercept_stream_stream(self, continuation: Any, details: Any, req: Any) -> Any:
        return await self._pass(continuation, details, req)


def test_an_interceptor_in_front_sees_every_call_shape(backend: StartBackend) -> None:
    echo = backend("echo")
    recording = Recording()

    async def scenario() -> None:
        async with await ready_channel([echo.address]) as channel:
            channel._interceptors.insert(0, recording)  # before any stub is made
            stub = echo_pb2_grpc.EchoStub(channel)
            assert (await stub.Echo(request("e"), timeout=5)).message == "e"
            assert [r.index async for r in stub.ServerStream(request(count=2))] == [0, 1]
            assert (await stub.ClientStream(iter([request("c")]))).message == "c"
            bidi = stub.BidiStream(timeout=5)
            await bidi.write(request("b"))
            assert (await bidi.read()).message == "b"
            await bidi.done_writing()
            assert await bidi.read() is grpc.aio.EOF
            assert channel.endpoints()[0].outstanding == 0
            assert channel.endpoints()[0].calls == 4

    run(scenario())
    assert recording.methods == ["Echo", "ServerStream", "ClientStream", "BidiStream"]


class Stubborn(Recording):
    """Keeps its caller's cancellation from the chain, then makes the call anyway."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, req: Any) -> Any:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
        return await continuation(details, req)


def test_a_call_made_after_cancel_is_cancelled_too(
    backend: StartBackend, outcomes: list[grpc.StatusCode]
) -> None:
    echo = backend("echo")

    async def scenario() -> None:
        async with await ready_channel([echo.address]) as channel:
            channel._interceptors.insert(0, Stubborn())  # before any stub is made
            call = echo_pb2_grpc.EchoStub(channel).Echo(request(), timeout=5)
            await asyncio.sleep(0.05)
            assert call.cancel() and call.cancelled() and call.done()
            await eventually(lambda: outcomes == [grpc.StatusCode.CANCELLED])
            assert channel.endpoints()[0].outstanding == 0

    run(scenario())


def test_finished_call_raises_if_the_status_is_not_readable_at_once() -> None:
    """A done grpc.aio call's status is read synchronously; if it ever were not, say so."""

    class Unfinished:
        async def code(self) -> grpc.StatusCode:
            await asyncio.sleep(0)  # suspends: no status yet
            return grpc.StatusCode.OK

    with pytest.raises(RuntimeError, match="not available"):
        FinishedCall(Unfinished()).code()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "kwargs"),
    [
        ([], {}),
        (["127.0.0.1:1", "localhost:notaport"], {}),
        (["127.0.0.1:1"], {"config": {"loadBalancingConfig": [{"ring_hash": {}}]}}),
        (["127.0.0.1:1"], {"config": {"methodConfig": [{"name": [{}], "timeout": "soon"}]}}),
        (["127.0.0.1:1"], {"options": [("grpc.ok", 1), "nope"]}),
        (["127.0.0.1:1"], {"credentials": "tls please"}),
    ],
)
def test_bad_input_raises_what_the_sync_channel_raises(targets: Any, kwargs: Any) -> None:
    with pytest.raises(ConfigError) as sync_error:
        resilientrpc.ResilientChannel(targets, **kwargs)

    async def scenario() -> None:
        with pytest.raises(ConfigError) as aio_error:
            resilientrpc.aio.ResilientChannel(targets, **kwargs)
        assert aio_error.value.path == sync_error.value.path
        assert str(aio_error.value) == str(sync_error.value)

    run(scenario())  # inside a loop: nothing was started, no task is left
    with pytest.raises(ConfigError) as outside:  # and outside one
        resilientrpc.aio.ResilientChannel(targets, **kwargs)
    assert str(outside.value) == str(sync_error.value)


def test_public_names_import() -> None:
    for module in (resilientrpc.aio, interceptors.aio):
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_an_unclosed_channel_nobody_holds_is_stopped_with_a_warning(
    backends: StartBackends,
) -> None:
    group = backends(2)

    async def scenario() -> None:
        channel = await ready_channel(group.addresses)
        stub = echo_pb2_grpc.EchoStub(channel)
        del channel
        gc.collect()
        assert (await stub.Echo(request("kept"), timeout=5)).message == "kept"  # stub holds it
        with pytest.warns(ResourceWarning, match="unclosed"):
            del stub
            gc.collect()
        current = asyncio.current_task()
        # The channel's watches end with it: nothing of it is left on the loop.
        await eventually(lambda: not [t for t in asyncio.all_tasks() if t is not current])

    run(scenario())
