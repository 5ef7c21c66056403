"""Behaviour specific to the synchronous channel's grpc.Channel / grpc.Call interfaces."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health

from resilientrpc import ResilientChannel
from resilientrpc.router import SyncRouter
from resilientrpc.testing import Backend, Backends, Faults, echo_pb2, echo_pb2_grpc
from resilientrpc.testing.servicer import BackendState, add_backend_services

Start = Callable[..., Backends]


def wait_idle(channel: ResilientChannel, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while any(s.outstanding for s in channel.endpoints()):
        assert time.monotonic() < deadline, channel.endpoints()
        time.sleep(0.01)


def recorder(calls: list[Any]) -> tuple[Callable[[Any], None], threading.Event]:
    """A done-callback that records its argument, and an event set once it has run.

    grpc may run a future's done-callbacks on its own thread after ``result()`` returns.
    """
    called = threading.Event()

    def record(future: Any) -> None:
        calls.append(future)
        called.set()

    return record, called


def test_future_shapes(backends: Start) -> None:
    group = backends(2)
    with ResilientChannel(group.addresses) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        future = stub.Echo.future(echo_pb2.EchoRequest(message="f"), timeout=5)
        done: list[Any] = []
        record, called = recorder(done)
        future.add_done_callback(record)
        assert future.result().message == "f"
        assert called.wait(5), "the done-callback never ran"
        assert future.code() is grpc.StatusCode.OK and done == [future]
        requests = iter([echo_pb2.EchoRequest(message=m) for m in "ab"])
        stream_future = stub.ClientStream.future(requests, timeout=5)
        assert stream_future.result().message == "a,b"
        reply, call = stub.ClientStream.with_call(iter([echo_pb2.EchoRequest(message="z")]))
        assert reply.message == "z" and call.code() is grpc.StatusCode.OK
        wait_idle(channel)


def test_request_serialized_once_and_bad_response_is_internal(backends: Start) -> None:
    group = backends(1)
    serialized: list[object] = []

    def serialize(request: echo_pb2.EchoRequest) -> bytes:
        serialized.append(request)
        return bytes(request.SerializeToString())

    with ResilientChannel(group.addresses) as channel:
        echo = channel.unary_unary(
            "/resilientrpc.echo.v1.Echo/Echo",
            request_serializer=serialize,
            response_deserializer=echo_pb2.EchoReply.FromString,
        )
        assert echo(echo_pb2.EchoRequest(message="once"), timeout=5).message == "once"
        assert len(serialized) == 1

        def broken(data: bytes) -> object:
            raise ValueError("not for me")

        garbled = channel.unary_unary(
            "/resilientrpc.echo.v1.Echo/Echo",
            request_serializer=serialize,
            response_deserializer=broken,
        )
        with pytest.raises(grpc.RpcError) as caught:
            garbled(echo_pb2.EchoRequest(message="x"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.INTERNAL


def test_abandoned_stream_releases_its_slot(backends: Start) -> None:
    group = backends(1)
    with ResilientChannel(group.addresses) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        stream = stub.ServerStream(echo_pb2.EchoRequest(message="x", count=10_000), timeout=30)
        next(stream)
        assert channel.endpoints()[0].outstanding == 1
        del stream
        gc.collect()
        wait_idle(channel)
        assert channel.endpoints()[0].calls == 1


def test_failing_request_iterator_releases_its_slot(backends: Start) -> None:
    group = backends(1)

    def requests() -> Iterator[echo_pb2.EchoRequest]:
        yield echo_pb2.EchoRequest(message="a")
        raise RuntimeError("request source broke")

    with ResilientChannel(group.addresses) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.BidiStream(requests(), timeout=5))
        assert caught.value.code() is grpc.StatusCode.UNKNOWN
        wait_idle(channel)


def test_user_interceptors_and_compression_on_top(backends: Start) -> None:
    group = backends(1)
    seen: list[str] = []

    class Recorder(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(
            self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
        ) -> Any:
            seen.append(details.method)
            return continuation(details, request)

    with ResilientChannel(group.addresses) as channel:
        intercepted = grpc.intercept_channel(channel, Recorder())
        stub = echo_pb2_grpc.EchoStub(intercepted)
        reply = stub.Echo(
            echo_pb2.EchoRequest(message="c"), timeout=5, compression=grpc.Compression.Gzip
        )
        assert reply.message == "c"
        assert seen == ["/resilientrpc.echo.v1.Echo/Echo"]


def test_credentials_and_call_credentials_reach_every_backend() -> None:
    """TLS-style channel credentials and per-call credentials pass through (local creds)."""
    servers: list[grpc.Server] = []
    addresses: list[str] = []
    tokens: list[str] = []

    class TokenCheck(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
            tokens.extend(v for k, v in details.invocation_metadata if k == "authorization")
            return continuation(details)

    for index in range(2):
        server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[TokenCheck()])
        state = BackendState(
            name=f"secure{index}", faults=Faults(), seed=1, health_servicer=health.HealthServicer()
        )
        add_backend_services(server, state)
        port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
        server.start()
        servers.append(server)
        addresses.append(f"127.0.0.1:{port}")
    try:
        credentials = grpc.local_channel_credentials()
        with ResilientChannel(addresses, credentials=credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=5)
            stub = echo_pb2_grpc.EchoStub(channel)
            token = grpc.access_token_call_credentials("sesame")
            names = {
                stub.Echo(echo_pb2.EchoRequest(message="s"), timeout=5, credentials=token).backend
                for _ in range(6)
            }
            assert names == {"secure0", "secure1"}
            assert tokens == ["Bearer sesame"] * 6
    finally:
        for server in servers:
            server.stop(0)


def waiting_in_router(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked in :meth:`SyncRouter.pick`, on its condition variable."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code is not threading.Condition.wait.__code__:
        return False
    while frame is not None:
        if frame.f_code is SyncRouter.pick.__code__:
            return True
        frame = frame.f_back
    return False


def test_closed_channel_cancels_waiting_calls(backends: Start) -> None:
    group = backends(1)
    address = group.addresses[0]
    group.stop()
    channel = ResilientChannel([address])
    results: list[grpc.StatusCode] = []

    def call() -> None:
        try:
            echo_pb2_grpc.EchoStub(channel).Echo(
                echo_pb2.EchoRequest(message="w"), timeout=10, wait_for_ready=True
            )
        except grpc.RpcError as error:
            results.append(error.code())

    waiter = threading.Thread(target=call, name="waiting-call")
    waiter.start()
    # The call must really be blocked in the router, waiting for an endpoint, when the
    # channel closes (else this would test a call made on a closed channel).
    deadline = time.monotonic() + 5
    while not waiting_in_router(waiter):
        assert time.monotonic() < deadline, (
            f"the call never waited for an endpoint: alive={waiter.is_alive()}, {results=}, "
            f"{channel.endpoints()}"
        )
        time.sleep(0.01)
    started = time.monotonic()
    channel.close()
    waiter.join(5)
    assert results == [grpc.StatusCode.CANCELLED]
    assert time.monotonic() - started < 2


def _dead_address(backends: Start) -> tuple[str, int]:
    group = backends(1)
    address, port = group.addresses[0], group[0].port
    group.stop()
    return address, port


def _restart(port: int) -> Backend:
    """A backend on the port :func:`_dead_address` released, or a clear failure."""
    try:
        return Backend("revived", port=port).start()
    except Exception as error:
        pytest.fail(
            f"could not start a backend again on the just-released port {port} "
            f"(another process may have taken it): {error!r}"
        )


def test_future_without_endpoint_returns_at_once_and_settles_later(backends: Start) -> None:
    address, port = _dead_address(backends)
    with ResilientChannel([address]) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        started = time.monotonic()
        future = stub.Echo.future(
            echo_pb2.EchoRequest(message="later"), timeout=10, wait_for_ready=True
        )
        stream = stub.ServerStream(
            echo_pb2.EchoRequest(message="s", count=2), timeout=10, wait_for_ready=True
        )
        assert time.monotonic() - started < 0.5  # neither waited for an endpoint
        assert not future.done() and future.running()
        seen: list[object] = []
        record, called = recorder(seen)
        future.add_done_callback(record)
        revived = _restart(port)
        try:
            assert future.result(timeout=10).backend == "revived"
            assert [r.index for r in stream] == [0, 1]
            assert called.wait(5), "the done-callback never ran"
            assert seen == [future]
            wait_idle(channel)
        finally:
            revived.stop()


def test_pending_future_deadline_and_cancel(backends: Start) -> None:
    address, _port = _dead_address(backends)
    with ResilientChannel([address]) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        expiring = stub.Echo.future(
            echo_pb2.EchoRequest(message="x"), timeout=0.3, wait_for_ready=True
        )
        cancelled = stub.Echo.future(
            echo_pb2.EchoRequest(message="y"), timeout=10, wait_for_ready=True
        )
        assert cancelled.cancel() and cancelled.cancelled()
        assert cancelled.code() is grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.RpcError) as caught:
            expiring.result(timeout=5)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert channel._router._waiters == set()  # nothing left queued


def test_close_cancels_pending_futures(backends: Start) -> None:
    address, _port = _dead_address(backends)
    channel = ResilientChannel([address])
    future = echo_pb2_grpc.EchoStub(channel).Echo.future(
        echo_pb2.EchoRequest(message="x"), timeout=30, wait_for_ready=True
    )
    channel.close()
    assert future.exception(timeout=5).code() is grpc.StatusCode.CANCELLED


def test_a_new_subscriber_hears_the_state_now_and_no_ready_while_all_are_down(
    backends: Start,
) -> None:
    address, _port = _dead_address(backends)
    with ResilientChannel([address]) as channel:
        deadline = time.monotonic() + 5
        while channel.get_state() is not grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            assert time.monotonic() < deadline, channel.endpoints()
            time.sleep(0.01)
        states: list[grpc.ChannelConnectivity] = []
        heard, called = recorder(states)
        channel.subscribe(heard)
        assert called.wait(5), "a new subscriber was not told the state"
        ready = grpc.channel_ready_future(channel)
        with pytest.raises(grpc.FutureTimeoutError):
            ready.result(timeout=0.3)
        ready.cancel()
        channel.unsubscribe(heard)
        assert states == [grpc.ChannelConnectivity.TRANSIENT_FAILURE]
