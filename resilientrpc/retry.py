"""Retries, failover and hedging: the decisions both twins share (gRFC A6, plus extensions).

Nothing here sends a call or sleeps; the drivers (:mod:`interceptors.retry` and its
``interceptors.aio`` twin) do, and ask this module what to do next:

* :func:`plan` - after a failed attempt, retry (after how long) or stop (and why). The
  rules: A6's retryable codes, ``maxAttempts``, exponential backoff with full jitter,
  server pushback (``grpc-retry-pushback-ms``, or a ``google.rpc.RetryInfo`` in
  ``grpc-status-details-bin``), the call's deadline (a retry whose backoff would end past
  it is not started), commitment (a stream that has delivered a message is never
  retried), ``perAttemptRecvTimeout`` (an attempt that ran out of its own time is
  retried), and transparent retries (an attempt that never reached a server is resent at
  once, outside ``maxAttempts``).
* :class:`Budgets` - ``retryThrottling`` (A6's token bucket) and the ratio
  ``retryBudget`` (Finagle / Linkerd); a retry or hedge refused by either is not sent.
* :class:`RetryRun` - one call's retry loop, which *is* tenacity's: ``retry`` / ``wait``
  / ``stop`` / ``before_sleep`` strategies over the outcomes the driver feeds in, stepped
  with ``Retrying.iter`` (or ``AsyncRetrying.iter``). A call whose first attempt succeeds
  never builds one.
* :class:`HedgeRun` - one hedged call's schedule: when to send the next hedge, which
  answer ends the call.
* :func:`annotated_details` - what the caller's final error says was tried.

grpc facts this relies on, probed with grpcio 1.85.3 (sync and asyncio):

* grpc drops a ``grpc-previous-rpc-attempts`` request header without a word: servers never
  see it. Retries therefore carry :data:`PREVIOUS_ATTEMPTS_HEADER` instead.
* A call on a backend that refuses connections fails UNAVAILABLE with details starting
  "failed to connect to all addresses": it never reached a server
  (:func:`never_reached_server`).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc
import tenacity

from resilientrpc.config import HedgingPolicy, RetryPolicy
from resilientrpc.picker import Tried

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "MAX_SERVER_DELAY",
    "MAX_TRANSPARENT_RETRIES",
    "NO_RETRY",
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_HEADER",
    "Attempt",
    "Budgets",
    "HedgeRun",
    "LatencyWindow",
    "RatioBudget",
    "Retry",
    "RetryEvent",
    "RetryRun",
    "Stop",
    "Throttle",
    "annotated_details",
    "attempt_timeout",
    "backoff",
    "never_reached_server",
    "plan",
    "server_pushback",
    "with_previous_attempts",
]

_log = logging.getLogger(__name__)

#: The request header a retry carries: how many attempts preceded it (A6's
#: ``grpc-previous-rpc-attempts``, which grpc will not send).
PREVIOUS_ATTEMPTS_HEADER = "resilientrpc-previous-rpc-attempts"
#: A6's server pushback trailer: milliseconds to wait, or negative / unparseable for "stop".
PUSHBACK_HEADER = "grpc-retry-pushback-ms"
#: The trailer carrying a serialized ``google.rpc.Status`` (its details may hold a RetryInfo).
STATUS_DETAILS_HEADER = "grpc-status-details-bin"
#: Bytes of request messages one call buffers for replay (gRPC's default per-RPC limit);
#: a call whose requests outgrow it is committed. Channel option
#: ``grpc.per_rpc_retry_buffer_size`` changes it.
DEFAULT_BUFFER_LIMIT = 256 * 1024
#: The longest wait a server may ask for (pushback or RetryInfo). A server asking for more
#: gets no retry at all: the call fails now with its real error rather than sleep for
#: hours (a pushback may say up to 2**31 - 1 ms, about 25 days).
MAX_SERVER_DELAY = 60.0
#: Attempts per call that may be resent at once because they never reached a server; they
#: do not count against ``maxAttempts`` (A6's transparent retries), but are bounded so a
#: call can never spin.
MAX_TRANSPARENT_RETRIES = 4

_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_OK = grpc.StatusCode.OK
_NEVER_REACHED = "failed to connect to all addresses"
_PUSHBACK_VALUE = re.compile(r"-?(0|[1-9][0-9]*)")
_INT32_MAX = 2**31 - 1

Metadata = Sequence[tuple[str, str | bytes]]


class _NoRetry(enum.Enum):
    NO_RETRY = "no retry"


#: :func:`server_pushback`'s answer when the server said not to retry.
NO_RETRY = _NoRetry.NO_RETRY


def never_reached_server(code: grpc.StatusCode, details: str | None) -> bool:
    """Whether a failed attempt provably never reached a server (it may be resent at once).

    grpc reports a call on a subchannel that could not connect (refused, or not connected
    at pick time) as UNAVAILABLE "failed to connect to all addresses; ...".
    """
    return code is _UNAVAILABLE and bool(details) and details.startswith(_NEVER_REACHED)  # type: ignore[union-attr]


def backoff(policy: RetryPolicy, retry: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the ``retry``-th retry (1 = the first): A6's full-jitter backoff.

    ``random(0, min(initial_backoff * backoff_multiplier ** (retry - 1), max_backoff))``.
    """
    ceiling = policy.initial_backoff * policy.backoff_multiplier ** (retry - 1)
    return rng() * min(ceiling, policy.max_backoff)


