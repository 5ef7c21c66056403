"""One scenario suite, two drivers: the same tests drive the sync and the asyncio channel.

A *twin* opens a channel and offers blocking helpers for every call shape; the asyncio
twin runs its calls on an event loop in a helper thread, so a test reads the same for
both. Assertions stay in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import grpc

import resilientrpc
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.testing import echo_pb2, echo_pb2_grpc

Metadata = Sequence[tuple[str, str | bytes]] | None


class ChannelHandle(Protocol):
    """A channel under test, driven with blocking calls."""

    #: The channel itself (a sync or an asyncio ResilientChannel) and an Echo stub on it.
    channel: Any
    stub: Any

    def echo(
        self,
        message: str = "hi",
        *,
        timeout: float | None = 5.0,
        metadata: Metadata = None,
        wait_for_ready: bool | None = None,
    ) -> echo_pb2.EchoReply: ...

    def echo_with_call(
        self, message: str = "hi", *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> tuple[echo_pb2.EchoReply, Any, Any]:
        """Reply, initial metadata, trailing metadata."""
        ...

    def server_stream(
        self, message: str, count: int, *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> list[echo_pb2.EchoReply]: ...

    def client_stream(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> echo_pb2.EchoReply: ...

    def bidi(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> list[echo_pb2.EchoReply]: ...

    def cancel_server_stream_after(self, message: str, count: int, read: int) -> grpc.StatusCode:
        """Read ``read`` replies of a long stream, cancel it, return the call's code."""
        ...

    def endpoints(self) -> list[EndpointStatus]: ...

    def wait_ready(self, timeout: float) -> None: ...

    def close(self) -> None: ...


class Twin(Protocol):
    name: str

    def open(self, targets: Any, **kwargs: Any) -> ChannelHandle: ...


class SyncHandle:
    def __init__(self, targets: Any, **kwargs: Any) -> None:
        self.channel = resilientrpc.ResilientChannel(targets, **kwargs)
        self.stub = echo_pb2_grpc.EchoStub(self.channel)

    def echo(
        self,
        message: str = "hi",
        *,
        timeout: float | None = 5.0,
        metadata: Metadata = None,
        wait_for_ready: bool | None = None,
    ) -> echo_pb2.EchoReply:
        reply: echo_pb2.EchoReply = self.stub.Echo(
            echo_pb2.EchoRequest(message=message),
            timeout=timeout,
            metadata=metadata,
            wait_for_ready=wait_for_ready,
        )
        return reply

    def echo_with_call(
        self, message: str = "hi", *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> tuple[echo_pb2.EchoReply, Any, Any]:
        reply, call = self.stub.Echo.with_call(
            echo_pb2.EchoRequest(message=message), timeout=timeout, metadata=metadata
        )
        return reply, call.initial_metadata(), call.trailing_metadata()

    def server_stream(
        self, message: str, count: int, *, timeout: float | None = 5.0, metadata: Metadata = None
    ) -> list[echo_pb2.EchoReply]:
        call = self.stub.ServerStream(
            echo_pb2.EchoRequest(message=message, count=count), timeout=timeout, metadata=metadata
        )
        return list(call)

    def client_stream(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> echo_pb2.EchoReply:
        reply: echo_pb2.EchoReply = self.stub.ClientStream(
            iter([echo_pb2.EchoRequest(message=m) for m in messages]), timeout=timeout
        )
        return reply

    def bidi(
        self, messages: Sequence[str], *, timeout: float | None = 5.0
    ) -> list[echo_pb2.EchoReply]:
        call = self.stub.BidiStream(
            iter([echo_pb2.EchoRequest(message=m) for m in messages]), timeout=timeout
        )
        return list(call)

    def cancel_server_stream_after(self, message: str, count: int, read: int) -> grpc.StatusCode:
        call = self.stub.ServerStream(
            echo_pb2.EchoRequest(message=message, count=count), timeout=10
        )
        for _ in range(read):
            next(call)
        call.cancel()
        code: grpc.StatusCode = call.code()
        return code

    def endpoints(self) -> list[EndpointStatus]:
        return self.channel.endpoints()

    def wait_ready(self, timeout: float) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()


class SyncTwin:
    name = "sync"

    def open(self, targets: Any, **kwargs: Any) -> ChannelHandle:
        return SyncHandle(targets, **kwargs)


TWINS: list[Twin] = [SyncTwin()]

from tests.aio_twin import AioTwin  # noqa: E402 - the asyncio twin joins the suite here

TWINS.append(AioTwin())
