"""Passive outlier detection (gRFC A50, with extensions): who is ejected, when, and why.

Two halves. The *decisions* are pure functions of hand-built values (no I/O, no clock,
randomness passed in), so they are tested table by table and under mutation:

* :func:`plan_sweep` runs, at each interval, A50's success-rate and failure-percentage
  algorithms and the latency ejection extension over every member's window, with
  A50's limit checked before each ejection (:class:`Budget`);
* :func:`ejection_time` is A50's ``min(base * multiplier, max(base, max))``;
* :func:`trial_verdict` decides a half-open endpoint's fate from its trial calls.

The :class:`OutlierDetector` applies them on the supervisor's event loop: a sweep every
``interval`` (each endpoint's window swapped with :meth:`Endpoint.take_window`),
consecutive failures reported by the data path through the endpoint's observer, and
half-open trials. Every change goes through the balancer (``eject`` / ``half_open`` /
``readmit``), with a reason that names the algorithm and its numbers.

Limits. Never more than ``max_ejection_percent`` of the members are out (ejected or on
trial), except that one ejection is always allowed (A50's "at least one address
regardless of the value"): an ejection is refused when one is already out and it would
push the share above the percent. (A50's literal check, "stop if the share *already*
ejected is greater than the percent", would let a third of four out at 50 %.) And an
ejection that would leave no available member is skipped and logged.

Half-open. When an ejection's time is over the endpoint takes calls again on trial: a
failed trial ejects it again at once, for longer (the multiplier has grown); after
``half_open_trials`` successes, none of them slow by the latency rule when latency got
it ejected, it is readmitted. An endpoint that stays half-open for a whole interval with
no failed trial (few or no calls came its way) is readmitted at the next sweep, judged
on the trials it had, so it never stays half-open for good. With ``half_open_trials``
0 an endpoint whose ejection is over is readmitted at once, as in A50.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc

from resilientrpc.balancer import Balancer
from resilientrpc.config import (
    FailurePercentageEjection,
    LatencyEjection,
    OutlierDetection,
    SuccessRateEjection,
)
from resilientrpc.endpoint import Endpoint, Outcome

__all__ = [
    "FAILURE_PERCENTAGE",
    "LATENCY",
    "MIN_INTERVAL",
    "SUCCESS_RATE",
    "Budget",
    "Ejection",
    "Member",
    "OutlierDetector",
    "Plan",
    "Verdict",
    "Window",
    "ejection_time",
    "enforced",
    "failure_percentage_outliers",
    "is_slow",
    "latency_outliers",
    "plan_sweep",
    "success_rate_outliers",
    "trial_verdict",
]

_log = logging.getLogger(__name__)

#: The shortest sweep period, seconds (an interval of 0 would spin the loop).
MIN_INTERVAL = 0.01

#: An algorithm's verdict on each member: None, or why it is an outlier.
Verdicts = list[str | None]


class Window(NamedTuple):
    """One endpoint's outcomes over one interval (A50's inactive bucket).

    >>> Window(successes=9, failures=1, latency=0.018).success_rate
    0.9
    """

    successes: int
    failures: int
    latency: float
    """Sum of the successes' latencies, seconds."""

    @property
    def volume(self) -> int:
        return self.successes + self.failures

    @property
    def success_rate(self) -> float:
        return self.successes / self.volume if self.volume else 1.0

    @property
    def mean_latency(self) -> float:
        return self.latency / self.successes if self.successes else 0.0


class Member(NamedTuple):
    """What a sweep knows of one member: its window and where it stands."""

    address: str
    window: Window
    out: bool = False
    """Ejected or on trial: counts against the limit, and is not judged again."""
    available: bool = True


@dataclass(slots=True)
class Budget:
    """How many more members may go out: A50's percent limit and "never the last".

    >>> budget = Budget(members=4, out=0, available=4, max_percent=10)
    >>> budget.full(), budget.last(available=True)
    (False, False)
    >>> budget.take(available=True); budget.full()
    True
    """

    members: int
    out: int
    available: int
    max_percent: int

    def full(self) -> bool:
        """Whether one more ejection would pass the percent (the first one never does)."""
        return self.out > 0 and (self.out + 1) * 100 > self.max_percent * self.members

    def last(self, *, available: bool) -> bool:
        """Whether ejecting a member (``available`` or not) would leave none available."""
        return available and self.available <= 1

    def take(self, *, available: bool) -> None:
        self.out += 1
        if available:
            self.available -= 1

    def describe(self) -> str:
        return f"{self.out} of {self.members} already out (max {self.max_percent} %)"