def _retry_info_delay(value: str | bytes) -> float | None:
    """The RetryInfo delay in a ``grpc-status-details-bin`` value, if it has one."""
    from google.protobuf.message import DecodeError  # noqa: PLC0415 - only on failures
    from google.rpc import error_details_pb2, status_pb2  # noqa: PLC0415

    payload = value if isinstance(value, bytes) else value.encode("latin-1")
    try:
        status = status_pb2.Status.FromString(payload)
    except DecodeError:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            # A negative duration is no valid delay: as if the server said nothing, so the
            # policy's own backoff applies (not a retry at once).
            return delay if delay >= 0 else None
    return None


def server_pushback(trailing_metadata: Iterable[tuple[str, Any]] | None) -> float | _NoRetry | None:
    """What the server asked of the client's next retry: seconds, :data:`NO_RETRY`, or None.

    ``grpc-retry-pushback-ms`` (A6): a non-negative int32 without leading zeros is a delay;
    a negative or unparseable one means "do not retry". Otherwise a ``google.rpc.RetryInfo``
    in ``grpc-status-details-bin`` gives the delay. None: the server said nothing.
    """
    if not trailing_metadata:
        return None
    details = None
    for key, value in trailing_metadata:
        if key == PUSHBACK_HEADER:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if not _PUSHBACK_VALUE.fullmatch(text):
                return NO_RETRY
            milliseconds = int(text)
            if milliseconds < 0 or milliseconds > _INT32_MAX:
                return NO_RETRY
            return milliseconds / 1000.0
        if key == STATUS_DETAILS_HEADER:
            details = value
    if details is not None:
        return _retry_info_delay(details)
    return None


def with_previous_attempts(metadata: Metadata | None, previous: int) -> tuple[tuple[str, Any], ...]:
    """``metadata`` plus :data:`PREVIOUS_ATTEMPTS_HEADER` (any earlier value replaced)."""
    kept = tuple(item for item in metadata or () if item[0] != PREVIOUS_ATTEMPTS_HEADER)
    return (*kept, (PREVIOUS_ATTEMPTS_HEADER, str(previous)))


@dataclass(slots=True)
class Attempt:
    """What one attempt came to, as the driver saw it.

    ``result`` is what the caller gets if this attempt is the last (the driver's own call
    or error object). ``address`` is the endpoint it went to (None on a plain channel).
    ``committed``: it delivered response messages (or its requests outgrew the replay
    buffer, or the request iterator raised), so it can no longer be retried.
    ``timed_out``: it ran out of its own ``perAttemptRecvTimeout`` while the call still
    had time.
    """

    code: grpc.StatusCode
    details: str | None = None
    trailing_metadata: Metadata | None = None
    result: Any = None
    address: str | None = None
    committed: bool = False
    timed_out: bool = False
    can_fail_over: bool = False
    """Set by a driver that can send a resend elsewhere (a balancing step below it)."""


