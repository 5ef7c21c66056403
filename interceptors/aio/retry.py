"""The retry step of the asyncio twin: per-method retries, failover and hedging on ``grpc.aio``.

The twin of :mod:`interceptors.retry`, with the same decisions - :mod:`resilientrpc.retry`'s
:class:`~resilientrpc.retry.RetryRun` (tenacity's ``AsyncRetrying``, stepped with
``astep``) and :class:`~resilientrpc.retry.HedgeRun` - and the same policy lookup, budgets,
timeouts and attempt classification as the sync step (whose instance it keeps as its
:attr:`RetryInterceptor.rules`). Only the driving differs: here a coroutine awaits each
attempt's end (its done callback resolves a future; nothing reads the response), sleeps
the backoff with ``asyncio.sleep`` semantics, and is cut short by :meth:`close`.

* Works alone: ``grpc.aio.insecure_channel(address, interceptors=[RetryInterceptor(c)])``
  (one backend: retries without failover), and inside
  :class:`resilientrpc.aio.ResilientChannel` above the balancing step, where each attempt's
  :class:`~interceptors.details.AttemptRecord` makes a retry go to an untried endpoint.
* :meth:`RetryInterceptor.after_first` goes on with a unary call whose first attempt the
  channel's hot path sent: a call that succeeds first time never meets tenacity or a task.
* Response streams are retried until their first message arrives; request streams are
  replayed from an :class:`AsyncReplayBuffer` up to its limit, beyond which the call is
  committed. Hedging applies to unary-unary calls.
* A failure after retries is a ``grpc.aio.AioRpcError`` with the last attempt's code and
  trailers, its details annotated with what was tried (``RetryRun.annotate``); a single
  non-retryable failure is grpc's own, untouched.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import grpc
import grpc.aio

from interceptors.aio.balancing import FinishedCall
from interceptors.details import AttemptRecord, RetryCallDetails
from interceptors.retry import KeptRequests, attempt_of, retry_details
from interceptors.retry import RetryInterceptor as SyncRetryInterceptor
from interceptors.spans import call_events, note_event
from resilientrpc.retry import (
    DEFAULT_BUFFER_LIMIT,
    Attempt,
    Budgets,
    EventSink,
    HedgeAction,
    HedgeRun,
    RetryEvent,
    RetryRun,
)

__all__ = ["AsyncReplayBuffer", "RetryInterceptor", "watch_first"]

Continuation = Callable[[Any, Any], Awaitable[Any]]

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED
_CLOSED = "channel closed"


def _closed_error() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        _CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), details=_CLOSED
    )


def _ended(call: Any) -> asyncio.Future[None]:
    """A future resolved when ``call`` (a grpc.aio call, or the error a send raised) ends."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if isinstance(call, grpc.aio.AioRpcError):
        future.set_result(None)
    else:
        call.add_done_callback(functools.partial(_resolve, future))
    return future


def _resolve(future: asyncio.Future[None], _call: Any) -> None:
    if not future.done():
        future.set_result(None)


async def _finish(call: Any) -> None:
    """Wait for ``call`` to end; the caller's cancellation cancels it."""
    ended = _ended(call)
    try:
        await ended
    except asyncio.CancelledError:
        call.cancel()
        raise


def _outcome(call: Any, record: AttemptRecord, binding: bool, request: Any) -> Attempt:
    """The :class:`Attempt` a finished call (or the error its send raised) came to."""
    finished = call if isinstance(call, grpc.aio.AioRpcError) else FinishedCall(call)
    attempt = attempt_of(finished, record, binding)
    attempt.result = call
    attempt.committed = isinstance(request, AsyncReplayBuffer) and request.committed
    return attempt


def _initial_metadata(call: Any) -> Any:
    """A finished call's initial metadata (best effort: empty if not at hand at once)."""
    if isinstance(call, grpc.aio.AioRpcError):
        return call.initial_metadata()
    step = call.initial_metadata()
    try:
        step.send(None)
    except StopIteration as finished:
        return finished.value
    except Exception:
        return grpc.aio.Metadata()
    step.close()
    return grpc.aio.Metadata()