class Ejection(NamedTuple):
    """One ejection a sweep decided: whom, why, and by which algorithm."""

    address: str
    reason: str
    algorithm: str


#: The sweep algorithms' names, in the order a sweep runs them.
SUCCESS_RATE = "success_rate"
FAILURE_PERCENTAGE = "failure_percentage"
LATENCY = "latency"


@dataclass(frozen=True, slots=True)
class Plan:
    """A sweep's result: the ejections, and the (address, reason) refused, with why."""

    ejections: list[Ejection] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def ejection_time(base: float, maximum: float, multiplier: int) -> float:
    """A50: ``min(base * multiplier, max(base, maximum))`` seconds.

    >>> ejection_time(30.0, 300.0, 2), ejection_time(30.0, 300.0, 20), ejection_time(30.0, 10.0, 3)
    (60.0, 300.0, 30.0)
    """
    return min(base * multiplier, max(base, maximum))


def enforced(percentage: int, rng: random.Random) -> bool:
    """A50's enforcement roll: a random integer in [0, 100) below ``percentage``."""
    return rng.randrange(100) < percentage


def success_rate_outliers(windows: Sequence[Window], config: SuccessRateEjection) -> Verdicts:
    """A50's success-rate algorithm: below ``mean - stdev * stdev_factor / 1000``.

    Only members with ``request_volume`` calls count, and none is judged unless at least
    ``minimum_hosts`` have it. The standard deviation is the population one (Envoy's).
    """
    volume = config.request_volume
    rates = [w.success_rate for w in windows if w.volume >= volume]
    if not rates or len(rates) < config.minimum_hosts:
        return [None] * len(windows)
    mean = statistics.fmean(rates)
    stdev = statistics.pstdev(rates)
    threshold = mean - stdev * (config.stdev_factor / 1000)
    return [
        f"success rate {w.success_rate:.2f} below threshold {threshold:.2f} "
        f"(mean {mean:.2f}, stdev {stdev:.2f}, {w.volume} calls)"
        if w.volume >= volume and w.success_rate < threshold
        else None
        for w in windows
    ]


def failure_percentage_outliers(
    windows: Sequence[Window], config: FailurePercentageEjection
) -> Verdicts:
    """A50's failure-percentage algorithm: more than ``threshold`` percent failed.

    Judged only with at least ``minimum_hosts`` members, and only for members with
    ``request_volume`` calls.
    """
    if len(windows) < config.minimum_hosts:
        return [None] * len(windows)
    verdicts: Verdicts = []
    for w in windows:
        percent = 100.0 * w.failures / w.volume if w.volume else 0.0
        if w.volume >= config.request_volume and percent > config.threshold:
            verdicts.append(
                f"failure percentage {percent:.0f} % above threshold {config.threshold} % "
                f"({w.failures} of {w.volume} calls)"
            )
        else:
            verdicts.append(None)
    return verdicts


def is_slow(mean: float, peers_median: float, config: LatencyEjection) -> bool:
    """The latency rule: above ``factor`` x the peers' median, and by ``minimum_difference``."""
    return mean > config.factor * peers_median and mean - peers_median >= config.minimum_difference


def slow_reason(mean: float, peers_median: float, config: LatencyEjection) -> str:
    return (
        f"mean latency {mean * 1000:.1f} ms > {config.factor:g} x peers' median "
        f"{peers_median * 1000:.1f} ms"
    )


def latency_means(windows: Sequence[Window], config: LatencyEjection) -> list[float | None]:
    """Each member's mean success latency, or None below ``request_volume`` successes."""
    return [w.mean_latency if w.successes >= config.request_volume else None for w in windows]


