"""The retry step: per-method retries, failover and hedging, as a grpc client interceptor.

:class:`RetryInterceptor` reads a gRPC service config's ``methodConfig`` (``retryPolicy``,
``hedgingPolicy``, ``timeout``, ``waitForReady``), ``retryThrottling`` and the
``retryBudget`` extension. It works alone on any grpc channel
(``grpc.intercept_channel(channel, RetryInterceptor(config))``: one backend, so retries
without failover), and is the step above the balancing step inside a
:class:`resilientrpc.ResilientChannel`, where each attempt carries an
:class:`~interceptors.details.AttemptRecord` so that the balancing step sends a retry to
an endpoint the call has not tried yet and reports where each attempt went.

The decisions are :mod:`resilientrpc.retry`'s; this module drives them on grpc's sync API:

* A call whose first attempt succeeds costs a policy lookup and nothing else: tenacity
  (:class:`~resilientrpc.retry.RetryRun`) is engaged only once an attempt has failed.
* Blocking calls retry in the caller's thread (sleeping the backoff there). Futures are
  driven by the attempts' done callbacks and a timer (the channel's background loop, or
  one shared timer thread that ends when idle), so ``future()`` never blocks.
* Response streams are retried until their first message arrives (then committed);
  request streams are buffered for replay up to ``grpc.per_rpc_retry_buffer_size`` bytes
  (256 KiB), beyond which the call is committed.
* A hedged unary call sends its attempts concurrently to distinct endpoints; the first
  final answer wins and the others are cancelled.
* The caller's final error is the last attempt's status; its details add what was tried.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from interceptors.details import AttemptRecord, RetryCallDetails
from interceptors.spans import call_events, note_event
from resilientrpc._calls import CANCELLED_DETAILS, LocalRpcError, PendingCall
from resilientrpc.config import HedgingPolicy, RetryPolicy, ServiceConfig, parse_service_config
from resilientrpc.retry import (
    DEFAULT_BUFFER_LIMIT,
    Attempt,
    Budgets,
    EventSink,
    HedgeAction,
    HedgeRun,
    LatencyWindow,
    RatioBudget,
    RetryEvent,
    RetryRun,
    Throttle,
    attempt_timeout,
    capped,
    with_previous_attempts,
)

__all__ = [
    "CallLater",
    "RetriedRpcError",
    "RetryInterceptor",
    "attempt_of",
    "budgets_for",
    "message_size",
    "retry_details",
]

#: Schedules ``function`` after ``delay`` seconds (thread-safe); returns its cancel.
CallLater = Callable[[float, Callable[[], None]], Callable[[], None]]

_OK = grpc.StatusCode.OK
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_CANCELLED = grpc.StatusCode.CANCELLED


def budgets_for(config: ServiceConfig, clock: Callable[[], float] = time.monotonic) -> Budgets:
    """The retry budgets a service config asks for: ``retryThrottling``, ``retryBudget``."""
    throttling = config.retry_throttling
    throttle = (
        None if throttling is None else Throttle(throttling.max_tokens, throttling.token_ratio)
    )
    spec = config.retry_budget
    budget = (
        None
        if spec is None
        else RatioBudget(spec.retry_ratio, spec.min_retries_per_second, spec.ttl, clock)
    )
    return Budgets(throttle, budget)


class RetriedRpcError(LocalRpcError):
    """The caller's error after retries: the last attempt's status, code and trailers, with
    details that add what was tried (``attempts``) and why no more were sent."""

    def __init__(self, last: Any, details: str, attempts: int) -> None:
        super().__init__(last.code(), details, tuple(last.trailing_metadata() or ()))
        self._initial_metadata = tuple(_safe(last, "initial_metadata") or ())
        self._debug = _safe(last, "debug_error_string")
        #: Attempts sent, the first one included.
        self.attempts = attempts

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._initial_metadata

    def debug_error_string(self) -> str | None:
        return self._debug  # type: ignore[no-any-return]


def _safe(call: Any, name: str) -> Any:
    method = getattr(call, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:
        return None


class _Policy(NamedTuple):
    retry: RetryPolicy | None
    hedging: HedgingPolicy | None
    timeout: float | None
    wait_for_ready: bool | None
    window: LatencyWindow | None


_NO_POLICY = _Policy(None, None, None, None, None)


# ------------------------------------------------------------------------------ timers


class _SharedTimers:
    """One timer thread for standalone interceptors' futures; it ends when it has been idle.

    Inside a ResilientChannel the channel's own loop schedules instead.
    """

    IDLE = 1.0

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, function: Callable[[], None]) -> Callable[[], None]:
        entry: list[Callable[[], None] | None] = [function]
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._ids), entry))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="resilientrpc-retry-timers", daemon=True
                )
                self._thread.start()
            self._lock.notify()

        def cancel() -> None:
            entry[0] = None

        return cancel

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    if not self._heap:
                        if not self._lock.wait(self.IDLE) and not self._heap:
                            self._thread = None
                            return
                        continue
                    when, _, entry = self._heap[0]
                    wait = when - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._lock.wait(wait)
            function = entry[0]
            if function is not None:
                try:
                    function()
                except Exception:  # a timer's job never ends the thread
                    import logging  # noqa: PLC0415

                    logging.getLogger(__name__).exception("retry timer job raised")


_timers = _SharedTimers()

_CLOSED_DETAILS = "channel closed"


class _Waiter:
    """A blocking call sleeping its backoff: :meth:`close` wakes it."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = threading.Event()

    def close(self) -> None:
        self.wake.set()


