"""Call objects the synchronous channel hands back, keeping grpc's full interfaces.

* :class:`LocalRpcError` - a call that failed before reaching any backend (no endpoint,
  deadline spent waiting, channel closed): a ``grpc.RpcError`` that is also a
  ``grpc.Call`` and ``grpc.Future``, and raises itself when iterated, like grpc's own.
* :class:`UnaryOutcome` - a finished unary call: response plus the underlying call.
* :class:`PendingCall` - a call returned before it has an endpoint, settled later.
* :class:`ResponseFuture` / :class:`ResponseStream` - wrap a backend call whose messages
  are raw bytes, deserializing them for the caller while delegating everything else.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import grpc

__all__ = [
    "CANCELLED_DETAILS",
    "Deserializer",
    "LocalRpcError",
    "PendingCall",
    "ResponseFuture",
    "ResponseStream",
    "UnaryOutcome",
    "deserialize_or_raise",
]

Deserializer = Callable[[bytes], Any] | None
DoneCallback = Callable[[Any], None]
#: Runs a user's callback: where it runs is the channel's choice (its callback thread).
Deliver = Callable[[Callable[[], object]], None]


def run_now(function: Callable[[], object]) -> None:
    """The :data:`Deliver` that runs a callback at once, in the calling thread."""
    function()


_log = logging.getLogger(__name__)


def guarded(fn: Callable[..., object], *args: object) -> None:
    """Call a user's callback; an exception it raises is logged, never propagated.

    Callbacks run inside the channel's machinery (grpc's threads, the channel's own), so
    one that fails must not stop the others or the call it reports on (grpc does the same).
    """
    try:
        fn(*args)
    except Exception:
        _log.exception("callback %r raised", fn)


def deserialize_or_raise(deserializer: Deserializer, payload: Any) -> Any:
    """The response message for ``payload``; INTERNAL if it does not deserialize."""
    if deserializer is None:
        return payload
    try:
        return deserializer(payload)
    except LocalRpcError:
        raise  # already a status (an oversized response)
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
        guarded(fn, self)

    # as a failed response stream
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self

    def next(self) -> Any:
        raise self


class _Delegating(grpc.Call, grpc.Future):
    """Forwards grpc.Call and grpc.Future methods to the backend call it wraps."""

    __slots__ = ("_call", "_deliver")

    def __init__(self, call: Any, deliver: Deliver = run_now) -> None:
        self._call = call
        self._deliver = deliver

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
        deliver = self._deliver
        return self._call.add_callback(lambda: deliver(functools.partial(guarded, callback)))

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
        if self._call.done():  # grpc's contract: a finished call's callback runs at once
            guarded(fn, self)
            return
        self._call.add_done_callback(functools.partial(_forward_done, fn, self, self._deliver))


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
        guarded(fn, self)


_UNREAD: Any = object()


class ResponseFuture(_Delegating):
    """A pending unary response whose bytes are deserialized on ``result()``."""

    __slots__ = ("_deserializer", "_response")

    def __init__(self, call: Any, deserializer: Deserializer, deliver: Deliver = run_now) -> None:
        super().__init__(call, deliver)
        self._deserializer = deserializer
        self._response: Any = _UNREAD

    def result(self, timeout: float | None = None) -> Any:
        response = self._response
        if response is _UNREAD:
            response = deserialize_or_raise(self._deserializer, self._call.result(timeout))
            self._response = response
        return response


class ResponseStream(_Delegating):
    """A response stream whose messages are deserialized as they are read."""

    __slots__ = ("_deserializer",)

    def __init__(self, call: Any, deserializer: Deserializer, deliver: Deliver = run_now) -> None:
        super().__init__(call, deliver)
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


class PendingCall(grpc.Call, grpc.Future):
    """A call that has no endpoint yet: returned at once, settled when one can take it.

    The synchronous channel hands this out from ``future()`` and from streaming calls
    when the balancer has no endpoint ready (start-up, or ``wait_for_ready`` while every
    backend is down), so those never block the caller. Once settled - bound to the
    attempt's real call, or to the :class:`LocalRpcError` it failed with - every method
    delegates to that; until then, status accessors wait for it, as grpc's block until a
    call ends.
    """

    def __init__(self, deadline: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self._call: Any = None
        self._done_callbacks: list[DoneCallback] | None = []
        self._rpc_callbacks: list[Callable[[], None]] = []
        self._deadline = deadline
        self._cancelled = False
        #: Set by the router: withdraws the call from the queue of waiting calls.
        self.withdraw: Callable[[], object] = _nothing

    def settle(self, call: Any, *, cancelled: bool = False) -> bool:
        """Bind to the attempt's call (or failure); False if already settled."""
        with self._lock:
            if self._call is not None:
                return False
            self._call = call
            self._cancelled = cancelled
            done_callbacks, self._done_callbacks = self._done_callbacks or [], None
            rpc_callbacks, self._rpc_callbacks = self._rpc_callbacks, []
        self._settled.set()
        for fn in done_callbacks:
            call.add_done_callback(functools.partial(_forward_done, fn, self, run_now))
        for callback in rpc_callbacks:
            if not call.add_callback(callback):
                guarded(callback)
        return True

    def _wait(self, timeout: float | None = None) -> tuple[Any, float | None]:
        """The settled call, and what is left of ``timeout`` for waiting on it."""
        if timeout is None:
            self._settled.wait()
            return self._call, None
        started = self._clock()
        if not self._settled.wait(timeout):
            raise grpc.FutureTimeoutError()
        return self._call, max(timeout - (self._clock() - started), 0.0)

    # grpc.Future
    def cancel(self) -> bool:
        error = LocalRpcError(grpc.StatusCode.CANCELLED, CANCELLED_DETAILS)
        if self.settle(error, cancelled=True):
            self.withdraw()
            return True
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return self._cancelled or (self._call is not None and bool(self._call.cancelled()))

    def running(self) -> bool:
        call = self._call
        return call is None or bool(call.running())

    def done(self) -> bool:
        call = self._call
        return call is not None and bool(call.done())

    def result(self, timeout: float | None = None) -> Any:
        call, left = self._wait(timeout)
        return call.result(left)

    def exception(self, timeout: float | None = None) -> Any:
        call, left = self._wait(timeout)
        return call.exception(left)

    def traceback(self, timeout: float | None = None) -> Any:
        call, left = self._wait(timeout)
        return call.traceback(left)

    def add_done_callback(self, fn: DoneCallback) -> None:
        with self._lock:
            if self._done_callbacks is not None:
                self._done_callbacks.append(fn)
                return
        self._call.add_done_callback(functools.partial(_forward_done, fn, self, run_now))

    # grpc.Call
    def code(self) -> Any:
        return self._wait()[0].code()

    def details(self) -> Any:
        return self._wait()[0].details()

    def initial_metadata(self) -> Any:
        return self._wait()[0].initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._wait()[0].trailing_metadata()

    def is_active(self) -> bool:
        call = self._call
        return call is None or bool(call.is_active())

    def time_remaining(self) -> float | None:
        call = self._call
        if call is not None:
            return call.time_remaining()  # type: ignore[no-any-return]  # grpc is Any
        return None if self._deadline is None else max(self._deadline - self._clock(), 0.0)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._call is None:
                self._rpc_callbacks.append(callback)
                return True
        return bool(self._call.add_callback(callback))

    # as a response stream
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._wait()[0])

    def next(self) -> Any:
        return self.__next__()


#: The details of a call its caller cancelled, worded as grpc words them.
CANCELLED_DETAILS = "Locally cancelled by application!"


def _nothing() -> None:
    pass


def _forward_done(fn: DoneCallback, outer: Any, deliver: Deliver, _inner: Any) -> None:
    deliver(functools.partial(guarded, fn, outer))
