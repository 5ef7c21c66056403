"""The asyncio twin of the scenario suite: :class:`resilientrpc.aio.ResilientChannel`.

Each handle runs its own event loop in a helper thread named ``aio-twin-loop`` and
creates the channel inside that loop, as an asyncio application would. Every
:class:`~tests.twins.ChannelHandle` method runs one coroutine there and blocks for its
result, so the same test reads the same for both twins; failures surface as the
``grpc.aio.AioRpcError`` the channel raised, which is a ``grpc.RpcError``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import grpc

import resilientrpc.aio
from resilientrpc._loop import LoopThread
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.testing import echo_pb2, echo_pb2_grpc

__all__ = ["AioHandle", "AioTwin"]

T = TypeVar("T")
Metadata = Sequence[tuple[str, str | bytes]] | None

#: Name of the helper threads (not "resilientrpc-*": those belong to the library).
THREAD_NAME = "aio-twin-loop"


class AioHandle:
    """A :class:`resilientrpc.aio.ResilientChannel` driven with blocking calls."""

    def __init__(self, targets: Any, **kwargs: Any) -> None:
        self._loop = LoopThread(THREAD_NAME)
        self._closed = False
        try:

            async def open_() -> resilientrpc.aio.ResilientChannel:
                return resilientrpc.aio.ResilientChannel(targets, **kwargs)

            self.channel = self._loop.run(open_())
        except BaseException:
            self._loop.stop()
            raise
        self.stub = echo_pb2_grpc.EchoStub(self.channel)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the handle's loop and wait for its result."""
        return self._loop.run(coroutine)

    def _await(self, make: Callable[[], Awaitable[T]]) -> T:
        """Create an awaitable on the loop (calls need a running loop), await it there."""

        async def run() -> T:
            return await make()

        return self.run(run())

    def echo(
        self,
        message: str = "hi",
        *,
        timeout: float | None = 5.0,
        metadata: Metadata = None,
        wait_for_ready: bool | None = None,
    ) -> echo_pb2.EchoReply:
        request = echo_pb2.EchoRequest(message=message)
        reply: echo_pb2.EchoReply = self._await(
            lambda: self.stub.Echo(
                request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready
            )
        )
        return reply

    def echo_with_call(
        self, message: str = "hi", *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> tuple[echo_pb2.EchoReply, Any, Any]:
        async def run() -> tuple[echo_pb2.EchoReply, Any, Any]:
            call = self.stub.Echo(
                echo_pb2.EchoRequest(message=message), timeout=timeout, metadata=metadata
            )
            reply = await call
            return reply, await call.initial_metadata(), await call.trailing_metadata()

        return self.run(run())

    def server_stream(
        self, message: str, count: int, *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> list[echo_pb2.EchoReply]:
        async def run() -> list[echo_pb2.EchoReply]:
            call = self.stub.ServerStream(
                echo_pb2.EchoRequest(message=message, count=count),
                timeout=timeout,
                metadata=metadata,
            )
            return [reply async for reply in call]

        return self.run(run())

    def client_stream(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> echo_pb2.EchoReply:
        requests = [echo_pb2.EchoRequest(message=m) for m in messages]
        reply: echo_pb2.EchoReply = self._await(
            lambda: self.stub.ClientStream(iter(requests), timeout=timeout)
        )
        return reply

    def bidi(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> list[echo_pb2.EchoReply]:
        async def run() -> list[echo_pb2.EchoReply]:
            call = self.stub.BidiStream(
                iter([echo_pb2.EchoRequest(message=m) for m in messages]), timeout=timeout
            )
            return [reply async for reply in call]

        return self.run(run())

    def cancel_server_stream_after(self, message: str, count: int, read: int) -> grpc.StatusCode:
        async def run() -> grpc.StatusCode:
            call = self.stub.ServerStream(
                echo_pb2.EchoRequest(message=message, count=count), timeout=10
            )
            for _ in range(read):
                await call.read()
            call.cancel()
            code: grpc.StatusCode = await call.code()
            return code

        return self.run(run())

    def endpoints(self) -> list[EndpointStatus]:
        async def run() -> list[EndpointStatus]:
            return self.channel.endpoints()

        return self.run(run())

    def wait_ready(self, timeout: float) -> None:
        self.run(asyncio.wait_for(self.channel.channel_ready(), timeout))

    def close(self) -> None:
        """Close the channel, then stop the loop and join its thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.run(self.channel.close())
        finally:
            self._loop.stop()
            # Caught errors' frames keep grpc objects alive in reference cycles, and
            # grpc.aio stays bound to the loop of its live objects: free them with it.
            gc.collect()


class AioTwin:
    name = "aio"

    def open(self, targets: Any, **kwargs: Any) -> AioHandle:
        return AioHandle(targets, **kwargs)