class Retry(NamedTuple):
    """Send another attempt after ``delay`` seconds."""

    delay: float
    transparent: bool = False
    pushback: bool = False


class Stop(NamedTuple):
    """Send no more attempts; ``reason`` says why (shown in the caller's error)."""

    reason: str


def plan(
    policy: RetryPolicy,
    attempt: Attempt,
    *,
    attempts: int,
    transparent: int,
    backoff_retry: int,
    now: float,
    deadline: float | None,
    rng: Callable[[], float] = random.random,
) -> Retry | Stop:
    """After a failed ``attempt``, whether (and when) to send another. Pure.

    ``attempts`` counts the attempts made so far that count against ``maxAttempts`` (this
    one included); ``transparent`` the transparent resends so far; ``backoff_retry`` the
    exponent's step for the next backoff (1 after the first failure, reset to 1 after a
    pushback, as A6 says).
    """
    code = attempt.code
    if code is _OK:
        return Stop("the call succeeded")
    if attempt.committed:
        return Stop(
            "committed: response messages had arrived, the requests outgrew the buffer, "
            "or the request iterator raised"
        )
    if (
        attempt.can_fail_over
        and transparent < MAX_TRANSPARENT_RETRIES
        and never_reached_server(code, attempt.details)
        and (deadline is None or now < deadline)
    ):
        return Retry(0.0, transparent=True)
    if code not in policy.retryable_status_codes and not attempt.timed_out:
        return Stop(f"{code.name} is not a retryable status code")
    pushback = server_pushback(attempt.trailing_metadata)
    if pushback is NO_RETRY:
        return Stop("the server's pushback said not to retry")
    if attempts >= policy.max_attempts:
        return Stop(f"maxAttempts ({policy.max_attempts}) reached")
    if isinstance(pushback, float):
        if pushback > MAX_SERVER_DELAY:
            return Stop(
                f"the server asked for a retry in {pushback:g} s, more than {MAX_SERVER_DELAY:g} s"
            )
        delay, pushed = pushback, True
    else:
        delay, pushed = backoff(policy, backoff_retry, rng), False
    if deadline is not None and now + delay >= deadline:
        return Stop(f"the deadline would pass before a retry in {delay * 1000:.0f} ms")
    return Retry(delay, pushback=pushed)


# ---------------------------------------------------------------------------- budgets


class Throttle:
    """``retryThrottling``: A6's token bucket, shared by every call of a channel.

    ``token_count`` starts at ``max_tokens``. A failed attempt whose code is retryable (or
    non-fatal, or that the server pushed back) takes one token; a successful attempt adds
    ``token_ratio``. Retries and hedges are sent only while more than half the tokens are
    left. A few arithmetic operations under a lock that is never held across I/O.
    """

    __slots__ = ("_lock", "max_tokens", "threshold", "token_count", "token_ratio")

    def __init__(self, max_tokens: float, token_ratio: float) -> None:
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self.threshold = self.max_tokens / 2
        self.token_count = self.max_tokens
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self.token_count = min(self.token_count + self.token_ratio, self.max_tokens)

    def failed(self) -> None:
        with self._lock:
            self.token_count = max(self.token_count - 1.0, 0.0)

    def permits(self) -> bool:
        return self.token_count > self.threshold


