"""One backend address: its live counters, what calls taught us about it, and its status.

The balancer is the only writer of an endpoint's *state* (connectivity, weight). The
data path touches only the counters, through :meth:`Endpoint.begin` when a pick hands
the endpoint an attempt and :meth:`Endpoint.record` when that attempt's ``done``
reports its :class:`Outcome`. Both hold the endpoint's own small lock for a few
arithmetic operations and never across I/O.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

from resilientrpc.events import EndpointEvent
from resilientrpc.load_report import LoadReport

__all__ = [
    "DEFAULT_DECAY",
    "FAILURE_CODES",
    "KEPT_EVENTS",
    "MIN_SAMPLE_WEIGHT",
    "UNSAMPLED_PENALTY",
    "Connectivity",
    "Endpoint",
    "EndpointStatus",
    "Outcome",
]

Connectivity = grpc.ChannelConnectivity

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED

#: Seconds over which a latency observation loses ~63 % of its weight (peak-EWMA).
DEFAULT_DECAY = 10.0
#: The least weight one latency sample gets in the estimate. The time-based weight alone
#: (exp(-elapsed / decay)) gives a sample almost nothing when calls arrive every
#: millisecond, so one noisy spike would stick for ~decay seconds; with this floor a run of
#: fast responses pulls a spike down within a few dozen calls, while at low call rates the
#: time constant still rules.
MIN_SAMPLE_WEIGHT = 0.1
_MAX_KEEP = 1.0 - MIN_SAMPLE_WEIGHT
#: Status codes that count against the endpoint that returned them: the server (or the
#: way to it) failed, as opposed to the caller cancelling or the application answering
#: "no" (NOT_FOUND, INVALID_ARGUMENT, ...), which says nothing about the backend's health.
#: Outlier detection's ``failureStatusCodes`` replaces this set for a channel.
FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
#: A failure ratio below this is taken as exactly zero (so the hot path can skip it).
_NEGLIGIBLE_FAILURE_RATIO = 1e-3
#: How many recent transitions each endpoint keeps for ``channel.endpoints()``.
KEPT_EVENTS = 8
#: Cost of an endpoint that has calls in flight but no latency sample yet (seconds);
#: large enough that such an endpoint is chosen only when nothing else is.
UNSAMPLED_PENALTY = 1.0e6


class Outcome(NamedTuple):
    """What one attempt on one endpoint came to, as reported through ``done``.

    (A named tuple rather than a frozen dataclass: one is built for every attempt.)

    >>> Outcome(grpc.StatusCode.OK, 0.0042)
    Outcome(code=<StatusCode.OK: (0, 'ok')>, latency=0.0042, load=None, error=None)
    """

    code: grpc.StatusCode
    latency: float
    load: LoadReport | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointStatus:
    """A snapshot of one endpoint, as :meth:`ResilientChannel.endpoints` returns it.

    ``reason`` says why the endpoint last moved in or out of traffic and ``since`` when
    (wall-clock seconds); ``events`` holds its last few transitions, oldest first.
    """

    address: str
    state: str
    available: bool
    healthy: bool | None
    ejected: bool
    outstanding: int
    latency_ms: float | None
    weight: float
    calls: int
    failures: int
    last_error: str | None
    half_open: bool = False
    failure_ratio: float = 0.0
    reason: str | None = None
    since: float | None = None
    events: tuple[EndpointEvent, ...] = ()


class Endpoint:
    """A backend address and everything the client learns about it."""

    __slots__ = (
        "_clock",
        "_decay",
        "_ewma",
        "_ewma_stamp",
        "_failure_stamp",
        "_lock",
        "_sampled",
        "address",
        "available_since",
        "calls",
        "connect_error",
        "consecutive_failures",
        "ejected",
        "events",
        "failure_codes",
        "failure_level",
        "failures",
        "half_open",
        "health_checked",
        "healthy",
        "last_error",
        "load",
        "load_since",
        "load_stamp",
        "observer",
        "outstanding",
        "reason",
        "since",
        "state",
        "static_weight",
        "streak_limit",
        "transport",
        "weight",
        "window_failures",
        "window_latency",
        "window_successes",
    )

    def __init__(
        self,
        address: str,
        *,
        static_weight: float | None = None,
        decay: float = DEFAULT_DECAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self._clock = clock
        self._decay = decay
        self._lock = threading.Lock()
        # Written by the balancer only.
        self.state: grpc.ChannelConnectivity = Connectivity.IDLE
        #: Whether the channel checks health: then only a SERVING report (healthy True)
        #: lets the endpoint take calls (gRFC A17), and None means "no report yet".
        self.health_checked = False
        #: The health verdict: True serving, False not (or dead), None no verdict.
        self.healthy: bool | None = None
        self.ejected = False
        #: Back from an ejection, on trial: available, and its outcomes go to ``observer``.
        self.half_open = False
        #: Why the endpoint last moved in or out of traffic, and when (wall clock).
        self.reason: str | None = None
        self.since: float | None = None
        #: Its last :data:`KEPT_EVENTS` transitions (appended by the balancer).
        self.events: deque[EndpointEvent] = deque(maxlen=KEPT_EVENTS)
        #: Channel-clock time it last became available (slow start); None while it is not.
        self.available_since: float | None = None
        #: Why the connection failed, as the balancer last heard (connectivity).
        self.connect_error: str | None = None
        #: The last failed call's status, as the data path last saw it (diagnostic).
        self.last_error: str | None = None
        self.static_weight = static_weight
        self.weight = static_weight if static_weight is not None else 1.0
        #: The driver's connection to this address (a grpc channel); opaque here.
        self.transport: Any = None
        #: Status codes that count as this endpoint failing (set before any call).
        self.failure_codes = FAILURE_CODES
        #: Told, outside the lock, of each outcome while ``half_open`` and of the failure
        #: that makes ``consecutive_failures`` reach ``streak_limit`` (outlier detection).
        self.observer: Callable[[Endpoint, Outcome, bool], None] | None = None
        self.streak_limit = 0
        # Written by the data path under ``_lock``.
        self.outstanding = 0
        self.calls = 0
        self.failures = 0
        #: Outcomes since outlier detection last swapped its window (it resets them).
        self.window_successes = 0
        self.window_failures = 0
        #: Sum of the latencies of the window's successes, seconds.
        self.window_latency = 0.0
        self.consecutive_failures = 0
        self._ewma = 0.0
        self._ewma_stamp = 0.0
        self._sampled = False
        #: The failure ratio as last updated (not decayed to now); exactly 0.0 when
        #: negligible, so the strategies' hot path tests it for free.
        self.failure_level = 0.0
        # From creation on, no failure is evidence too: a first call that fails right after
        # the endpoint appears weighs like one failure among many, not like all there is.
        self._failure_stamp = clock()
        self.load: LoadReport | None = None
        self.load_stamp = -math.inf
        self.load_since = math.inf

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.address!r}, state={self.state.name}, outstanding={self.outstanding})"
        )

    @property
    def available(self) -> bool:
        """Whether this endpoint may take new calls now."""
        if self.state is not Connectivity.READY or self.ejected:
            return False
        return self.healthy is True if self.health_checked else self.healthy is not False

    def begin(self) -> float:
        """Account for one attempt handed to this endpoint; returns its start time."""
        with self._lock:
            self.outstanding += 1
        return self._clock()

    def record(self, outcome: Outcome) -> None:
        """Learn from one finished attempt: the ``done`` of every pick lands here.

        A failure (a code in ``failure_codes``) never makes the endpoint look faster: its
        latency sample is at least the current estimate, so a backend that fails fast is
        not mistaken for a fast one. It also raises the endpoint's failure ratio, which
        the load-aware strategies weigh before load.
        """
        now = self._clock()
        rtt = outcome.latency
        code = outcome.code
        with self._lock:
            self.outstanding -= 1
            self.calls += 1
            if code is _CANCELLED:
                return  # the caller gave up: says nothing about the endpoint
            failed = code in self.failure_codes
            if code is not _OK:
                self.failures += 1
                if outcome.error is not None:
                    self.last_error = outcome.error
            if failed:
                self.window_failures += 1
                self.consecutive_failures += 1
                if self._sampled and rtt < self._ewma:
                    rtt = self._ewma
            else:
                self.window_successes += 1
                self.window_latency += rtt
                self.consecutive_failures = 0
            if not self._sampled:
                self._ewma = rtt
                self._sampled = True
            else:
                previous = self._ewma
                if rtt > previous:
                    self._ewma = rtt  # peak: a slow response counts in full at once
                else:
                    w = min(math.exp(-max(now - self._ewma_stamp, 0.0) / self._decay), _MAX_KEEP)
                    self._ewma = previous * w + rtt * (1.0 - w)
            self._ewma_stamp = now
            fail = self.failure_level
            if failed or fail:
                w = min(math.exp(-max(now - self._failure_stamp, 0.0) / self._decay), _MAX_KEEP)
                fail = fail * w + (1.0 - w if failed else 0.0)
                self.failure_level = fail if fail >= _NEGLIGIBLE_FAILURE_RATIO else 0.0
            self._failure_stamp = now  # successes count as recent evidence too
            load = outcome.load
            if load is not None:
                self.load = load
                self.load_stamp = now
                if self.load_since == math.inf:
                    self.load_since = now
            notify = self.half_open or (failed and self.consecutive_failures == self.streak_limit)
        if notify:
            observer = self.observer
            if observer is not None:
                observer(self, outcome, failed)

    def failure_ratio(self, now: float | None = None) -> float:
        """The recent share of failed attempts (0..1), decayed to ``now`` like the latency."""
        fail = self.failure_level
        if not fail:
            return 0.0
        if now is None:
            now = self._clock()
        return fail * math.exp(-max(now - self._failure_stamp, 0.0) / self._decay)

    def take_window(self) -> tuple[int, int, float]:
        """The window's (successes, failures, latency sum), and a fresh window (A50's swap)."""
        with self._lock:
            window = (self.window_successes, self.window_failures, self.window_latency)
            self.window_successes = self.window_failures = 0
            self.window_latency = 0.0
        return window

    def latency(self, now: float | None = None) -> float | None:
        """The peak-EWMA latency estimate in seconds, decayed to ``now``; None before any sample."""
        if not self._sampled:
            return None
        stamp = self._ewma_stamp
        if now is None:
            now = self._clock()
        return self._ewma * math.exp(-max(now - stamp, 0.0) / self._decay)

    def cost(self, now: float) -> float:
        """Peak-EWMA load: decayed latency x (outstanding + 1), with a penalty when unsampled."""
        outstanding = self.outstanding
        if not self._sampled:
            return UNSAMPLED_PENALTY + outstanding if outstanding else 0.0
        decay = math.exp(-max(now - self._ewma_stamp, 0.0) / self._decay)
        return self._ewma * decay * (outstanding + 1)

    def status(self) -> EndpointStatus:
        latency = self.latency()
        return EndpointStatus(
            address=self.address,
            state=self.state.name,
            available=self.available,
            healthy=self.healthy,
            ejected=self.ejected,
            outstanding=self.outstanding,
            latency_ms=None if latency is None else latency * 1000.0,
            weight=self.weight,
            calls=self.calls,
            failures=self.failures,
            last_error=self.connect_error or self.last_error,
            half_open=self.half_open,
            failure_ratio=self.failure_ratio(),
            reason=self.reason,
            since=self.since,
            events=tuple(self.events),
        )