def latency_outliers(windows: Sequence[Window], config: LatencyEjection) -> Verdicts:
    """Latency ejection: a mean far above the median of the *other* members' means.

    Members with fewer than ``request_volume`` successes are neither judged nor peers;
    none is judged unless at least ``minimum_hosts`` have the volume.
    """
    means = latency_means(windows, config)
    measured = [m for m in means if m is not None]
    if len(measured) < max(config.minimum_hosts, 2):
        return [None] * len(windows)
    verdicts: Verdicts = []
    for index, mean in enumerate(means):
        if mean is None:
            verdicts.append(None)
            continue
        peers = [m for i, m in enumerate(means) if m is not None and i != index]
        median = statistics.median(peers)
        verdicts.append(
            slow_reason(mean, median, config) if is_slow(mean, median, config) else None
        )
    return verdicts


def plan_sweep(members: Sequence[Member], config: OutlierDetection, rng: random.Random) -> Plan:
    """Who one sweep ejects: each configured algorithm in A50's order, then latency.

    Per algorithm and member, as A50: skip members with no verdict, stop ejecting once
    the limit is reached (the outliers left are reported as skipped), roll the
    enforcement percentage, then eject, unless that would leave no member available
    (skipped). Only outliers within the limit are rolled for. A member already out, or
    ejected earlier in this sweep, is not judged again.
    """
    budget = Budget(
        members=len(members),
        out=sum(1 for m in members if m.out),
        available=sum(1 for m in members if m.available),
        max_percent=config.max_ejection_percent,
    )
    plan = Plan()
    windows = [m.window for m in members]
    out = {m.address for m in members if m.out}
    algorithms: list[tuple[str, Verdicts, int]] = []
    if config.success_rate_ejection is not None:
        rule = config.success_rate_ejection
        verdicts = success_rate_outliers(windows, rule)
        algorithms.append((SUCCESS_RATE, verdicts, rule.enforcement_percentage))
    if config.failure_percentage_ejection is not None:
        rule_f = config.failure_percentage_ejection
        verdicts = failure_percentage_outliers(windows, rule_f)
        algorithms.append((FAILURE_PERCENTAGE, verdicts, rule_f.enforcement_percentage))
    if config.latency_ejection is not None:
        rule_l = config.latency_ejection
        verdicts = latency_outliers(windows, rule_l)
        algorithms.append((LATENCY, verdicts, rule_l.enforcement_percentage))
    for algorithm, verdicts, enforcement in algorithms:
        for index, member in enumerate(members):
            reason = verdicts[index]
            if reason is None or member.address in out:
                continue
            if budget.full():  # A50 stops here; the outliers left are logged as skipped
                plan.skipped.append((member.address, f"{reason}; {budget.describe()}"))
                continue
            if not enforced(enforcement, rng):
                continue
            if budget.last(available=member.available):
                plan.skipped.append((member.address, f"{reason}; the last available endpoint"))
                continue
            budget.take(available=member.available)
            out.add(member.address)
            plan.ejections.append(Ejection(member.address, reason, algorithm))
    return plan


class Verdict(NamedTuple):
    """What a half-open endpoint's trials came to: readmit it or eject it again."""

    readmit: bool
    reason: str


def trial_verdict(
    *,
    successes: int,
    latency: float,
    failed: grpc.StatusCode | None,
    trials: int,
    expired: bool,
    latency_rule: LatencyEjection | None = None,
    peers_median: float | None = None,
) -> Verdict | None:
    """Decide a half-open endpoint from its trials so far; None while undecided.

    A failed trial ejects again at once. ``trials`` successes (or, when ``expired``, a
    whole interval with none failed) readmit it, unless ``latency_rule`` is given (the
    ejection was for latency) and their mean latency is slow against ``peers_median``
    by that rule.
    """
    if failed is not None:
        return Verdict(False, f"trial call failed ({failed.name}) while half-open")
    if successes < trials and not expired:
        return None
    if latency_rule is not None and peers_median is not None and successes > 0:
        mean = latency / successes
        if is_slow(mean, peers_median, latency_rule):
            return Verdict(
                False, "trial calls slow: " + slow_reason(mean, peers_median, latency_rule)
            )
    if successes >= trials:
        return Verdict(True, f"{successes} trial calls succeeded")
    return Verdict(True, f"half-open for an interval with no failed trial ({successes} calls)")


