"""Call objects the asyncio channel hands back, keeping ``grpc.aio``'s call interfaces.

Each object wraps the call the chosen endpoint's own ``grpc.aio`` channel made, whose
messages are bytes: responses are deserialized for the caller, requests written with
``write()`` are serialized. The endpoint call exists either at once (the hot path picked
an endpoint synchronously) or once a task running the interceptor chain has made it;
until then status accessors wait for that task, ``cancel()`` cancels it (the call is
over at once, as grpc.aio's are), and awaiting the call or reading from it propagates the
caller's cancellation into it. Callers' done callbacks are guarded, as grpc guards them.

Also here: :func:`rpc_error`, the ``grpc.aio.AioRpcError`` of a call that failed on the
client, :func:`check_metadata`, and the serializing / deserializing helpers the channel's
calls share.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable
from typing import Any

import grpc
import grpc.aio

from resilientrpc._calls import (
    CANCELLED_DETAILS,
    Deserializer,
    LocalRpcError,
    deserialize_or_raise,
    guarded,
)

__all__ = [
    "CANCELLED_DETAILS",
    "StreamStreamCall",
    "StreamUnaryCall",
    "UnaryStreamCall",
    "UnaryUnaryCall",
    "check_metadata",
    "deserialize",
    "rpc_error",
    "serialize_requests",
]

_FINISHED = "RPC already finished."
_HALF_CLOSED = 'RPC is half closed after calling "done_writing".'

DoneCallback = Callable[[Any], None]


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """A call's failure decided on the client, as the ``AioRpcError`` grpc.aio raises."""
    return grpc.aio.AioRpcError(
        code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(),
        details=details,
    )


#: A metadata key gRPC sends (lowercase letters, digits, ``-``, ``_``, ``.``).
_LEGAL_KEY = re.compile(r"[0-9a-z_.-]+")


def check_metadata(metadata: Any) -> None:
    """Raise now what request ``metadata`` that gRPC cannot send would raise later.

    grpc.aio raises only when the call is awaited, and that call then never ends (its
    done callbacks never run: no outstanding count or span is settled, and a retry step
    waiting for it waits for ever). The sync twin's grpc raises at once: TypeError or
    ValueError for what is no sequence of ``(str, str | bytes)`` pairs (a ``-bin`` key
    takes bytes), INTERNAL "Invalid metadata" for a key or a text value gRPC refuses.
    """
    for key, value in metadata:
        if not isinstance(key, str | bytes) or not isinstance(value, str | bytes):
            raise TypeError(f"metadata: expected (str, str | bytes), got ({key!r}, {value!r})")
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name.endswith("-bin"):
            if not isinstance(value, bytes):
                raise TypeError(f"metadata: binary key {key!r} expects bytes, got {value!r}")
            legal = True
        else:
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            legal = text.isascii() and text.isprintable()
        if not legal or not _LEGAL_KEY.fullmatch(name):
            raise rpc_error(grpc.StatusCode.INTERNAL, "Invalid metadata")


def deserialize(deserializer: Deserializer, payload: Any) -> Any:
    """The response message for ``payload``; INTERNAL ``AioRpcError`` if it does not parse."""
    try:
        return deserialize_or_raise(deserializer, payload)
    except LocalRpcError as error:
        raise rpc_error(error.code(), error.details()) from error.__cause__


class _Serializing:
    """An async iterator of requests, serialized as the endpoint call consumes them."""

    __slots__ = ("_requests", "_serializer")

    def __init__(self, requests: AsyncIterator[Any], serializer: Callable[[Any], bytes]) -> None:
        self._requests = requests
        self._serializer = serializer

    def __aiter__(self) -> _Serializing:
        return self

    async def __anext__(self) -> bytes:
        return self._serializer(await self._requests.__anext__())


def serialize_requests(requests: Any, serializer: Callable[[Any], bytes] | None) -> Any:
    """``requests`` (an iterable, an async iterable or None) serialized one by one, lazily."""
    if requests is None or serializer is None:
        return requests
    if isinstance(requests, AsyncIterable):
        return _Serializing(requests.__aiter__(), serializer)
    if isinstance(requests, Iterable):
        return map(serializer, requests)
    raise TypeError(f"expected an iterable or async iterable of requests, got {requests!r}")


_END = object()


