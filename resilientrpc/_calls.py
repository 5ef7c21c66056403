"""Call objects the synchronous channel hands back, keeping grpc's full interfaces.

* :class:`LocalRpcError` - a call that failed before reaching any backend (no endpoint,
  deadline spent waiting, channel closed): a ``grpc.RpcError`` that is also a
  ``grpc.Call`` and ``grpc.Future``, and raises itself when iterated, like grpc's own.
* :class:`UnaryOutcome` - a finished unary call: response plus the underlying call.
* :class:`ResponseFuture` / :class:`ResponseStream` - wrap a backend call whose messages
  are raw bytes, deserializing them for the caller while delegating everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import grpc

__all__ = [
    "Deserializer",
    "LocalRpcError",
    "ResponseFuture",
    "ResponseStream",
    "UnaryOutcome",
    "deserialize_or_raise",
]

Deserializer = Callable[[bytes], Any] | None
DoneCallback = Callable[[Any], None]


def deserialize_or_raise(deserializer: Deserializer, payload: Any) -> Any:
    """The response message for ``payload``; INTERNAL if it does not deserialize."""
    if deserializer is None:
        return payload
    try:
        return deserializer(payload)
    except Exception as error:
        raise LocalRpcError(
            grpc.StatusCode.INTERNAL, f"Exception deserializing response: {error!r}"
        ) from error


class LocalRpcError(grpc.RpcError, grpc.Call, grpc.Future):
    """A terminated call decided on the client: status, details, nothing from a server."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailing_metadata = trailing_metadata

    def __repr__(self) -> str:
        return f"<LocalRpcError {self._code.name}: {self._details!r}>"

    def __str__(self) -> str:
        return repr(self)

    # grpc.Call / grpc.RpcContext
    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailing_metadata

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    # grpc.Future
    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> LocalRpcError:
        return self

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        return self.__traceback__  # type: ignore[no-any-return]  # grpc.RpcError is Any

    def add_done_callback(self, fn: DoneCallback) -> None:
        fn(self)

    # as a failed response stream
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self

    def next(self) -> Any:
        raise self


class _Delegating(grpc.Call, grpc.Future):
    """Forwards grpc.Call and grpc.Future methods to the backend call it wraps."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def code(self) -> grpc.StatusCode:
        return self._call.code()

    def details(self) -> Any:
        return self._call.details()

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def is_active(self) -> Any:
        return self._call.is_active()

    def time_remaining(self) -> Any:
        return self._call.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> Any:
        return self._call.add_callback(callback)

    def cancel(self) -> Any:
        return self._call.cancel()

    def cancelled(self) -> Any:
        return self._call.cancelled()

    def running(self) -> Any:
        return self._call.running()

    def done(self) -> Any:
        return self._call.done()

    def exception(self, timeout: float | None = None) -> Any:
        return self._call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: DoneCallback) -> None:
        self._call.add_done_callback(lambda _inner: fn(self))


class UnaryOutcome(_Delegating):
    """A unary call that completed: its response and its call (the interceptor contract)."""

    __slots__ = ("_response",)

    def __init__(self, response: Any, call: Any) -> None:
        super().__init__(call)
        self._response = response

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        return self._response

    def exception(self, timeout: float | None = None) -> None:
        return None

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: DoneCallback) -> None:
        fn(self)


class ResponseFuture(_Delegating):
    """A pending unary response whose bytes are deserialized on ``result()``."""

    __slots__ = ("_deserializer",)

    def __init__(self, call: Any, deserializer: Deserializer) -> None:
        super().__init__(call)
        self._deserializer = deserializer

    def result(self, timeout: float | None = None) -> Any:
        return deserialize_or_raise(self._deserializer, self._call.result(timeout))


class ResponseStream(_Delegating):
    """A response stream whose messages are deserialized as they are read."""

    __slots__ = ("_deserializer",)

    def __init__(self, call: Any, deserializer: Deserializer) -> None:
        super().__init__(call)
        self._deserializer = deserializer

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return deserialize_or_raise(self._deserializer, next(self._call))

    def next(self) -> Any:
        return self.__next__()

    def result(self, timeout: float | None = None) -> Any:
        return self._call.result(timeout)

    def __del__(self) -> None:
        # Abandoned unfinished: cancel, so the attempt ends and its done() is reported.
        # (grpc's own collection-time cancel never runs while a done callback, which
        # references the call, is registered.)
        call = self._call
        if call.is_active():
            call.cancel()