def _final(run: RetryRun | HedgeRun, attempt: Attempt, retryable_first: bool) -> Any:
    """The call the caller gets, or its error annotated with what was tried.

    The error is returned, not raised: the interceptor hook raises it (:func:`_raise_if_error`),
    so its traceback holds no frame of the retry loop and none of the attempts' calls.
    """
    if attempt.code is _OK:
        return attempt.result
    if len(run.tried) == 1 and not retryable_first:
        return attempt.result  # one attempt, not retryable: grpc's own failure, untouched
    last = attempt.result
    trailing = attempt.trailing_metadata
    return grpc.aio.AioRpcError(
        attempt.code,
        _initial_metadata(last),
        trailing if isinstance(trailing, grpc.aio.Metadata) else grpc.aio.Metadata(*trailing or ()),
        details=run.annotate(attempt.details),
    )


def _raise_if_error(result: Any) -> Any:
    if isinstance(result, grpc.aio.AioRpcError):
        raise result
    return result


class RetryInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Per-method retries and hedging from a gRPC service config, on any ``grpc.aio`` channel.

    >>> channel = grpc.aio.insecure_channel(  # doctest: +SKIP
    ...     "127.0.0.1:50051", interceptors=[RetryInterceptor("retry_config.json")]
    ... )

    Arguments as :class:`interceptors.retry.RetryInterceptor`'s.
    """

    def __init__(
        self,
        config: Any = None,
        *,
        budgets: Budgets | None = None,
        clock: Callable[[], float] | None = None,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        events: EventSink | None = None,
    ) -> None:
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        #: The sync step: its policy lookup, budgets, timeouts and events are this one's.
        self.rules = SyncRetryInterceptor(
            config, budgets=budgets, buffer_limit=buffer_limit, events=events, **extra
        )
        self.config = self.rules.config
        self.budgets = self.rules.budgets
        self._clock = self.rules._clock
        self._events = events
        self._buffer_limit = buffer_limit
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    def policy(self, method: str | bytes) -> Any:
        """The method's policy (the sync step's lookup, cached per method).

        grpc.aio passes interceptors the method name as bytes.
        """
        return self.rules.policy(method.decode() if isinstance(method, bytes) else method)

    def close(self) -> None:
        """End every call waiting to retry or hedge: CANCELLED "channel closed"."""
        self._closed = True
        closing = self._closing
        if closing is not None and not closing.done():
            closing.set_result(None)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, unless :meth:`close` comes first (then raise CANCELLED)."""
        if self._closed:
            raise _closed_error()
        closing = self._closing
        if closing is None:
            closing = self._closing = asyncio.get_running_loop().create_future()
        if delay > 0:
            await asyncio.wait((closing,), timeout=delay)
        if self._closed:
            raise _closed_error()

    # -- one attempt ---------------------------------------------------------------------
    async def _send(
        self,
        continuation: Continuation,
        details: Any,
        request: Any,
        record: AttemptRecord,
        timeout: float | None,
        wait_for_ready: bool | None,
        previous: int,
    ) -> Any:
        """Send one attempt down the chain; an AioRpcError raised is the attempt's end."""
        attempt_details = retry_details(
            details, record, timeout, wait_for_ready, previous, grpc.aio.Metadata
        )
        sent = request.replay() if isinstance(request, AsyncReplayBuffer) else request
        try:
            return await continuation(attempt_details, sent)
        except grpc.aio.AioRpcError as error:
            return error

    def _plain(self, details: Any, timeout: float | None, wait_for_ready: bool | None) -> Any:
        if timeout == details.timeout and wait_for_ready == details.wait_for_ready:
            return details
        return RetryCallDetails(
            details.method,
            timeout,
            details.metadata,
            details.credentials,
            wait_for_ready,
            getattr(details, "compression", None),
            getattr(details, "attempt", None) or AttemptRecord(),
        )

    # -- unary responses -------------------------------------------------------------------
    async def _unary(self, continuation: Continuation, details: Any, request: Any) -> Any:
        rules = self.rules
        policy = self.policy(details.method)
        timeout, wait_for_ready = rules._call_timeout(details, policy)
        buffered = isinstance(request, AsyncReplayBuffer)
        if policy.retry is None and (policy.hedging is None or buffered):
            plain = request.replay() if buffered else request
            return await continuation(self._plain(details, timeout, wait_for_ready), plain)
        deadline = None if timeout is None else self._clock() + timeout
        self.budgets.called()
        if policy.hedging is not None and not buffered:
            return await self._hedged(continuation, details, request, policy, deadline)
        retry = policy.retry
        record = AttemptRecord()
        attempt_timeout, binding = rules._attempt_timeout(deadline, retry)
        call = await self._send(
            continuation, details, request, record, attempt_timeout, wait_for_ready, 0
        )
        return await self._retry(
            continuation, details, request, deadline, wait_for_ready, call, record, binding
        )

    async def after_first(
        self,
        continuation: Continuation,
        details: Any,
        request: Any,
        call: Any,
        record: AttemptRecord,
        deadline: float | None,
        binding: bool,
    ) -> Any:
        """Go on with a unary call whose first attempt (``call``) a channel's hot path sent.

        Returns the call the caller gets, or raises its ``AioRpcError``.
        """
        result = await self._retry(
            continuation, details, request, deadline, details.wait_for_ready, call, record, binding
        )
        return _raise_if_error(result)

    async def _retry(
        self,
        continuation: Continuation,
        details: Any,
        request: Any,
        deadline: float | None,
        wait_for_ready: bool | None,
        call: Any,
        record: AttemptRecord,
        binding: bool,
    ) -> Any:
        """Await ``call``, the first attempt; retry it per the method's retryPolicy."""
        await _finish(call)
        attempt = _outcome(call, record, binding, request)
        budgets = self.budgets
        if attempt.code is _OK:
            if budgets:
                budgets.record(_OK, False)
            return call
        rules = self.rules
        policy = self.policy(details.method).retry
        assert policy is not None  # only retried methods come here
        run = RetryRun(
            policy,
            budgets,
            deadline=deadline,
            clock=self._clock,
            events=call_events(self._events, details),
            asynchronous=True,
            method=details.method,
        )
        retryable_first = attempt.code in policy.retryable_status_codes or attempt.timed_out
        while True:
            delay = await run.astep(attempt)
            if delay is None:
                assert run.final is not None
                return _final(run, run.final, retryable_first)
            await self._pause(delay)
            record = AttemptRecord(run.tried_addresses)
            timeout, binding = rules._attempt_timeout(deadline, policy)
            call = await self._send(
                continuation, details, request, record, timeout, wait_for_ready, run.previous
            )
            await _finish(call)
            attempt = _outcome(call, record, binding, request)

    # -- hedging ---------------------------------------------------------------------------
    async def _hedged(
        self,
        continuation: Continuation,
        details: Any,
        request: Any,
        policy: Any,
        deadline: float | None,
    ) -> Any:
        """Concurrent attempts on distinct endpoints; the first final answer wins."""
        run = HedgeRun(policy.hedging, self.budgets, policy.window)
        clock = self._clock
        wait_for_ready = details.wait_for_ready
        if wait_for_ready is None:
            wait_for_ready = policy.wait_for_ready
        window = policy.window
        flying: dict[asyncio.Future[None], tuple[Any, AttemptRecord, float]] = {}
        addresses: list[str] = []

        async def send() -> bool:
            if run.may_send() is not None:
                return False
            previous = run.sent
            run.on_send()
            record = AttemptRecord(frozenset(addresses))
            if previous:
                event = RetryEvent("hedge", previous + 1, method=details.method)
                self.rules._emit(event)
                note_event(details, event)
                record.hedge = True
            left = None if deadline is None else max(deadline - clock(), 0.0)
            started = clock()
            call = await self._send(
                continuation, details, request, record, left, wait_for_ready, previous
            )
            if record.address is not None:
                addresses.append(record.address)
            flying[_ended(call)] = (call, record, started)
            return True

        def timer() -> float | None:
            delay = run.next_delay()
            return None if delay is None else clock() + delay

        def lose(last: Attempt) -> Any:
            return _final(run, last, True)

        try:
            await send()
            hedge_at = timer()
            last: Attempt | None = None
            while True:
                if self._closed:
                    raise _closed_error()
                wait = None if hedge_at is None else max(hedge_at - clock(), 0.0)
                if not flying:
                    if hedge_at is None:
                        assert last is not None
                        return lose(last)
                    await self._pause(wait or 0.0)
                    done: set[asyncio.Future[None]] = set()
                else:
                    done, _ = await asyncio.wait(
                        flying, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                if not done:  # the hedging delay passed: one more attempt
                    hedge_at = timer() if await send() else None
                    continue
                for ended in done:
                    call, record, started = flying.pop(ended)
                    attempt = _outcome(call, record, False, request)
                    last = attempt
                    if attempt.code is _OK and window is not None:
                        window.add(clock() - started)
                    action = run.on_answer(attempt)
                    if action is HedgeAction.FINAL:
                        return _final(run, attempt, True)
                    if action is HedgeAction.LOSE:
                        return lose(attempt)
                    if action is HedgeAction.WAIT or (
                        action is HedgeAction.SEND_NOW and await send()
                    ):
                        hedge_at = timer()
                    elif not flying:
                        return lose(attempt)
        finally:
            for call, _record, _started in flying.values():
                call.cancel()

    # -- response streams ------------------------------------------------------------------
    async def _stream(
        self, continuation: Continuation, details: Any, request: Any, bidi: bool
    ) -> Any:
        rules = self.rules
        policy = self.policy(details.method)
        timeout, wait_for_ready = rules._call_timeout(details, policy)
        retry = policy.retry
        if retry is None:  # hedging applies to unary responses; a stream is sent once
            plain = request.replay() if isinstance(request, AsyncReplayBuffer) else request
            return await continuation(self._plain(details, timeout, wait_for_ready), plain)
        deadline = None if timeout is None else self._clock() + timeout
        self.budgets.called()
        run: RetryRun | None = None
        retryable_first = False
        record = AttemptRecord()
        previous = 0
        while True:
            attempt_timeout, binding = rules._attempt_timeout(deadline, retry)
            call = await self._send(
                continuation, details, request, record, attempt_timeout, wait_for_ready, previous
            )
            if not isinstance(call, grpc.aio.AioRpcError):
                first = await _first_message(call)
                if first is not _FAILED:
                    if first is grpc.aio.EOF:
                        return call  # ended cleanly with no message: final
                    return (_CommittedStreamStream if bidi else _CommittedUnaryStream)(call, first)
            attempt = _outcome(call, record, binding, request)
            if run is None:
                retryable_first = attempt.code in retry.retryable_status_codes or attempt.timed_out
                run = RetryRun(
                    retry,
                    self.budgets,
                    deadline=deadline,
                    clock=self._clock,
                    events=call_events(self._events, details),
                    asynchronous=True,
                    method=details.method,
                )
            delay = await run.astep(attempt)
            if delay is None:
                assert run.final is not None
                return _final(run, run.final, retryable_first)
            await self._pause(delay)
            record = AttemptRecord(run.tried_addresses)
            previous = run.previous

    # -- the interceptor hooks ---------------------------------------------------------------
    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return _raise_if_error(await self._unary(continuation, client_call_details, request))

    async def intercept_stream_unary(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        buffer = AsyncReplayBuffer(request_iterator, self._buffer_limit)
        return _raise_if_error(await self._unary(continuation, client_call_details, buffer))

    async def intercept_unary_stream(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return _raise_if_error(
            await self._stream(continuation, client_call_details, request, False)
        )

    async def intercept_stream_stream(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        buffer = AsyncReplayBuffer(request_iterator, self._buffer_limit)
        return _raise_if_error(await self._stream(continuation, client_call_details, buffer, True))


_FAILED: Any = object()


async def _first_message(call: Any) -> Any:
    """The first response of a stream call, ``grpc.aio.EOF``, or :data:`_FAILED`."""
    try:
        return await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            call.cancel()
            raise
        await _finish(call)
        return _FAILED


# ------------------------------------------------------------------ request replay


class AsyncReplayBuffer(KeptRequests):
    """A request stream (iterable or async iterable) each attempt reads from the start.

    The asyncio twin of :class:`interceptors.retry.ReplayBuffer`: messages are kept as the
    first reader pulls them; a later attempt replays them, then goes on pulling. Once the
    kept messages outgrow ``limit`` bytes the call is :attr:`committed`. An iterator that
    raises commits the call too: a retry must not send its requests cut short.
    """

    def __init__(self, source: Any, limit: int) -> None:
        if isinstance(source, AsyncIterable):
            self._async: AsyncIterator[Any] | None = source.__aiter__()
            self._sync = None
        else:
            self._async = None
            self._sync = iter(source)
        self._limit = limit
        self._kept: list[Any] = []
        self._size = 0
        self._exhausted = False
        self._failed = False
        self._generation = 0
        self.committed = False

    def replay(self) -> AsyncIterator[Any]:
        """An iterator over every request from the first; a new one ends the previous."""
        self._generation += 1
        return self._read(self._generation)

    async def _pull(self) -> Any:
        if self._async is not None:
            return await self._async.__anext__()
        assert self._sync is not None
        try:
            return next(self._sync)
        except StopIteration:
            raise StopAsyncIteration from None

    async def _read(self, generation: int) -> AsyncIterator[Any]:
        index = 0
        while generation == self._generation:
            if index < len(self._kept):
                item = self._kept[index]
            elif self._exhausted:
                return
            else:
                if self._failed:
                    raise RuntimeError("the request iterator raised in an earlier attempt")
                try:
                    item = await self._pull()
                except StopAsyncIteration:
                    self._exhausted = True
                    return
                except BaseException:
                    self._source_failed()
                    raise
                if generation != self._generation:
                    return
                self._keep(item)
            index += 1
            yield item


# ------------------------------------------------------------------ committed streams


class _Committed:
    """A stream attempt that delivered its first message: the call, that message first."""

    def __init__(self, call: Any, first: Any) -> None:
        self._call = call
        self._first = first

    async def read(self) -> Any:
        first, self._first = self._first, _FAILED
        if first is not _FAILED:
            return first
        return await self._call.read()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:
                return
            yield message

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def done(self) -> bool:
        return bool(self._call.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _call: callback(self))

    def time_remaining(self) -> float | None:
        remaining: float | None = self._call.time_remaining()
        return remaining

    async def initial_metadata(self) -> Any:
        return await self._call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._call.code()
        return code

    async def details(self) -> str:
        details: str = await self._call.details()
        return details

    async def debug_error_string(self) -> str | None:
        debug: str | None = await self._call.debug_error_string()
        return debug

    async def wait_for_connection(self) -> None:
        await self._call.wait_for_connection()

    async def write(self, request: Any) -> None:
        await self._call.write(request)

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._call.__await__()  # type: ignore[no-any-return]


class _CommittedUnaryStream(_Committed, grpc.aio.UnaryStreamCall):
    """A committed response stream."""


class _CommittedStreamStream(_Committed, grpc.aio.StreamStreamCall):
    """A committed bidirectional stream."""


# ------------------------------------------------------------------ the hot path's first attempt


def watch_first(
    step: RetryInterceptor,
    continuation: Continuation,
    details: Any,
    request: Any,
    call: Any,
    record: AttemptRecord,
    deadline: float | None,
    binding: bool,
) -> asyncio.Future[Any]:
    """A future of the call a retried unary call ends with, its first attempt ``call`` sent.

    No task and no tenacity while the first attempt succeeds: its done callback resolves
    the future with it. Only a failure starts a task, :meth:`RetryInterceptor.after_first`,
    which continues below the retry step with ``continuation``. Cancelling the future
    cancels whichever attempt or task is running.
    """
    outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    budgets = step.budgets
    if budgets:
        budgets.called()

    def first_done(finished: Any) -> None:
        if outcome.done():
            return
        if FinishedCall(finished).code() is _OK:
            if budgets:
                budgets.record(_OK, False)
            outcome.set_result(finished)
            return
        task = asyncio.ensure_future(
            step.after_first(continuation, details, request, finished, record, deadline, binding)
        )
        task.add_done_callback(functools.partial(_settle, outcome))
        outcome.add_done_callback(functools.partial(_cancel_if_cancelled, task))

    call.add_done_callback(first_done)
    outcome.add_done_callback(functools.partial(_cancel_if_cancelled, call))
    return outcome


def _settle(outcome: asyncio.Future[Any], task: asyncio.Future[Any]) -> None:
    if outcome.done():
        return
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())


def _cancel_if_cancelled(running: Any, outcome: asyncio.Future[Any]) -> None:
    if outcome.cancelled():
        running.cancel()