class RatioBudget:
    """A retry budget as a share of calls (Finagle's and Linkerd's), over a ``ttl`` window.

    A retry (or hedge) may be sent while the retries of the last ``ttl`` seconds number
    fewer than ``min_per_second * ttl + ratio * calls of the last ttl seconds``. Calls and
    retries are counted in ten buckets of ``ttl / 10`` seconds, so memory is constant.
    """

    BUCKETS = 10

    __slots__ = (
        "_calls",
        "_lock",
        "_retries",
        "_slot",
        "_span",
        "clock",
        "min_per_second",
        "ratio",
        "ttl",
    )

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.ttl = ttl
        self.clock = clock
        self._span = ttl / self.BUCKETS
        self._calls = [0] * self.BUCKETS
        self._retries = [0] * self.BUCKETS
        self._slot = math.floor(clock() / self._span)
        self._lock = threading.Lock()

    def _advance(self, now: float) -> int:
        """Clear the buckets that fell out of the window; the current bucket's index."""
        slot = math.floor(now / self._span)
        gone = slot - self._slot
        if gone > 0:
            for step in range(1, min(gone, self.BUCKETS) + 1):
                index = (self._slot + step) % self.BUCKETS
                self._calls[index] = 0
                self._retries[index] = 0
            self._slot = slot
        return self._slot % self.BUCKETS

    def called(self) -> None:
        """Count one call (its first attempt)."""
        with self._lock:
            self._calls[self._advance(self.clock())] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (nothing taken) when it is spent."""
        with self._lock:
            index = self._advance(self.clock())
            allowed = self.min_per_second * self.ttl + self.ratio * sum(self._calls)
            if sum(self._retries) + 1 > allowed:
                return False
            self._retries[index] += 1
            return True


class Budgets:
    """The channel's retry budgets (either may be absent): what retries and hedges spend."""

    __slots__ = ("budget", "throttle")

    def __init__(self, throttle: Throttle | None = None, budget: RatioBudget | None = None) -> None:
        self.throttle = throttle
        self.budget = budget

    def __bool__(self) -> bool:
        return self.throttle is not None or self.budget is not None

    def called(self) -> None:
        """A call started (its first attempt)."""
        if self.budget is not None:
            self.budget.called()

    def record(self, code: grpc.StatusCode, counts_as_failure: bool) -> None:
        """An attempt ended with ``code``; ``counts_as_failure`` per A6's throttling rule."""
        throttle = self.throttle
        if throttle is None:
            return
        if code is _OK:
            throttle.succeeded()
        elif counts_as_failure:
            throttle.failed()

    def refusal(self) -> str | None:
        """Spend one retry; None if allowed, else why it is refused."""
        throttle = self.throttle
        if throttle is not None and not throttle.permits():
            return (
                f"retries throttled: {throttle.token_count:g} of {throttle.max_tokens:g} "
                f"tokens left (retryThrottling sends none at or below {throttle.threshold:g})"
            )
        budget = self.budget
        if budget is not None and not budget.try_spend():
            return (
                f"retry budget spent: at most {budget.ratio:g} retries per call plus "
                f"{budget.min_per_second:g}/s over {budget.ttl:g} s (retryBudget)"
            )
        return None


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Something the retry machinery did for a call: what tracing shows as a span event.

    ``kind``: ``"retry"`` (a retry is scheduled after ``delay``), ``"transparent"`` (a
    resend at once, outside maxAttempts), ``"hedge"`` (a hedge sent), ``"refused"`` (a
    budget refused a retry or hedge; ``reason`` says which), ``"stopped"`` (no more
    attempts; ``reason`` says why).
    """

    kind: str
    attempt: int
    code: grpc.StatusCode | None = None
    address: str | None = None
    delay: float = 0.0
    reason: str = ""
    method: str = ""


EventSink = Callable[[RetryEvent], None]


# ------------------------------------------------------------------------- the loop


@dataclass(slots=True)
class _Tried:
    address: str | None
    code: grpc.StatusCode


def annotated_details(details: str | None, tried: Sequence[_Tried], reason: str) -> str:
    """The final error's details: the last attempt's, then what was tried and why it stopped.

    >>> tried = [_Tried("127.0.0.1:1", grpc.StatusCode.UNAVAILABLE)] * 2
    >>> annotated_details("boom", tried, "maxAttempts (2) reached")  # doctest: +ELLIPSIS
    'boom [resilientrpc: 2 attempts: 127.0.0.1:1 UNAVAILABLE, ...; maxAttempts (2) reached]'
    """
    parts = ", ".join(f"{t.address} {t.code.name}" if t.address else t.code.name for t in tried)
    count = len(tried)
    noun = "attempt" if count == 1 else "attempts"
    return f"{details or ''} [resilientrpc: {count} {noun}: {parts}; {reason}]".lstrip()


class RetryRun:
    """One call's retry loop after its first failure: tenacity's loop, stepped by a driver.

    The driver feeds each finished :class:`Attempt` to :meth:`step` (or :meth:`astep` on the
    asyncio twin), which runs tenacity's ``iter``: ``retry`` decides with :func:`plan`,
    ``wait`` gives its delay, ``stop`` ends the loop on a stop verdict or a budget
    refusal, ``before_sleep`` reports the retry. :meth:`step` returns the delay before the
    next attempt, or None when the call is over (:attr:`final` is then the attempt whose
    result the caller gets, :attr:`reason` why it ended).

    The first attempt is the driver's own (made before any of this exists), fed in as the
    first outcome: a call that succeeds first time never builds a ``Retrying``.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        budgets: Budgets,
        *,
        deadline: float | None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        events: EventSink | None = None,
        asynchronous: bool = False,
        method: str = "",
    ) -> None:
        self.policy = policy
        self.method = method
        self.budgets = budgets
        self.deadline = deadline
        self.clock = clock
        self.rng = rng
        self.events = events
        self.attempts = 0  # counted against maxAttempts
        self.transparent = 0
        self.tried: list[_Tried] = []
        self._unreachable: set[str] = set()
        self.final: Attempt | None = None
        self.reason = ""
        self._backoff_retry = 1
        self._verdict: Retry | Stop = Stop("not started")
        strategies: dict[str, Any] = {
            "retry": self._retry,
            "wait": self._wait,
            "stop": self._stop,
            "before_sleep": self._before_sleep,
            "retry_error_callback": self._give_up,
        }
        retrying_type = tenacity.AsyncRetrying if asynchronous else tenacity.Retrying
        self._retrying = retrying_type(**strategies)
        self._state = tenacity.RetryCallState(self._retrying, None, (), {})

    # tenacity strategies -------------------------------------------------------------
    def _retry(self, state: tenacity.RetryCallState) -> bool:
        attempt: Attempt = state.outcome.result()  # type: ignore[union-attr]
        verdict = plan(
            self.policy,
            attempt,
            attempts=self.attempts,
            transparent=self.transparent,
            backoff_retry=self._backoff_retry,
            now=self.clock(),
            deadline=self.deadline,
            rng=self.rng,
        )
        if isinstance(verdict, Retry) and not verdict.transparent:
            refused = self.budgets.refusal()
            if refused is not None:
                self._emit(
                    RetryEvent(
                        "refused", self.attempts, attempt.code, attempt.address, reason=refused
                    )
                )
                verdict = Stop(refused)
        self._verdict = verdict
        # False for a success: tenacity hands the result back, and the call is over.
        return attempt.code is not _OK

    def _wait(self, state: tenacity.RetryCallState) -> float:
        verdict = self._verdict
        return verdict.delay if isinstance(verdict, Retry) else 0.0

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return isinstance(self._verdict, Stop)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        verdict = self._verdict
        assert isinstance(verdict, Retry)
        last = self.tried[-1]
        kind = "transparent" if verdict.transparent else "retry"
        self._emit(RetryEvent(kind, self.attempts, last.code, last.address, delay=verdict.delay))

    def _give_up(self, state: tenacity.RetryCallState) -> Attempt:
        attempt: Attempt = state.outcome.result()  # type: ignore[union-attr]
        verdict = self._verdict
        self.reason = verdict.reason if isinstance(verdict, Stop) else ""
        self._emit(
            RetryEvent("stopped", self.attempts, attempt.code, attempt.address, reason=self.reason)
        )
        return attempt

    def _emit(self, event: RetryEvent) -> None:
        if self.events is not None:
            try:
                self.events(dataclasses.replace(event, method=self.method))
            except Exception:
                _log.exception("retry event listener %r raised", self.events)

    # the driver's side ----------------------------------------------------------------
    def _record(self, attempt: Attempt) -> None:
        transparent = attempt.can_fail_over and never_reached_server(attempt.code, attempt.details)
        if transparent and attempt.address is not None:
            self._unreachable.add(attempt.address)
        if not (transparent and self.transparent < MAX_TRANSPARENT_RETRIES):
            self.attempts += 1
        self.tried.append(_Tried(attempt.address, attempt.code))
        failure = attempt.code in self.policy.retryable_status_codes or attempt.timed_out
        if not transparent:
            self.budgets.record(
                attempt.code, failure or server_pushback(attempt.trailing_metadata) is NO_RETRY
            )

    def _after(self, action: object) -> float | None:
        if isinstance(action, tenacity.DoSleep):
            verdict = self._verdict
            assert isinstance(verdict, Retry)
            if verdict.transparent:
                self.transparent += 1
            elif verdict.pushback:
                self._backoff_retry = 1
            else:
                self._backoff_retry += 1
            self._state.prepare_for_next_attempt()
            return float(action)
        self.final = action if isinstance(action, Attempt) else self._state.outcome.result()  # type: ignore[union-attr]
        return None

    def _ready(self) -> None:
        """Give this thread tenacity's statistics: they are thread-local, and a future's
        attempts end on whichever thread grpc runs their callbacks."""
        statistics = self._retrying.statistics
        if "idle_for" not in statistics:
            self._retrying.begin()

    def step(self, attempt: Attempt) -> float | None:
        """Feed a finished attempt: the delay before the next one, or None when over."""
        self._ready()
        self._record(attempt)
        self._state.set_result(attempt)
        return self._after(self._retrying.iter(self._state))

    async def astep(self, attempt: Attempt) -> float | None:
        """:meth:`step` for the asyncio twin (``AsyncRetrying``'s ``iter``)."""
        self._ready()
        self._record(attempt)
        self._state.set_result(attempt)
        return self._after(await self._retrying.iter(self._state))  # type: ignore[misc]

    @property
    def previous(self) -> int:
        """Attempts sent before the next one (the value of the previous-attempts header)."""
        return len(self.tried)

    @property
    def tried_addresses(self) -> Tried:
        """Where the attempts so far went (and which of those never reached a server)."""
        return Tried((t.address for t in self.tried if t.address is not None), self._unreachable)

    def annotate(self, details: str | None) -> str:
        return annotated_details(details, self.tried, self.reason)


