"""The synchronous channel's lifetime under stress: closing with calls in flight, user
callbacks that fail or block, resolver failures, endpoints removed with calls in flight.
"""

from __future__ import annotations

import collections
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import resilientrpc.supervisor
from resilientrpc import ResilientChannel
from resilientrpc._calls import PendingCall
from resilientrpc.testing import Backends, echo_pb2, echo_pb2_grpc
from tests.waiting import eventually

Start = Callable[..., Backends]
REQUEST = echo_pb2.EchoRequest(message="x")


def _dead_address(backends: Start) -> str:
    group = backends(1)
    address = group.addresses[0]
    group.stop()
    return address


def test_close_with_calls_in_flight_ends_them_as_rpc_errors(backends: Start) -> None:
    group = backends(3)
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    for _trial in range(5):
        channel = ResilientChannel(group.addresses)
        grpc.channel_ready_future(channel).result(timeout=5)
        stub = echo_pb2_grpc.EchoStub(channel)
        stop = threading.Event()

        def work(stub: Any = stub, stop: threading.Event = stop) -> None:
            deadline = time.monotonic() + 5
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    stub.Echo(REQUEST, timeout=2)
                    outcome = "OK"
                except grpc.RpcError as error:
                    outcome = error.code().name
                except Exception as error:  # what must not happen: a raw exception
                    outcome = type(error).__name__
                with lock:
                    outcomes[outcome] += 1

        workers = [threading.Thread(target=work) for _ in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(0.05)
        channel.close()
        time.sleep(0.05)
        stop.set()
        for worker in workers:
            worker.join(10)
    assert outcomes["OK"] > 0 and outcomes["CANCELLED"] > 0, outcomes
    assert set(outcomes) <= {"OK", "CANCELLED"}, outcomes


def test_raising_done_callbacks_do_not_strand_other_pending_calls(backends: Start) -> None:
    address = _dead_address(backends)
    channel = ResilientChannel([address])
    stub = echo_pb2_grpc.EchoStub(channel)
    futures = [stub.Echo.future(REQUEST, timeout=30, wait_for_ready=True) for _ in range(6)]

    def bad(_future: Any) -> None:
        raise RuntimeError("a user's callback broke")

    for future in futures:
        future.add_done_callback(bad)
    channel.close()
    codes = [future.exception(timeout=5).code() for future in futures]
    assert codes == [grpc.StatusCode.CANCELLED] * 6


def test_user_callbacks_never_run_on_the_background_loop(backends: Start) -> None:
    address = _dead_address(backends)
    channel = ResilientChannel([address])
    ran_on: list[str] = []
    closed = threading.Event()

    def close_from_callback(_future: Any) -> None:
        ran_on.append(threading.current_thread().name)
        channel.close()  # from a callback: must neither hang nor fail
        closed.set()

    future = echo_pb2_grpc.EchoStub(channel).Echo.future(REQUEST, timeout=0.2, wait_for_ready=True)
    future.add_done_callback(close_from_callback)
    assert closed.wait(10), "close() from a done callback did not return"
    assert future.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert ran_on and ran_on[0].endswith("-callbacks"), ran_on
    channel.close()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("resilientrpc-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.02)


def test_pending_cancel_is_seen_by_its_callbacks(backends: Start) -> None:
    address = _dead_address(backends)
    with ResilientChannel([address]) as channel:
        future = echo_pb2_grpc.EchoStub(channel).Echo.future(
            REQUEST, timeout=30, wait_for_ready=True
        )
        seen: list[tuple[bool, grpc.StatusCode]] = []
        future.add_done_callback(lambda f: seen.append((f.cancelled(), f.code())))
        assert future.cancel()
        # Done callbacks run on the channel's callback thread (as grpc runs its own on
        # another thread): soon after, not necessarily before cancel() returns.
        assert eventually(lambda: bool(seen))
        assert seen == [(True, grpc.StatusCode.CANCELLED)]
        assert channel._router.waiting == 0


def test_pending_result_timeout_counts_the_wait_for_an_endpoint() -> None:
    asked: list[float | None] = []

    class Settled:
        def result(self, timeout: float | None = None) -> str:
            asked.append(timeout)
            return "done"

    pending = PendingCall(None)
    timer = threading.Timer(0.3, lambda: pending.settle(Settled()))
    timer.start()
    try:
        assert pending.result(timeout=2.0) == "done"
    finally:
        timer.join()
    assert asked[0] is not None and asked[0] <= 1.75


def test_with_call_returns_the_message_from_its_call(backends: Start) -> None:
    group = backends(1)
    with ResilientChannel(group.addresses) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        reply, call = stub.Echo.with_call(REQUEST, timeout=5)
        assert isinstance(call.result(), echo_pb2.EchoReply) and call.result() == reply
        reply, call = stub.ClientStream.with_call(iter([REQUEST]), timeout=5)
        assert isinstance(call.result(), echo_pb2.EchoReply) and call.result() == reply


def test_any_resolver_failure_fails_calls_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(target: object) -> list[str]:
        raise ValueError("resolver exploded")

    monkeypatch.setattr(resilientrpc.supervisor, "resolve", broken)
    with ResilientChannel("dns:///backend.internal:50051") as channel:
        deadline = time.monotonic() + 5
        while True:
            try:
                echo_pb2_grpc.EchoStub(channel).Echo(REQUEST, timeout=2)
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE:
                    assert "resolver exploded" in error.details()
                    break
            assert time.monotonic() < deadline, "calls never failed with the resolver's error"
            time.sleep(0.02)


def test_a_removed_endpoint_finishes_its_calls_in_flight(backends: Start) -> None:
    group = backends(2, names=["leaving", "staying"])
    group[0].configure(latency=0.5)
    with ResilientChannel(
        group.addresses, config={"loadBalancingConfig": [{"pick_first": {}}]}
    ) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        deadline = time.monotonic() + 5
        while not all(s.available for s in channel.endpoints()):
            assert time.monotonic() < deadline, channel.endpoints()
            time.sleep(0.01)
        future = echo_pb2_grpc.EchoStub(channel).Echo.future(REQUEST, timeout=5)
        while channel.endpoints()[0].outstanding != 1:  # the call is at the slow backend
            assert time.monotonic() < deadline, channel.endpoints()
            time.sleep(0.01)

        async def remove_leaving() -> None:
            channel._supervisor.set_addresses([group.addresses[1]])

        channel._loop.run(remove_leaving())
        assert future.result(timeout=5).backend == "leaving"  # drained, not cancelled
        assert echo_pb2_grpc.EchoStub(channel).Echo(REQUEST, timeout=5).backend == "staying"
        assert [s.address for s in channel.endpoints()] == [group.addresses[1]]


def test_an_unclosed_channel_nobody_holds_is_stopped_with_a_warning(backends: Start) -> None:
    group = backends(1)
    channel = ResilientChannel(group.addresses)
    stub = echo_pb2_grpc.EchoStub(channel)
    del channel
    gc.collect()
    assert stub.Echo(REQUEST, timeout=5).message == "x"  # the stub keeps it alive
    with pytest.warns(ResourceWarning, match="unclosed"):
        del stub
        gc.collect()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("resilientrpc-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.02)
    gc.collect()  # its event loop was closed too: collecting it warns about nothing