class RequestPipe:
    """Requests the caller writes with ``write()``, offered to the chain as an async iterator.

    The chain (interceptors, then the endpoint call) sees an iterator whatever the caller
    does, as in grpc's own interceptor machinery. One request waits in the pipe at most,
    so ``write()`` keeps grpc's flow control.
    """

    __slots__ = ("_ended", "_queue", "closed")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._ended: asyncio.Future[None] | None = None
        self.closed = False

    def __aiter__(self) -> RequestPipe:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        return item

    def _ended_future(self, call: Any) -> asyncio.Future[None]:
        """A future resolved when ``call`` (the pipe's one call) ends.

        Made the first time a write has to wait for room, with one done callback on the
        call; every later wait reuses it, so a long stream adds no callback per write.
        """
        ended = self._ended
        if ended is None:
            ended = self._ended = asyncio.get_running_loop().create_future()
            call.add_done_callback(functools.partial(_resolve, ended))
        return ended

    async def put(self, item: Any, call: Any) -> None:
        """Queue ``item`` once there is room, unless ``call`` ends first."""
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        ended = self._ended_future(call)
        if ended.done():
            return
        put = asyncio.ensure_future(self._queue.put(item))
        try:
            await asyncio.wait((put, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()

    async def end(self, call: Any) -> None:
        """Tell the chain no more requests follow (nothing to do once ``call`` is over)."""
        self.closed = True
        if not call.done():
            await self.put(_END, call)


def _resolve(future: asyncio.Future[None], _call: Any) -> None:
    if not future.done():
        future.set_result(None)


def _forward_done(callback: DoneCallback, wrapper: Any, _endpoint_call: Any) -> None:
    """The endpoint call's done callback for a caller's: called with the wrapper, guarded."""
    guarded(callback, wrapper)


def _error_code(error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code()
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _error_details(error: BaseException | None) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.details() or ""
    if isinstance(error, asyncio.CancelledError):
        return CANCELLED_DETAILS
    return f"Exception in the interceptor chain: {error!r}"


class _Call:
    """The common part: status, metadata, cancellation and done callbacks.

    ``call`` is the endpoint's ``grpc.aio`` call when the hot path made it; otherwise
    ``task`` runs the interceptor chain and its result becomes the call. ``deadline`` is
    the call's, on ``clock``: what ``time_remaining()`` reports until there is a call.
    Callers' done callbacks are guarded: one that raises is logged and the rest run.
    """

    def __init__(
        self,
        deserializer: Deserializer,
        call: Any,
        task: asyncio.Future[Any] | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deserializer = deserializer
        self._call = call
        self._task = task
        self._deadline = deadline
        self._clock = clock
        self._error: BaseException | None = None
        self._callbacks: list[DoneCallback] = []
        if task is not None:
            task.add_done_callback(self._chain_finished)

    # -- the chain ---------------------------------------------------------------------
    def _settled(self) -> bool:
        """Whether the chain is over; if so, ``_call`` or ``_error`` says how it ended."""
        if self._call is not None or self._error is not None:
            return True
        task = self._task
        if task is None or not task.done():
            return False
        if task.cancelled():
            self._error = asyncio.CancelledError()
        else:
            error = task.exception()  # also marks a failure as retrieved
            if error is None:
                self._call = task.result()
            else:
                self._error = error
        return True

    def _chain_finished(self, task: asyncio.Future[Any]) -> None:
        self._settled()
        if self._call is None and not task.cancelled() and task.exception() is None:
            # cancel() ended this call before the chain took in its cancellation, and the
            # chain made a call regardless (an interceptor kept the CancelledError from
            # it): that call is cancelled too.
            task.result().cancel()
        self._attach_callbacks()

    def _attach_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._attach(callback)

    def _attach(self, callback: DoneCallback) -> None:
        call = self._call
        if call is None:
            guarded(callback, self)  # the chain failed or was cancelled: the call is over
        else:
            call.add_done_callback(functools.partial(_forward_done, callback, self))

    async def _active(self) -> Any:
        """The endpoint call, waiting for the chain; raises however the chain failed.

        Awaiting the chain's task directly means cancelling the caller cancels the chain.
        """
        task = self._task
        if task is not None and not self._settled():
            await task
            self._settled()
        if self._call is None:
            raise self._error or RuntimeError("call has neither an endpoint call nor a chain")
        return self._call

    async def _finished_chain(self) -> None:
        """Wait for the chain without cancelling it if the caller is cancelled."""
        task = self._task
        if task is not None and not self._settled():
            await asyncio.wait((task,))
            self._settled()

    # -- grpc.aio.RpcContext -------------------------------------------------------------
    def cancel(self) -> bool:
        task = self._task
        if task is None or self._settled():
            return self._call is not None and bool(self._call.cancel())
        task.cancel()  # not done (else settled): this succeeds, the chain ends soon
        # As with grpc.aio's own calls, the call is over (cancelled and done) as soon as
        # cancel() returns True, not once the loop has run the chain's cancellation.
        self._error = asyncio.CancelledError()
        self._attach_callbacks()
        return True

    def cancelled(self) -> bool:
        if not self._settled():
            return False
        if self._call is not None:
            return bool(self._call.cancelled())
        return _error_code(self._error) is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        if not self._settled():
            return False
        return self._call is None or bool(self._call.done())

    def time_remaining(self) -> float | None:
        if self._call is not None:
            remaining: float | None = self._call.time_remaining()
            return remaining
        if self._deadline is None or self._error is not None:
            return None
        return max(self._deadline - self._clock(), 0.0)

    def add_done_callback(self, callback: DoneCallback) -> None:
        if self._settled():
            self._attach(callback)
        else:
            self._callbacks.append(callback)

    # -- grpc.aio.Call ---------------------------------------------------------------------
    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._finished_chain()
        if self._call is not None:
            return await self._call.initial_metadata()
        if isinstance(self._error, grpc.aio.AioRpcError):
            return self._error.initial_metadata() or grpc.aio.Metadata()
        return grpc.aio.Metadata()

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._finished_chain()
        if self._call is not None:
            return await self._call.trailing_metadata()
        if isinstance(self._error, grpc.aio.AioRpcError):
            return self._error.trailing_metadata() or grpc.aio.Metadata()
        return grpc.aio.Metadata()

    async def code(self) -> grpc.StatusCode:
        await self._finished_chain()
        if self._call is not None:
            return await self._call.code()
        return _error_code(self._error)

    async def details(self) -> str:
        await self._finished_chain()
        if self._call is not None:
            details: str = await self._call.details()
            return details
        return _error_details(self._error)

    async def debug_error_string(self) -> str | None:
        await self._finished_chain()
        if self._call is not None:
            debug: str | None = await self._call.debug_error_string()
            return debug
        if isinstance(self._error, grpc.aio.AioRpcError):
            debug = self._error.debug_error_string()
            return debug
        return None

    async def wait_for_connection(self) -> None:
        call = await self._active()
        await call.wait_for_connection()

    def __repr__(self) -> str:
        if self._call is not None:
            return f"<{type(self).__name__} of {self._call!r}>"
        if self._error is not None:
            return f"<{type(self).__name__} failed: {self._error!r}>"
        return f"<{type(self).__name__} choosing an endpoint>"


class _UnaryResponse(_Call):
    def __await__(self) -> Generator[Any, None, Any]:
        call = self._call
        if call is None:
            call = yield from self._active().__await__()
        response = yield from call.__await__()
        return deserialize(self._deserializer, response)


class _StreamResponse(_Call):
    def __del__(self) -> None:
        # Abandoned unfinished (as the sync twin's streams): cancel, so the attempt ends and
        # its done() is reported now, not whenever the collector breaks grpc's cycles.
        call = self.__dict__.get("_call")
        if call is not None and not call.done():
            with contextlib.suppress(Exception):  # the loop may be gone already
                call.cancel()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        message = await self.read()
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        return message

    async def read(self) -> Any:
        """The next response, or ``grpc.aio.EOF`` at the end of the stream."""
        call = self._call
        if call is None:
            call = await self._active()
        message = await call.read()
        if message is grpc.aio.EOF:
            return message
        return deserialize(self._deserializer, message)


class _StreamRequest(_Call):
    def __init__(
        self,
        deserializer: Deserializer,
        call: Any,
        task: asyncio.Future[Any] | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        serializer: Callable[[Any], bytes] | None = None,
        pipe: RequestPipe | None = None,
    ) -> None:
        super().__init__(deserializer, call, task, deadline, clock)
        self._serializer = serializer
        self._pipe = pipe

    async def _writable(self) -> Any:
        try:
            call = await self._active()
        except grpc.aio.AioRpcError:
            raise asyncio.InvalidStateError(_FINISHED) from None
        if call.done():
            raise asyncio.InvalidStateError(_FINISHED)
        return call

    async def write(self, request: Any) -> None:
        """Send one request (when the call was made without a request iterator)."""
        payload = request if self._serializer is None else self._serializer(request)
        pipe = self._pipe
        if pipe is None:
            call = self._call
            if call is None:
                call = await self._active()
            await call.write(payload)
            return
        if pipe.closed:
            raise asyncio.InvalidStateError(_HALF_CLOSED)
        call = await self._writable()
        await pipe.put(payload, call)
        if call.done():
            raise asyncio.InvalidStateError(_FINISHED)

    async def done_writing(self) -> None:
        """Tell the server no more requests follow; idempotent."""
        pipe = self._pipe
        if pipe is None:
            call = self._call
            if call is None:
                call = await self._active()
            await call.done_writing()
            return
        if pipe.closed:
            return
        try:
            call = await self._active()
        except grpc.aio.AioRpcError:
            pipe.closed = True
            return  # the call is over: nothing to half-close, as for grpc's own calls
        await pipe.end(call)


class UnaryUnaryCall(_UnaryResponse, grpc.aio.UnaryUnaryCall):
    """A unary call: await it for the response."""


class UnaryStreamCall(_StreamResponse, grpc.aio.UnaryStreamCall):
    """A response stream: ``async for`` over it, or ``read()`` until ``grpc.aio.EOF``."""


class StreamUnaryCall(_StreamRequest, _UnaryResponse, grpc.aio.StreamUnaryCall):
    """A request stream with one response: ``write()`` / ``done_writing()``, then await."""


class StreamStreamCall(_StreamRequest, _StreamResponse, grpc.aio.StreamStreamCall):
    """A bidirectional stream: ``write()`` / ``done_writing()`` and ``read()`` / iterate."""