# ------------------------------------------------------------------------ the detector


@dataclass(slots=True)
class _Track:
    """The detector's record of one endpoint (A50's map entry, plus trials)."""

    multiplier: int = 0
    #: When the current ejection ends (loop time); None when not ejected.
    ejected_until: float | None = None
    #: When half-open began (loop time); None when not on trial.
    trial_since: float | None = None
    #: Whether the current ejection was for latency (its trials are timed too).
    for_latency: bool = False
    successes: int = 0
    latency: float = 0.0


class OutlierDetector:
    """Runs outlier detection for one balancer on the supervisor's event loop.

    Construct it before any endpoint is added (it installs the balancer's outcome
    observer and streak limit), then run :meth:`start`'s coroutine on the loop and call
    :meth:`close` when the channel closes. ``clock`` must be the loop's (asyncio's
    ``loop.time`` is ``time.monotonic``).
    """

    def __init__(
        self,
        balancer: Balancer,
        config: OutlierDetection,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._balancer = balancer
        self._config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._tracks: dict[Endpoint, _Track] = {}
        #: Each member's last mean latency (seconds) over an interval with the volume,
        #: for judging latency trials.
        self._means: dict[str, float] = {}
        #: The loop outcomes are handed to; None before start and after close.
        self._loop: asyncio.AbstractEventLoop | None = None
        consecutive = config.consecutive_failures
        balancer.streak_limit = consecutive.count if consecutive is not None else 0
        balancer.observer = self._observe

    def start(self, loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, None]:
        """Accept outcomes on ``loop`` from now on; returns the sweep task's coroutine."""
        self._loop = loop
        return self._sweep_forever()

    def close(self) -> None:
        """Stop taking outcomes (the loop may close soon after)."""
        self._loop = None

    async def _sweep_forever(self) -> None:
        interval = max(self._config.interval, MIN_INTERVAL)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:
                _log.exception("outlier detection sweep failed; carrying on")

    def _track(self, endpoint: Endpoint) -> _Track:
        track = self._tracks.get(endpoint)
        if track is None:
            track = self._tracks[endpoint] = _Track()
        return track

    # ------------------------------------------------------------------ the timer

    def sweep(self) -> None:
        """One A50 timer tick: swap windows, eject outliers, move ejections on."""
        now = self._clock()
        endpoints = self._balancer.endpoints
        for gone in set(self._tracks) - set(endpoints):
            del self._tracks[gone]
        members = [
            Member(e.address, Window(*e.take_window()), e.ejected or e.half_open, e.available)
            for e in endpoints
        ]
        config = self._config
        if config.latency_ejection is not None:
            means = latency_means([m.window for m in members], config.latency_ejection)
            known = self._means  # a member with too few calls this time keeps its last
            for index, member in enumerate(members):
                mean = means[index]
                if mean is not None:
                    known[member.address] = mean
            self._means = {m.address: known[m.address] for m in members if m.address in known}
        plan = plan_sweep(members, config, self._rng)
        by_address = {e.address: e for e in endpoints}
        for address, reason in plan.skipped:
            _log.info("not ejecting %s: %s", address, reason)
        for address, reason, algorithm in plan.ejections:
            self._eject(by_address[address], reason, now, for_latency=algorithm == LATENCY)
        for endpoint in endpoints:
            self._move_on(endpoint, self._track(endpoint), now)

    def _move_on(self, endpoint: Endpoint, track: _Track, now: float) -> None:
        """A50's step 5, and half-open endpoints that saw out an interval."""
        if track.ejected_until is not None:
            if now >= track.ejected_until:
                track.ejected_until = None
                # A stale streak would never equal the limit again (written without the
                # endpoint's lock: at worst one failure of the next streak is not counted).
                endpoint.consecutive_failures = 0
                trials = self._config.half_open_trials
                if trials == 0:  # no trials: straight back, as A50's un-ejection
                    self._balancer.readmit(endpoint, "ejection over")
                    return
                track.trial_since = now
                track.successes, track.latency = 0, 0.0
                self._balancer.half_open(endpoint, f"ejection over; {trials} trial calls decide")
        elif track.trial_since is not None:
            if now - track.trial_since >= self._config.interval:
                self._decide(endpoint, track, None, expired=True)
        elif track.multiplier > 0:
            track.multiplier -= 1

    # --------------------------------------------------------------- the data path

    def _observe(self, endpoint: Endpoint, outcome: Outcome, failed: bool) -> None:
        """The endpoints' observer (any thread): hand the outcome to the loop; never raises."""
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the loop closed meanwhile (the channel is closing).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._outcome, endpoint, outcome, failed)

    def _outcome(self, endpoint: Endpoint, outcome: Outcome, failed: bool) -> None:
        """One outcome the observer passed on, on the loop: a trial, or a streak's end."""
        if self._loop is None:
            return
        try:
            track = self._track(endpoint)
            if track.trial_since is not None:
                if not failed:
                    track.successes += 1
                    track.latency += outcome.latency
                self._decide(endpoint, track, outcome.code if failed else None)
            elif failed:
                self._streak_ended(endpoint, outcome.code)
        except Exception:
            _log.exception("outlier detection failed on an outcome of %s", endpoint.address)

    def _decide(
        self,
        endpoint: Endpoint,
        track: _Track,
        failed: grpc.StatusCode | None,
        *,
        expired: bool = False,
    ) -> None:
        """Apply :func:`trial_verdict` to a half-open endpoint's trials so far."""
        rule = self._config.latency_ejection if track.for_latency else None
        verdict = trial_verdict(
            successes=track.successes,
            latency=track.latency,
            failed=failed,
            trials=self._config.half_open_trials,
            expired=expired,
            latency_rule=rule,
            peers_median=self._peers_median(endpoint),
        )
        if verdict is None:
            return
        track.trial_since = None
        if verdict.readmit:
            self._balancer.readmit(endpoint, verdict.reason)
        elif self._budget().last(available=endpoint.available):
            _log.info(
                "not ejecting %s again: %s; the last available", endpoint.address, verdict.reason
            )
            self._balancer.readmit(endpoint, f"{verdict.reason}; kept: the last available")
        else:
            self._eject(endpoint, verdict.reason, self._clock(), for_latency=track.for_latency)

    def _peers_median(self, endpoint: Endpoint) -> float | None:
        """The median of the other members' last latency means (None: none known)."""
        peers = [mean for address, mean in self._means.items() if address != endpoint.address]
        return statistics.median(peers) if peers else None

    # ------------------------------------------------------------------ ejecting

    def _budget(self) -> Budget:
        """The limits as they stand now."""
        endpoints = self._balancer.endpoints
        return Budget(
            members=len(endpoints),
            out=sum(1 for e in endpoints if e.ejected or e.half_open),
            available=sum(1 for e in endpoints if e.available),
            max_percent=self._config.max_ejection_percent,
        )

    def _streak_ended(self, endpoint: Endpoint, code: grpc.StatusCode) -> None:
        """Consecutive failures: eject ``endpoint`` now if the rule and the limits allow it."""
        rule = self._config.consecutive_failures
        if rule is None or endpoint.ejected or not enforced(rule.enforcement_percentage, self._rng):
            return
        reason = f"{rule.count} consecutive failures ({code.name})"
        budget = self._budget()
        if budget.full():
            _log.info("not ejecting %s: %s; %s", endpoint.address, reason, budget.describe())
        elif budget.last(available=endpoint.available):
            _log.info("not ejecting %s: %s; the last available", endpoint.address, reason)
        else:
            self._eject(endpoint, reason, self._clock())

    def _eject(
        self, endpoint: Endpoint, reason: str, now: float, *, for_latency: bool = False
    ) -> None:
        """A50's ejection: the multiplier grows, the time follows it."""
        track = self._track(endpoint)
        config = self._config
        multiplier = track.multiplier + 1
        duration = ejection_time(config.base_ejection_time, config.max_ejection_time, multiplier)
        if not self._balancer.eject(endpoint, f"{reason}; out for {duration:.3g} s"):
            return
        track.multiplier = multiplier
        track.ejected_until = now + duration
        track.for_latency = for_latency