def attempt_timeout(
    deadline: float | None, now: float, per_attempt: float | None
) -> tuple[float | None, bool]:
    """An attempt's timeout: what is left of the call's (``deadline``, None for none),
    capped by ``perAttemptRecvTimeout``; and whether that cap is what binds it (then a
    DEADLINE_EXCEEDED is the attempt's own, and retryable while the call has time).

    >>> attempt_timeout(11.5, 10.0, 2.0), attempt_timeout(13.0, 10.0, 2.0)
    ((1.5, False), (2.0, True))
    """
    left = None if deadline is None else max(deadline - now, 0.0)
    timeout = capped(left, per_attempt)
    binding = (
        per_attempt is not None and timeout == per_attempt and (left is None or per_attempt < left)
    )
    return timeout, binding


def capped(timeout: float | None, cap: float | None) -> float | None:
    """``timeout`` limited to ``cap`` (either may be None: no limit)."""
    if cap is None:
        return timeout
    if timeout is None or cap < timeout:
        return cap
    return timeout


# ---------------------------------------------------------------------------- hedging


class LatencyWindow:
    """The method's recent latencies, for a hedging delay taken from a live percentile.

    Keeps the last :attr:`SIZE` first-attempt latencies; :meth:`percentile` is None until
    :attr:`MIN_SAMPLES` have been seen (the policy's fixed ``hedgingDelay`` serves until
    then). Appends are lock-free (a deque); the percentile sorts a copy, at most once per
    :attr:`REFRESH` samples.
    """

    SIZE = 1000
    MIN_SAMPLES = 20
    REFRESH = 50

    __slots__ = ("_cached", "_samples", "_since", "quantile")

    def __init__(self, percentile: float) -> None:
        self.quantile = percentile / 100.0
        self._samples: deque[float] = deque(maxlen=self.SIZE)
        self._cached: float | None = None
        self._since = 0

    def add(self, latency: float) -> None:
        self._samples.append(latency)
        self._since += 1

    def percentile(self) -> float | None:
        if self._cached is None or self._since >= self.REFRESH:
            samples = sorted(self._samples)
            if len(samples) < self.MIN_SAMPLES:
                return None
            index = min(int(self.quantile * len(samples)), len(samples) - 1)
            self._cached = samples[index]
            self._since = 0
        return self._cached