# --------------------------------------------------------------------- the interceptor


def retry_details(
    details: Any,
    record: AttemptRecord,
    timeout: float | None,
    wait_for_ready: bool | None,
    previous: int,
    metadata_type: Callable[..., Any] = tuple,
) -> RetryCallDetails:
    """The details of one attempt: the call's, with this attempt's timeout, its record, and
    (on a retry) the previous-attempts header in metadata of ``metadata_type``. The record
    learns its number and, for a traced call, the call's trace."""
    metadata = details.metadata
    if previous:
        pairs = with_previous_attempts(metadata, previous)
        metadata = pairs if metadata_type is tuple else metadata_type(*pairs)
    record.number = previous + 1
    call = getattr(details, "attempt", None)
    if call is not None and call.trace is not None:  # a traced call: its attempts are too
        record.trace = trace = call.trace
        trace.attempts = max(trace.attempts, record.number)
    return RetryCallDetails(
        details.method,
        timeout,
        metadata,
        details.credentials,
        wait_for_ready,
        getattr(details, "compression", None),
        record,
    )


def attempt_of(call: Any, record: AttemptRecord, binding: bool, request: Any = None) -> Attempt:
    """The :class:`Attempt` a finished call (or error) came to.

    ``request`` is the call's request; a :class:`ReplayBuffer` that outgrew its limit
    commits the attempt.
    """
    code = call.code()
    if code is _OK:
        return Attempt(code, result=call, address=record.address)
    return Attempt(
        code,
        call.details(),
        call.trailing_metadata(),
        call,
        record.address,
        committed=isinstance(request, ReplayBuffer) and request.committed,
        timed_out=binding and code is _DEADLINE_EXCEEDED,
        can_fail_over=record.address is not None,
    )


def _final(run: RetryRun | HedgeRun, attempt: Attempt, retryable_first: bool) -> Any:
    """What the caller gets: a success as is, a failure annotated with what was tried."""
    if attempt.code is _OK:
        return attempt.result
    if len(run.tried) == 1 and not retryable_first:
        return attempt.result  # one attempt, not retryable: grpc's own error, untouched
    return RetriedRpcError(attempt.result, run.annotate(attempt.details), len(run.tried))


class RetryInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Per-method retries and hedging from a gRPC service config, on any grpc channel.

    >>> channel = grpc.intercept_channel(  # doctest: +SKIP
    ...     grpc.insecure_channel("127.0.0.1:50051"), RetryInterceptor("retry_config.json")
    ... )

    ``config``: a service config (dict, JSON text, path, or a parsed
    :class:`~resilientrpc.config.ServiceConfig`). ``events`` receives a
    :class:`~resilientrpc.retry.RetryEvent` for every retry, hedge, refusal and stop.
    """

    def __init__(
        self,
        config: Any = None,
        *,
        budgets: Budgets | None = None,
        call_later: CallLater | None = None,
        clock: Callable[[], float] = time.monotonic,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        events: EventSink | None = None,
        blocking: bool | None = None,
    ) -> None:
        self.config = config if isinstance(config, ServiceConfig) else parse_service_config(config)
        self.budgets = budgets if budgets is not None else budgets_for(self.config, clock)
        self._call_later = call_later if call_later is not None else _timers.call_later
        self._clock = clock
        self._buffer_limit = buffer_limit
        self._events = events
        self._policies: dict[str, _Policy] = {}
        self._blocking = blocking
        #: Futures waiting on a retry or hedge timer: failed at close(), whose timers die.
        self._waiting: set[Any] = set()
        #: Set by close(); shared with every :meth:`view` (a copied flag would not be).
        self._closing = threading.Event()

    @property
    def _closed(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """End every call still waiting to retry: CANCELLED "channel closed"."""
        self._closing.set()
        for driver in list(self._waiting):
            driver.close()

    def _pause(self, delay: float, waiter: Any) -> bool:
        """Sleep a blocking retry's backoff; False if close() (or ``waiter.close()``)
        cut it short. ``waiter`` is in :attr:`_waiting` meanwhile: close() wakes it."""
        self._waiting.add(waiter)
        try:
            if self._closed:
                waiter.close()
            return not waiter.wake.wait(delay)
        finally:
            self._waiting.discard(waiter)

    def view(self, *, blocking: bool) -> RetryInterceptor:
        """This step for a chain whose continuation blocks (True) or returns a future.

        A channel knows which of its chains a step is in; grpc's own interceptor API does
        not say, so a standalone interceptor tells by whether the first attempt is done.
        """
        view = RetryInterceptor.__new__(RetryInterceptor)
        view.__dict__.update(self.__dict__)
        view._blocking = blocking
        return view

    def policy(self, method: str) -> _Policy:
        """The method's policy from the service config (cached per method name)."""
        found = self._policies.get(method)
        if found is None:
            config = self.config.method_config(method)
            if config is None:
                found = _NO_POLICY
            else:
                hedging = config.hedging_policy
                percentile = None if hedging is None else hedging.hedging_delay_percentile
                found = _Policy(
                    config.retry_policy,
                    hedging,
                    config.timeout,
                    config.wait_for_ready,
                    None if percentile is None else LatencyWindow(percentile),
                )
            self._policies[method] = found
        return found

    # -- helpers -------------------------------------------------------------------------
    def _emit(self, event: RetryEvent) -> None:
        if self._events is not None:
            try:
                self._events(event)
            except Exception:
                import logging  # noqa: PLC0415

                logging.getLogger(__name__).exception("retry event listener raised")

    @staticmethod
    def _call_timeout(details: Any, policy: _Policy) -> tuple[float | None, bool | None]:
        timeout = capped(details.timeout, policy.timeout)
        wait_for_ready = details.wait_for_ready
        if wait_for_ready is None:
            wait_for_ready = policy.wait_for_ready
        return timeout, wait_for_ready

    def _send(
        self,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        record: AttemptRecord,
        timeout: float | None,
        wait_for_ready: bool | None,
        previous: int,
    ) -> Any:
        """Send one attempt down the chain; a raised grpc error becomes the attempt's call."""
        attempt_details = retry_details(details, record, timeout, wait_for_ready, previous)
        try:
            return continuation(attempt_details, request)
        except grpc.RpcError as error:
            return error

    def _attempt_timeout(
        self, deadline: float | None, policy: RetryPolicy | None
    ) -> tuple[float | None, bool]:
        """An attempt's timeout now, and whether the per-attempt cap is what binds it."""
        cap = None if policy is None else policy.per_attempt_recv_timeout
        return attempt_timeout(deadline, self._clock(), cap)

    # -- unary request ----------------------------------------------------------------------
    def _unary(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        policy = self.policy(details.method)
        timeout, wait_for_ready = self._call_timeout(details, policy)
        if policy.retry is None and (policy.hedging is None or isinstance(request, ReplayBuffer)):
            # (hedging applies to unary requests: concurrent attempts cannot share one
            # request stream; a client-streaming call under a hedging policy goes once)
            if timeout == details.timeout and wait_for_ready == details.wait_for_ready:
                return continuation(details, request)
            return continuation(
                details._replace(timeout=timeout, wait_for_ready=wait_for_ready)
                if hasattr(details, "_replace")
                else RetryCallDetails(
                    details.method,
                    timeout,
                    details.metadata,
                    details.credentials,
                    wait_for_ready,
                    details.compression,
                    AttemptRecord(),
                ),
                request,
            )
        deadline = None if timeout is None else self._clock() + timeout
        self.budgets.called()
        if policy.hedging is not None and not isinstance(request, ReplayBuffer):
            return _Hedged(
                self, continuation, details, request, policy, deadline, wait_for_ready
            ).start()
        retry = policy.retry
        assert retry is not None  # neither passed through nor hedged
        record = AttemptRecord()
        attempt_timeout, binding = self._attempt_timeout(deadline, retry)
        call = self._send(
            continuation, details, request, record, attempt_timeout, wait_for_ready, 0
        )
        blocking = self._blocking if self._blocking is not None else call.done()
        if blocking:
            return self._retry_blocking(
                continuation,
                details,
                request,
                retry,
                deadline,
                wait_for_ready,
                call,
                record,
                binding,
            )
        driver = _FutureRetry(self, continuation, details, request, retry, deadline, wait_for_ready)
        return driver.start(call, record, binding)

    def first_failed(
        self,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        error: Any,
        record: AttemptRecord,
        deadline: float | None,
        binding: bool,
    ) -> Any:
        """Go on with a blocking call whose first attempt the channel's hot path sent."""
        policy = self.policy(details.method)
        assert policy.retry is not None
        return self._retry_blocking(
            continuation,
            details,
            request,
            policy.retry,
            deadline,
            details.wait_for_ready,
            error,
            record,
            binding,
        )

    def _retry_blocking(
        self,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        policy: RetryPolicy,
        deadline: float | None,
        wait_for_ready: bool | None,
        call: Any,
        record: AttemptRecord,
        binding: bool,
    ) -> Any:
        attempt = attempt_of(call, record, binding, request)
        budgets = self.budgets
        if attempt.code is _OK:
            if budgets:
                budgets.record(_OK, False)
            return call
        run = RetryRun(
            policy,
            budgets,
            deadline=deadline,
            clock=self._clock,
            events=call_events(self._events, details),
            method=details.method,
        )
        retryable_first = attempt.code in policy.retryable_status_codes or attempt.timed_out
        while True:
            delay = run.step(attempt)
            if delay is None:
                assert run.final is not None
                return _final(run, run.final, retryable_first)
            if delay > 0 and not self._pause(delay, _Waiter()):
                return LocalRpcError(_CANCELLED, _CLOSED_DETAILS)
            record = AttemptRecord(run.tried_addresses)
            timeout, binding = self._attempt_timeout(deadline, policy)
            call = self._send(
                continuation, details, request, record, timeout, wait_for_ready, run.previous
            )
            attempt = attempt_of(call, record, binding, request)

    # -- the interceptor hooks ------------------------------------------------------------
    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        return self._unary(continuation, client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._unary(
            functools.partial(_replaying_send, continuation),
            client_call_details,
            ReplayBuffer(request_iterator, self._buffer_limit),
        )

    def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        return self._stream(continuation, client_call_details, request)

    def intercept_stream_stream(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._stream(
            functools.partial(_replaying_send, continuation),
            client_call_details,
            ReplayBuffer(request_iterator, self._buffer_limit),
        )

    # -- response streams -------------------------------------------------------------------
    def _stream(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        policy = self.policy(details.method)
        timeout, wait_for_ready = self._call_timeout(details, policy)
        retry = policy.retry
        if retry is None:  # hedging applies to unary responses; a stream is sent once
            record = AttemptRecord()
            return self._send(continuation, details, request, record, timeout, wait_for_ready, 0)
        deadline = None if timeout is None else self._clock() + timeout
        self.budgets.called()
        return RetryingStream(self, continuation, details, request, retry, deadline, wait_for_ready)


def _replaying_send(
    continuation: Callable[[Any, Any], Any], details: Any, buffer: ReplayBuffer
) -> Any:
    """Send an attempt of a request-streaming call with a fresh replay of its requests."""
    return continuation(details, buffer.replay(details.attempt))


# ------------------------------------------------------------------ request replay


class KeptRequests:
    """The kept part of a replayed request stream (shared by both twins' buffers)."""

    _kept: list[Any]
    _size: int
    _limit: int
    _failed: bool
    committed: bool

    def _keep(self, item: Any) -> None:
        """Keep ``item`` for replay, or commit the call once the kept outgrow the limit."""
        if not self.committed:
            self._size += message_size(item)
            if self._size > self._limit:
                self.committed = True
                self._kept.clear()
            else:
                self._kept.append(item)

    def _source_failed(self) -> None:
        """The caller's iterator raised: commit, so no attempt resends it cut short."""
        self._failed = self.committed = True
        self._kept.clear()


class ReplayBuffer(KeptRequests):
    """A request stream that each attempt reads from the start (A6's retry buffer).

    Messages are kept as the first reader pulls them from the caller's iterator; a later
    attempt replays the kept ones, then goes on pulling. Once the kept messages outgrow
    ``limit`` bytes (``len`` of each, for serialized messages) the call is *committed*:
    nothing more is kept and no further attempt may start (:attr:`committed`).

    The caller's iterator may block (a bidi request stream waiting for a response): it is
    never read under the lock that :meth:`replay` and the replay of kept messages take,
    so a retry replays at once while an earlier attempt's reader still waits on it. An
    iterator that raises commits the call: a retry must not send its requests cut short.
    """

    def __init__(self, source: Iterator[Any], limit: int) -> None:
        self._source = iter(source)
        self._limit = limit
        self._kept: list[Any] = []
        self._size = 0
        self._lock = threading.Lock()
        self._pulling = threading.Lock()  # one reader at a time reads the caller's iterator
        self._exhausted = False
        self._failed = False
        self.committed = False
        self._generation = 0

    def replay(self, record: Any = None) -> Iterator[Any]:
        """An iterator over every request from the first; a new one ends the previous."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        return self._read(generation)

    def _read(self, generation: int) -> Iterator[Any]:
        index = 0
        while True:
            with self._lock:
                if generation != self._generation:
                    return  # a newer attempt reads now; this one's call is over
                if index < len(self._kept):
                    item = self._kept[index]
                    index += 1
                    pull = False
                elif self._exhausted:
                    return
                else:
                    pull = True
            if pull:
                pulled = self._pull(generation, index)
                if pulled is _NOTHING:
                    continue  # another reader pulled meanwhile, or this one is over
                item = pulled
                index += 1
            yield item

    def _pull(self, generation: int, index: int) -> Any:
        """The caller's next request for the reader at ``index``, kept for replay."""
        with self._pulling:
            with self._lock:
                if generation != self._generation or index < len(self._kept) or self._exhausted:
                    return _NOTHING
                if self._failed:
                    raise RuntimeError("the request iterator raised in an earlier attempt")
            try:
                item = next(self._source)
            except StopIteration:
                with self._lock:
                    self._exhausted = True
                return _NOTHING
            except BaseException:
                with self._lock:
                    self._source_failed()
                raise
            with self._lock:
                self._keep(item)
                if generation != self._generation:
                    return _NOTHING  # kept: the newer attempt's reader replays it
            return item


def message_size(message: Any) -> int:
    """Bytes a request takes in the replay buffer: serialized length when known."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message)
    size = getattr(message, "ByteSize", None)  # a protobuf message on a plain channel
    return int(size()) if callable(size) else 0


# ------------------------------------------------------------------ future-driven retry


class _CallRetries:
    """One call's retries, whoever drives them: what it was asked, and its RetryRun."""

    def __init__(
        self,
        owner: RetryInterceptor,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        policy: RetryPolicy,
        deadline: float | None,
        wait_for_ready: bool | None,
    ) -> None:
        self._owner = owner
        self._continuation = continuation
        self._details = details
        self._request = request
        self._policy = policy
        self._deadline = deadline
        self._wait_for_ready = wait_for_ready
        self._run: RetryRun | None = None
        self._retryable_first = False

    def _run_after(self, attempt: Attempt) -> RetryRun:
        """The call's RetryRun, built at its first failure (``attempt``)."""
        run = self._run
        if run is None:
            policy = self._policy
            self._retryable_first = attempt.code in policy.retryable_status_codes or (
                attempt.timed_out
            )
            owner = self._owner
            run = self._run = RetryRun(
                policy,
                owner.budgets,
                deadline=self._deadline,
                clock=owner._clock,
                events=call_events(owner._events, self._details),
                method=self._details.method,
            )
        return run

    def _send_next(self, run: RetryRun) -> tuple[Any, AttemptRecord, bool]:
        """Send the next attempt: its call, its record, whether its own timeout binds."""
        owner = self._owner
        record = AttemptRecord(run.tried_addresses)
        timeout, binding = owner._attempt_timeout(self._deadline, self._policy)
        call = owner._send(
            self._continuation,
            self._details,
            self._request,
            record,
            timeout,
            self._wait_for_ready,
            run.previous,
        )
        return call, record, binding


class _FutureRetry(_CallRetries):
    """A unary call's retries driven by its attempts' done callbacks and a timer."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        owner = self._owner
        self._lock = threading.Lock()
        self._current: Any = None
        self._cancel_timer: Callable[[], None] | None = None
        self.pending = PendingCall(self._deadline, owner._clock)
        self.pending.withdraw = self._withdraw

    def start(self, call: Any, record: AttemptRecord, binding: bool) -> PendingCall:
        self._watch(call, record, binding)
        return self.pending

    def _watch(self, call: Any, record: AttemptRecord, binding: bool) -> None:
        with self._lock:
            self._current = call
        call.add_done_callback(functools.partial(self._done, record, binding))

    def _withdraw(self) -> None:
        with self._lock:
            current, self._current = self._current, None
            cancel_timer, self._cancel_timer = self._cancel_timer, None
        if cancel_timer is not None:
            cancel_timer()
        if current is not None:
            current.cancel()

    def _done(self, record: AttemptRecord, binding: bool, call: Any) -> None:
        if self.pending.cancelled():
            return
        attempt = attempt_of(call, record, binding, self._request)
        if self._run is None and attempt.code is _OK:
            if self._owner.budgets:
                self._owner.budgets.record(_OK, False)
            self.pending.settle(call)
            return
        run = self._run_after(attempt)
        delay = run.step(attempt)
        if delay is None:
            assert run.final is not None
            self.pending.settle(_final(run, run.final, self._retryable_first))
            return
        if delay <= 0:
            self._next()
            return
        owner = self._owner
        owner._waiting.add(self)
        cancel = owner._call_later(delay, self._next)
        with self._lock:
            self._cancel_timer = cancel
        if owner._closed:
            self.close()

    def close(self) -> None:
        """The channel closed while this call waited to retry: it ends CANCELLED."""
        self._owner._waiting.discard(self)
        if self.pending.settle(LocalRpcError(_CANCELLED, _CLOSED_DETAILS)):
            self._withdraw()

    def _next(self) -> None:
        self._owner._waiting.discard(self)
        if self.pending.cancelled() or self.pending.done():
            return
        run = self._run
        assert run is not None
        call, record, binding = self._send_next(run)
        self._watch(call, record, binding)


# ------------------------------------------------------------------------------ hedging


class _Hedged:
    """A hedged unary call: attempts in parallel on distinct endpoints, the first answer wins."""

    def __init__(
        self,
        owner: RetryInterceptor,
        continuation: Callable[[Any, Any], Any],
        details: Any,
        request: Any,
        policy: _Policy,
        deadline: float | None,
        wait_for_ready: bool | None,
    ) -> None:
        assert policy.hedging is not None
        self._owner = owner
        self._continuation = continuation
        self._details = details
        self._request = request
        self._deadline = deadline
        self._wait_for_ready = wait_for_ready
        self._window = policy.window
        self._run = HedgeRun(policy.hedging, owner.budgets, policy.window)
        self._lock = threading.RLock()
        self._calls: list[Any] = []
        self._addresses: list[str] = []
        self._cancel_timer: Callable[[], None] | None = None
        self._over = False
        self._sequential = False
        self._outcome: tuple[Any, Any] | None = None
        self.pending = PendingCall(deadline, owner._clock)
        self.pending.withdraw = self._cancel_all

    def start(self) -> PendingCall:
        with self._lock:
            self._send()
            # A standalone interceptor under a blocking call gets a blocking continuation:
            # its attempts cannot overlap, so hedges go one after another, with no timer.
            self._sequential = self._owner._blocking is None and self._calls[0].done()
            if not self._sequential:
                self._schedule()
        self._deliver()
        return self.pending

    def _deliver(self) -> None:
        """Settle the call and cancel the losers, outside the lock (user code may run)."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
            losers = [] if outcome is None else [c for c in self._calls if c is not outcome[1]]
        if outcome is None:
            return
        self.pending.settle(outcome[0])
        for call in losers:
            if not call.done():
                call.cancel()

    def _send(self) -> bool:
        """Send one more attempt if the schedule allows it (caller holds the lock)."""
        run = self._run
        if self._over or run.may_send() is not None:
            return False
        previous = run.sent
        run.on_send()
        record = AttemptRecord(frozenset(self._addresses))
        if previous:
            event = RetryEvent("hedge", previous + 1, method=self._details.method)
            self._owner._emit(event)
            note_event(self._details, event)
            record.hedge = True
        left = None if self._deadline is None else max(self._deadline - self._owner._clock(), 0.0)
        started = self._owner._clock()
        call = self._owner._send(
            self._continuation,
            self._details,
            self._request,
            record,
            left,
            self._wait_for_ready,
            previous,
        )
        if record.address is not None:
            self._addresses.append(record.address)
        self._calls.append(call)
        call.add_done_callback(functools.partial(self._answered, record, started))
        return True

    def _schedule(self) -> None:
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
        delay = self._run.next_delay()
        if delay is not None and not self._over:
            self._owner._waiting.add(self)
            self._cancel_timer = self._owner._call_later(delay, self._on_timer)

    def close(self) -> None:
        """The channel closed: the call ends CANCELLED, its attempts cancelled."""
        self._owner._waiting.discard(self)
        if self.pending.settle(LocalRpcError(_CANCELLED, _CLOSED_DETAILS)):
            self._cancel_all()

    def _on_timer(self) -> None:
        with self._lock:
            self._cancel_timer = None
            if self._send():
                self._schedule()
            elif self._run.outstanding == 0 and not self._over:
                self._lose(None)
        self._deliver()

    def _answered(self, record: AttemptRecord, started: float, call: Any) -> None:
        self._answer(record, started, call)
        self._deliver()

    def _answer(self, record: AttemptRecord, started: float, call: Any) -> None:
        with self._lock:
            if self._over:
                return
            attempt = attempt_of(call, record, False)
            if attempt.code is _OK and self._window is not None:
                self._window.add(self._owner._clock() - started)
            action = self._run.on_answer(attempt)
            if action is HedgeAction.FINAL:
                self._finish(
                    _final(self._run, attempt, True) if attempt.code is not _OK else call, call
                )
            elif action is HedgeAction.SEND_NOW:
                if self._send():
                    if not self._sequential:
                        self._schedule()
                elif self._run.outstanding == 0:
                    self._lose(attempt)
            elif action is HedgeAction.LOSE:
                self._lose(attempt)
            elif self._sequential:
                if not self._send() and self._run.outstanding == 0:
                    self._lose(attempt)
            else:
                self._schedule()
                if self._run.outstanding == 0 and self._cancel_timer is None:
                    self._lose(attempt)

    def _lose(self, attempt: Attempt | None) -> None:
        last = attempt
        if last is None:
            calls = [c for c in self._calls if c.done()]
            if not calls:
                return
            last = attempt_of(calls[-1], AttemptRecord(), False)
        if last.code is _OK:
            self._finish(last.result, last.result)
            return
        self._finish(
            RetriedRpcError(last.result, self._run.annotate(last.details), len(self._run.tried)),
            None,
        )

    def _finish(self, result: Any, winner: Any) -> None:
        """End the call with ``result`` (caller holds the lock; :meth:`_deliver` settles)."""
        self._over = True
        self._owner._waiting.discard(self)
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
        self._outcome = (result, winner)

    def _cancel_all(self) -> None:
        with self._lock:
            self._over = True
            if self._cancel_timer is not None:
                self._cancel_timer()
                self._cancel_timer = None
            calls = list(self._calls)
        for call in calls:
            call.cancel()


# ------------------------------------------------------------------------ response streams


class RetryingStream(_CallRetries, grpc.Call, grpc.Future):
    """A response stream retried until its first message arrives, then committed.

    Attempts are made in the thread that reads (or asks for the status), as a blocking
    iterator's work is done in its reader. Once a message has been delivered, or the
    request stream outgrew its replay buffer, the current attempt is the call.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._lock = threading.RLock()
        self._committed = False
        self._first: Any = _NOTHING
        self._final_error: Any = None
        self._cancelled = False
        self._callbacks: list[Callable[[Any], None]] = []
        self._record = AttemptRecord()
        #: Set by cancel() and close(): a backoff in progress ends at once.
        self.wake = threading.Event()
        timeout, self._binding = self._owner._attempt_timeout(self._deadline, self._policy)
        self._call = self._owner._send(
            self._continuation,
            self._details,
            self._request,
            self._record,
            timeout,
            self._wait_for_ready,
            0,
        )

    # the retrying core: called with the lock held
    def _settle(self) -> None:
        """Drive attempts until one delivers a message or the call is over."""
        while not self._committed and self._final_error is None and not self._cancelled:
            call = self._call
            try:
                self._first = next(call)
                self._committed = True
                return
            except StopIteration:
                self._committed = True  # ended cleanly with no message: final
                return
            except grpc.RpcError:
                pass
            attempt = attempt_of(call, self._record, self._binding, self._request)
            run = self._run_after(attempt)
            delay = run.step(attempt)
            if delay is None:
                assert run.final is not None
                final = _final(run, run.final, self._retryable_first)
                if final is call:
                    self._committed = True
                else:
                    self._final_error = final
                return
            if delay > 0 and not self._owner._pause(delay, self):
                return  # cancelled, or the channel closed, while waiting
            self._call, self._record, self._binding = self._send_next(run)
            if self._cancelled:  # cancel() raced with the send: this attempt goes too
                self._call.cancel()

    def close(self) -> None:
        """The channel closed while this stream waited to retry: it ends CANCELLED."""
        if self._final_error is None:
            self._final_error = LocalRpcError(_CANCELLED, _CLOSED_DETAILS)
        self.wake.set()

    def _settled(self) -> Any:
        with self._lock:
            self._settle()
        self._attach_waiting()
        return self._final_error if self._final_error is not None else self._call

    # iteration
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        with self._lock:
            self._settle()
            error = self._final_error
            first, self._first = self._first, _NOTHING
            call = self._call
        self._attach_waiting()
        if error is not None:
            raise error
        if first is not _NOTHING:
            return first
        return next(call)

    def next(self) -> Any:
        return self.__next__()

    # grpc.Call
    def code(self) -> Any:
        return self._settled().code()

    def details(self) -> Any:
        return self._settled().details()

    def initial_metadata(self) -> Any:
        return self._settled().initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._settled().trailing_metadata()

    def is_active(self) -> bool:
        if self._final_error is not None:
            return False
        return bool(self._call.is_active()) or not self._committed

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - self._owner._clock(), 0.0)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._call.add_callback(callback))

    # grpc.Future
    def cancel(self) -> bool:
        self._cancelled = True
        if self._final_error is None:
            self._final_error = LocalRpcError(_CANCELLED, CANCELLED_DETAILS)
        self.wake.set()  # a backoff in progress ends now, sending nothing more
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return self.is_active()

    def done(self) -> bool:
        return not self.is_active()

    def result(self, timeout: float | None = None) -> Any:
        return self._settled().result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        return self._settled().exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._settled().traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._lock:
            if not (self._committed or self._final_error is not None):
                self._callbacks.append(fn)  # attached once an attempt is the call
                return
        self._attach(fn)

    def _attach(self, fn: Callable[[Any], None]) -> None:
        target = self._final_error if self._final_error is not None else self._call
        target.add_done_callback(lambda _call: fn(self))

    def _attach_waiting(self) -> None:
        with self._lock:
            if not (self._committed or self._final_error is not None):
                return
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            self._attach(fn)


_NOTHING: Any = object()