class HedgeAction(enum.Enum):
    FINAL = "final"  # this answer ends the call (a success, or a fatal status): cancel the others
    SEND_NOW = "send now"  # a non-fatal failure: the next hedge goes at once
    WAIT = "wait"  # nothing to do but wait for the others / the next timer
    LOSE = "lose"  # nothing more can come: the call ends with this failure


@dataclass(slots=True)
class HedgeRun:
    """One hedged call's schedule (A6): the decisions, no I/O.

    The driver sends the first attempt at once, then asks :meth:`next_delay` how long to
    wait before the next hedge; each answer goes to :meth:`on_answer`, which says whether
    it ends the call. Hedges are sent only while :meth:`may_send` (maxAttempts, budgets,
    no "do not retry" pushback).
    """

    policy: HedgingPolicy
    budgets: Budgets
    window: LatencyWindow | None = None
    sent: int = 0
    outstanding: int = 0
    stopped: str = ""
    tried: list[_Tried] = field(default_factory=list)
    pushback_delay: float | None = None

    def delay(self) -> float:
        """The hedging delay now: the live percentile when configured and known."""
        if self.window is not None:
            live = self.window.percentile()
            if live is not None:
                return live
        return self.policy.hedging_delay

    def next_delay(self) -> float | None:
        """Seconds until the next hedge goes, or None when no more will."""
        if self.stopped or self.sent >= self.policy.max_attempts:
            return None
        if self.pushback_delay is not None:  # A6: the next one after the pushback's delay
            delay, self.pushback_delay = self.pushback_delay, None
            return delay
        return self.delay()

    def may_send(self) -> str | None:
        """None if one more hedge may go now (spending the budget), else why not."""
        if self.stopped:
            return self.stopped
        if self.sent >= self.policy.max_attempts:
            return f"maxAttempts ({self.policy.max_attempts}) reached"
        if self.sent == 0:
            return None
        refused = self.budgets.refusal()
        if refused is not None:
            self.stopped = refused
        return refused

    def on_send(self) -> None:
        self.sent += 1
        self.outstanding += 1

    def on_answer(self, attempt: Attempt) -> HedgeAction:
        """An attempt ended: does its answer end the call?"""
        self.outstanding -= 1
        self.tried.append(_Tried(attempt.address, attempt.code))
        code = attempt.code
        non_fatal = code in self.policy.non_fatal_status_codes
        self.budgets.record(code, non_fatal)
        if code is _OK:
            return HedgeAction.FINAL
        if not non_fatal:
            return HedgeAction.FINAL  # a fatal status ends the call, as A6 says
        pushback = server_pushback(attempt.trailing_metadata)
        if pushback is NO_RETRY:
            self.stopped = "the server's pushback said not to hedge again"
        elif isinstance(pushback, float) and pushback > MAX_SERVER_DELAY:
            self.stopped = f"the server asked for {pushback:g} s, more than {MAX_SERVER_DELAY:g} s"
        elif isinstance(pushback, float):
            self.pushback_delay = pushback
        if self.may_send_more():
            return HedgeAction.SEND_NOW if self.pushback_delay is None else HedgeAction.WAIT
        return HedgeAction.LOSE if self.outstanding == 0 else HedgeAction.WAIT

    def may_send_more(self) -> bool:
        return not self.stopped and self.sent < self.policy.max_attempts

    def reason(self) -> str:
        if self.stopped:
            return self.stopped
        return f"all {self.sent} hedged attempts failed"

    def annotate(self, details: str | None) -> str:
        return annotated_details(details, self.tried, self.reason())
