"""Outlier detection's decisions as pure functions, and its detector driven by hand.

No network: windows, members and outcomes are built in the test; the detector runs on a
hand-cranked "loop" (a settable time, callbacks run at once) over a real balancer.
"""

from __future__ import annotations

import asyncio
import doctest
import logging
import random
from collections.abc import Iterable
from typing import Any, cast

import grpc
import pytest

from resilientrpc import events
from resilientrpc import outlier as outlier_module
from resilientrpc.balancer import Balancer
from resilientrpc.config import (
    ConsecutiveFailures,
    FailurePercentageEjection,
    LatencyEjection,
    OutlierDetection,
    SuccessRateEjection,
)
from resilientrpc.endpoint import Outcome
from resilientrpc.outlier import (
    FAILURE_PERCENTAGE,
    LATENCY,
    SUCCESS_RATE,
    Budget,
    Ejection,
    Member,
    OutlierDetector,
    Verdict,
    Window,
    ejection_time,
    enforced,
    failure_percentage_outliers,
    is_slow,
    latency_outliers,
    plan_sweep,
    slow_reason,
    success_rate_outliers,
    trial_verdict,
)
from resilientrpc.strategies import RoundRobinStrategy
from tests.fakes import Clock

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
MS = 0.001


class Scripted(random.Random):
    """A random source whose ``randrange`` returns the given numbers, in order, once each."""

    def __init__(self, draws: Iterable[int]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        assert args == (100,), args
        return self.draws.pop(0)


def calls(successes: int, failures: int = 0, latency: float = 1 * MS) -> Window:
    """A window of ``successes`` calls of ``latency`` each and ``failures`` failures."""
    return Window(successes, failures, successes * latency)


# ------------------------------------------------------------------------ small values


@pytest.mark.parametrize(
    ("base", "maximum", "multiplier", "expected"),
    [
        (30.0, 300.0, 1, 30.0),
        (30.0, 300.0, 2, 60.0),
        (30.0, 300.0, 10, 300.0),
        (30.0, 300.0, 11, 300.0),
        (30.0, 10.0, 1, 30.0),  # a maximum below the base: the base rules
        (30.0, 10.0, 3, 30.0),
        (0.3, 5.0, 2, 0.6),
    ],
)
def test_ejection_time(base: float, maximum: float, multiplier: int, expected: float) -> None:
    assert ejection_time(base, maximum, multiplier) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("percentage", "draw", "expected"),
    [(30, 29, True), (30, 30, False), (0, 0, False), (100, 99, True), (1, 0, True)],
)
def test_enforced_rolls_below_the_percentage(percentage: int, draw: int, expected: bool) -> None:
    assert enforced(percentage, Scripted([draw])) is expected


def test_window_figures() -> None:
    window = Window(successes=3, failures=1, latency=0.006)
    assert (window.volume, window.success_rate, window.mean_latency) == (4, 0.75, 0.002)
    assert Window(0, 0, 0.0).success_rate == 1.0
    assert Window(0, 5, 0.0).mean_latency == 0.0


@pytest.mark.parametrize(
    ("members", "out", "max_percent", "full"),
    [
        (4, 0, 0, False),  # at least one, whatever the percent
        (4, 1, 0, True),
        (4, 1, 50, False),  # 2 of 4 is 50 %
        (4, 2, 50, True),  # 3 of 4 would pass 50 %
        (10, 0, 10, False),
        (10, 1, 10, True),
        (10, 1, 20, False),
        (10, 2, 20, True),
        (3, 2, 100, False),
    ],
)
def test_budget_percent(members: int, out: int, max_percent: int, full: bool) -> None:
    budget = Budget(members=members, out=out, available=members, max_percent=max_percent)
    assert budget.full() is full


@pytest.mark.parametrize(
    ("available_members", "candidate_available", "last"),
    [(1, True, True), (2, True, False), (0, False, False), (1, False, False)],
)
def test_budget_never_the_last(
    available_members: int, candidate_available: bool, last: bool
) -> None:
    budget = Budget(members=3, out=0, available=available_members, max_percent=100)
    assert budget.last(available=candidate_available) is last


def test_budget_take_and_describe() -> None:
    budget = Budget(members=5, out=1, available=4, max_percent=60)
    budget.take(available=True)
    budget.take(available=False)
    assert (budget.out, budget.available) == (3, 3)
    assert budget.describe() == "3 of 5 already out (max 60 %)"


# ------------------------------------------------------------------------ success rate

SR = SuccessRateEjection(minimum_hosts=5, request_volume=100)


def test_success_rate_ejects_below_mean_minus_stdev_factor() -> None:
    # Rates 1, 1, 1, 1, 0.5: mean 0.9, stdev 0.2, threshold 0.9 - 0.2 x 1.9 = 0.52.
    windows = [calls(100)] * 4 + [calls(50, 50)]
    assert success_rate_outliers(windows, SR) == [None] * 4 + [
        "success rate 0.50 below threshold 0.52 (mean 0.90, stdev 0.20, 100 calls)"
    ]


@pytest.mark.parametrize(
    ("stdev_factor", "ejected"),
    [(1900, True), (1999, True), (2001, False), (3000, False)],
)
def test_success_rate_stdev_factor_is_per_thousand(stdev_factor: int, ejected: bool) -> None:
    # Rates 1 x4 and 0.6: mean 0.92, stdev 0.16; 0.6 < 0.92 - 0.16 x f/1000 iff f < 2000.
    windows = [calls(100)] * 4 + [calls(60, 40)]
    rule = SuccessRateEjection(stdev_factor=stdev_factor, minimum_hosts=5, request_volume=100)
    assert (success_rate_outliers(windows, rule)[4] is not None) is ejected


def test_success_rate_at_the_threshold_is_not_ejected() -> None:
    # Rates 1, 1, 0.5, 0.5: mean 0.75, stdev 0.25; factor 1 puts the threshold at 0.5.
    windows = [calls(4), calls(4), calls(2, 2), calls(2, 2)]
    rule = SuccessRateEjection(stdev_factor=1000, minimum_hosts=4, request_volume=4)
    assert success_rate_outliers(windows, rule) == [None] * 4


def test_success_rate_needs_minimum_hosts_with_the_volume() -> None:
    quiet = [calls(100)] * 3 + [calls(99)] + [calls(50, 50)]  # 4 with the volume: below 5
    assert success_rate_outliers(quiet, SR) == [None] * 5
    # The 5th host with exactly the volume counts, and the statistics include it.
    enough = [calls(100)] * 3 + [calls(100)] + [calls(50, 50)]
    assert success_rate_outliers(enough, SR)[4] is not None


def test_success_rate_skips_hosts_below_the_volume() -> None:
    # Six hosts; the worst one has 99 calls: not judged, nor counted in the statistics.
    windows = [calls(100)] * 4 + [calls(90, 10), calls(0, 99)]
    verdicts = success_rate_outliers(windows, SR)
    assert verdicts[5] is None
    # Rates 1 x4 and 0.9: mean 0.98, stdev 0.04, threshold 0.904: 0.9 is an outlier.
    assert verdicts[4] == (
        "success rate 0.90 below threshold 0.90 (mean 0.98, stdev 0.04, 100 calls)"
    )
    assert verdicts[:4] == [None] * 4


def test_success_rate_with_no_hosts_needed_and_none_measured() -> None:
    rule = SuccessRateEjection(minimum_hosts=0, request_volume=10)
    assert success_rate_outliers([calls(1), calls(0, 2)], rule) == [None, None]


# ------------------------------------------------------------------ failure percentage

FP = FailurePercentageEjection(threshold=85, minimum_hosts=5, request_volume=50)


@pytest.mark.parametrize(
    ("successes", "failures", "verdict"),
    [
        (14, 86, "failure percentage 86 % above threshold 85 % (86 of 100 calls)"),
        (15, 85, None),  # at the threshold: A50 ejects only above it
        (0, 50, "failure percentage 100 % above threshold 85 % (50 of 50 calls)"),
        (0, 49, None),  # below the request volume
        (1, 49, None),  # 98 % of 50 calls, but
    ],
)
def test_failure_percentage(successes: int, failures: int, verdict: str | None) -> None:
    windows = [calls(100)] * 4 + [calls(successes, failures)]
    if (successes, failures) == (1, 49):
        verdict = "failure percentage 98 % above threshold 85 % (49 of 50 calls)"
    assert failure_percentage_outliers(windows, FP) == [None] * 4 + [verdict]


def test_failure_percentage_of_no_calls_is_zero() -> None:
    rule = FailurePercentageEjection(threshold=0, minimum_hosts=1, request_volume=0)
    assert failure_percentage_outliers([Window(0, 0, 0.0), calls(1, 1)], rule) == [
        None,
        "failure percentage 50 % above threshold 0 % (1 of 2 calls)",
    ]


def test_failure_percentage_counts_every_host_for_minimum_hosts() -> None:
    # Hosts with no calls at all count towards minimum_hosts (A50: "the number of addresses").
    windows = [Window(0, 0, 0.0)] * 4 + [calls(0, 60)]
    assert failure_percentage_outliers(windows, FP)[4] is not None
    assert failure_percentage_outliers(windows[1:], FP) == [None] * 4


# ----------------------------------------------------------------------------- latency

LAT = LatencyEjection(factor=3.0, minimum_difference=5 * MS, minimum_hosts=3, request_volume=10)


@pytest.mark.parametrize(
    ("mean", "median", "slow"),
    [
        (20 * MS, 1 * MS, True),
        (3 * MS, 1 * MS, False),  # 3 x the median exactly: not above it
        (6 * MS, 1 * MS, True),  # 5 ms more exactly
        (5.9 * MS, 1 * MS, False),  # above 3 x, but by less than 5 ms
        (1 * MS, 0.1 * MS, False),  # 10 x, but 0.9 ms
        (40 * MS, 20 * MS, False),  # 20 ms more, but only 2 x
        (60.1 * MS, 20 * MS, True),
    ],
)
def test_is_slow(mean: float, median: float, slow: bool) -> None:
    assert is_slow(mean, median, LAT) is slow


def test_is_slow_is_strictly_above_the_factor() -> None:
    rule = LatencyEjection(factor=2.0, minimum_difference=5 * MS)
    median = 2**-7  # 7.8125 ms; 2 x is 15.625 ms exactly, 7.8 ms more
    assert not is_slow(2 * median, median, rule)
    assert is_slow(2 * median + 2**-20, median, rule)


def test_slow_reason_in_milliseconds() -> None:
    assert slow_reason(0.5, 0.1, LAT) == "mean latency 500.0 ms > 3 x peers' median 100.0 ms"


def test_latency_ejects_far_above_the_peers_median() -> None:
    windows = [calls(50, latency=1 * MS), calls(40, latency=1 * MS), calls(10, 3, 21.3 * MS)]
    assert latency_outliers(windows, LAT) == [
        None,
        None,
        "mean latency 21.3 ms > 3 x peers' median 1.0 ms",
    ]


def test_latency_median_is_of_the_others() -> None:
    # Peers of the 20 ms host: 1, 2, 9 ms -> median 2 ms; 20 > 6 and by 18 ms: slow.
    # The 9 ms host's peers are 1, 2, 20 -> median 2 ms: 9 > 6 and by 7 ms: slow too.
    means = [1, 2, 9, 20]
    windows = [calls(10, latency=m * MS) for m in means]
    verdicts = latency_outliers(windows, LAT)
    assert verdicts == [
        None,
        None,
        "mean latency 9.0 ms > 3 x peers' median 2.0 ms",
        "mean latency 20.0 ms > 3 x peers' median 2.0 ms",
    ]
    # With an even number of peers the median is the mean of the middle two.
    windows = [calls(10, latency=m * MS) for m in (1, 3, 4, 30)]
    assert latency_outliers(windows, LAT)[3] == "mean latency 30.0 ms > 3 x peers' median 3.0 ms"


def test_latency_counts_successes_only_for_the_volume() -> None:
    windows = [calls(10), calls(10), calls(9, 20, 50 * MS)]
    assert latency_outliers(windows, LAT) == [None] * 3  # 2 hosts with the volume, not 3
    windows = [calls(10), calls(10), calls(10, 20, 50 * MS)]
    assert latency_outliers(windows, LAT)[2] is not None


def test_latency_needs_a_peer_whatever_minimum_hosts_says() -> None:
    rule = LatencyEjection(minimum_hosts=1, request_volume=1)
    assert latency_outliers([calls(5, latency=0.5), calls(0)], rule) == [None, None]
    pair = [calls(5, latency=0.5), calls(5, latency=MS)]
    assert latency_outliers(pair, rule)[0] is not None


# ---------------------------------------------------------------------------- a sweep


def failing(address: str, *, out: bool = False, available: bool = True) -> Member:
    return Member(address, calls(0, 100), out, available)


def fine(address: str) -> Member:
    return Member(address, calls(100))


FAIL_ALL = FailurePercentageEjection(minimum_hosts=2, request_volume=10)


def detection(max_percent: int = 100, **algorithms: Any) -> OutlierDetection:
    if not algorithms:
        algorithms = {"failure_percentage_ejection": FAIL_ALL}
    return OutlierDetection(max_ejection_percent=max_percent, **algorithms)


def ejected(members: list[Member], config: OutlierDetection, rng: Any = None) -> list[str]:
    plan = plan_sweep(members, config, rng if rng is not None else random.Random(1))
    return [e.address for e in plan.ejections]


@pytest.mark.parametrize(
    ("failing_count", "total", "max_percent", "expected"),
    [
        (10, 10, 10, 1),  # at least one
        (10, 10, 0, 1),  # at least one, even at 0 %
        (3, 4, 50, 2),
        (10, 10, 30, 3),
        (10, 10, 99, 9),  # and never the last available one
        (2, 5, 20, 1),
    ],
)
def test_sweep_respects_max_ejection_percent(
    failing_count: int, total: int, max_percent: int, expected: int
) -> None:
    members = [failing(f"a{i}") for i in range(failing_count)]
    members += [fine(f"b{i}") for i in range(total - failing_count)]
    assert len(ejected(members, detection(max_percent))) == expected


def test_sweep_counts_members_already_out() -> None:
    members = [failing("a", out=True), failing("b"), fine("e"), failing("c"), failing("d")]
    assert ejected(members, detection(40)) == ["b"]
    plan = plan_sweep(members, detection(40), random.Random(1))
    assert plan.skipped == [
        (
            "c",
            "failure percentage 100 % above threshold 85 % (100 of 100 calls); "
            "2 of 5 already out (max 40 %)",
        ),
        (
            "d",
            "failure percentage 100 % above threshold 85 % (100 of 100 calls); "
            "2 of 5 already out (max 40 %)",
        ),
    ]


def test_sweep_never_leaves_no_member_available() -> None:
    members = [failing("a"), failing("b")]
    plan = plan_sweep(members, detection(100), random.Random(1))
    assert [e.address for e in plan.ejections] == ["a"]
    assert plan.skipped == [
        (
            "b",
            "failure percentage 100 % above threshold 85 % (100 of 100 calls); "
            "the last available endpoint",
        )
    ]
    # An unavailable member can go: ejecting it takes nothing away.
    members = [failing("a"), failing("b", available=False)]
    assert ejected(members, detection(100)) == ["b"]


def test_sweep_does_not_judge_members_already_out_again() -> None:
    members = [failing("a", out=True), fine("b"), fine("c")]
    assert ejected(members, detection(100)) == []


def test_sweep_rolls_enforcement_for_outliers_only() -> None:
    rule = FailurePercentageEjection(enforcement_percentage=50, minimum_hosts=2, request_volume=10)
    members = [fine("a"), failing("b"), fine("c"), failing("d"), failing("e")]
    # One draw per outlier, in order: 70 (spared), 20 (ejected), 49 (ejected).
    rng = Scripted([70, 20, 49])
    assert ejected(members, detection(100, failure_percentage_ejection=rule), rng) == ["d", "e"]
    assert rng.draws == []


def test_sweep_enforcement_with_a_seeded_rng() -> None:
    rule = FailurePercentageEjection(enforcement_percentage=30, minimum_hosts=2, request_volume=10)
    members = [failing(f"a{i}") for i in range(20)] + [fine("z")]
    draws = random.Random(42)
    expected = [f"a{i}" for i in range(20) if draws.randrange(100) < 30]
    got = ejected(members, detection(100, failure_percentage_ejection=rule), random.Random(42))
    assert got == expected and 0 < len(got) < 20


def test_sweep_runs_the_algorithms_in_order_and_ejects_once() -> None:
    config = OutlierDetection(
        max_ejection_percent=100,
        success_rate_ejection=SuccessRateEjection(minimum_hosts=3, request_volume=10),
        failure_percentage_ejection=FailurePercentageEjection(minimum_hosts=3, request_volume=10),
        latency_ejection=LatencyEjection(minimum_hosts=3, request_volume=10),
    )
    members = [Member(f"f{i}", calls(100)) for i in range(6)]
    members.append(Member("bad", calls(0, 100)))  # both A50 algorithms flag it
    members.append(Member("slow", calls(100, latency=30 * MS)))
    plan = plan_sweep(members, config, random.Random(1))
    assert [(e.address, e.algorithm) for e in plan.ejections] == [
        ("bad", SUCCESS_RATE),
        ("slow", LATENCY),
    ]
    only_fp = OutlierDetection(
        max_ejection_percent=100,
        failure_percentage_ejection=FailurePercentageEjection(minimum_hosts=3, request_volume=10),
    )
    assert plan_sweep(members, only_fp, random.Random(1)).ejections == [
        Ejection(
            "bad",
            "failure percentage 100 % above threshold 85 % (100 of 100 calls)",
            FAILURE_PERCENTAGE,
        )
    ]


def test_sweep_with_no_algorithm_ejects_nobody() -> None:
    config = OutlierDetection(consecutive_failures=ConsecutiveFailures())
    assert ejected([failing("a"), fine("b")], config) == []


# ----------------------------------------------------------------------- trial verdict


@pytest.mark.parametrize(
    ("kwargs", "verdict"),
    [
        (
            {"successes": 1, "failed": UNAVAILABLE},
            (False, "trial call failed (UNAVAILABLE) while half-open"),
        ),
        ({"successes": 2}, None),
        ({"successes": 3}, (True, "3 trial calls succeeded")),
        ({"successes": 4}, (True, "4 trial calls succeeded")),
        (
            {"successes": 0, "expired": True},
            (True, "half-open for an interval with no failed trial (0 calls)"),
        ),
        (
            {"successes": 2, "expired": True},
            (True, "half-open for an interval with no failed trial (2 calls)"),
        ),
    ],
)
def test_trial_verdict(kwargs: dict[str, Any], verdict: tuple[bool, str] | None) -> None:
    arguments: dict[str, Any] = {"latency": 0.0, "failed": None, "trials": 3, "expired": False}
    arguments.update(kwargs)
    result = trial_verdict(**arguments)
    assert result == (Verdict(*verdict) if verdict is not None else None)


@pytest.mark.parametrize(
    ("mean", "median", "expired", "verdict"),
    [
        (
            20 * MS,
            1 * MS,
            False,
            (False, "trial calls slow: mean latency 20.0 ms > 3 x peers' median 1.0 ms"),
        ),
        (2 * MS, 1 * MS, False, (True, "3 trial calls succeeded")),
        (20 * MS, None, False, (True, "3 trial calls succeeded")),  # no peers to judge by
    ],
)
def test_trial_verdict_of_a_latency_ejection(
    mean: float, median: float | None, expired: bool, verdict: tuple[bool, str]
) -> None:
    result = trial_verdict(
        successes=3,
        latency=3 * mean,
        failed=None,
        trials=3,
        expired=expired,
        latency_rule=LAT,
        peers_median=median,
    )
    assert result == Verdict(*verdict)


def test_trial_verdict_of_one_slow_trial_when_the_interval_is_over() -> None:
    result = trial_verdict(
        successes=1,
        latency=20 * MS,
        failed=None,
        trials=3,
        expired=True,
        latency_rule=LAT,
        peers_median=MS,
    )
    assert result == Verdict(
        False, "trial calls slow: mean latency 20.0 ms > 3 x peers' median 1.0 ms"
    )


def test_trial_verdict_of_a_latency_ejection_with_no_trial() -> None:
    result = trial_verdict(
        successes=0,
        latency=0.0,
        failed=None,
        trials=3,
        expired=True,
        latency_rule=LAT,
        peers_median=MS,
    )
    assert result == Verdict(True, "half-open for an interval with no failed trial (0 calls)")


# -------------------------------------------------------------------------- the detector


class HandLoop:
    """Just enough of an event loop for the detector: callbacks queue until ``run``."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, tuple[Any, ...]]] = []
        self.closed = False

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.pending.append((callback, args))

    def run(self) -> None:
        while self.pending:
            callback, args = self.pending.pop(0)
            callback(*args)


class Rig:
    """A balancer of READY endpoints with a detector on a hand-cranked loop and clock."""

    def __init__(self, config: OutlierDetection, count: int = 4, rng: Any = None) -> None:
        self.clock = Clock(now=1000.0)
        self.balancer = Balancer(RoundRobinStrategy(rng=random.Random(1)))
        self.detector = OutlierDetector(self.balancer, config, clock=self.clock, rng=rng)
        self.loop = HandLoop()
        self.detector.start(cast(asyncio.AbstractEventLoop, self.loop)).close()
        self.balancer.set_addresses([f"127.0.0.1:{10000 + i}" for i in range(count)])
        self.endpoints = self.balancer.endpoints
        for endpoint in self.endpoints:
            self.balancer.set_state(endpoint, grpc.ChannelConnectivity.READY)

    def call(
        self, index: int, code: grpc.StatusCode = OK, latency: float = MS, *, hold: bool = False
    ) -> None:
        endpoint = self.endpoints[index]
        endpoint.begin()
        endpoint.record(Outcome(code, latency))
        if not hold:
            self.loop.run()

    def fail(self, index: int, times: int, code: grpc.StatusCode = UNAVAILABLE) -> None:
        for _ in range(times):
            self.call(index, code)

    def later(self, seconds: float) -> None:
        self.clock.now += seconds
        self.detector.sweep()

    def history(self, index: int) -> list[tuple[str, str]]:
        return [
            (e.kind, e.reason)
            for e in self.endpoints[index].events
            if e.kind in (events.EJECTED, events.HALF_OPEN, events.READMITTED)
        ]


def consecutive_config(**overrides: Any) -> OutlierDetection:
    settings: dict[str, Any] = {
        "interval": 1.0,
        "base_ejection_time": 10.0,
        "max_ejection_time": 25.0,
        "max_ejection_percent": 50,
        "consecutive_failures": ConsecutiveFailures(count=3),
        "half_open_trials": 2,
    }
    settings.update(overrides)
    return OutlierDetection(**settings)


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "resilientrpc.outlier"]


def test_detector_installs_its_observer_and_streak_limit() -> None:
    rig = Rig(consecutive_config())
    assert all(e.streak_limit == 3 and e.observer is not None for e in rig.endpoints)
    bare = Rig(OutlierDetection(latency_ejection=LatencyEjection()))
    assert all(e.streak_limit == 0 for e in bare.endpoints)


def test_consecutive_failures_eject_and_half_open_decides() -> None:
    rig = Rig(consecutive_config())
    rig.fail(0, 2)
    rig.call(0)  # a success breaks the streak
    rig.fail(0, 2)
    assert not rig.endpoints[0].ejected
    rig.fail(0, 1)
    assert rig.endpoints[0].ejected
    assert rig.history(0) == [
        (events.EJECTED, "3 consecutive failures (UNAVAILABLE); out for 10 s")
    ]
    rig.later(9.9)
    assert rig.endpoints[0].ejected
    rig.later(0.1)
    assert rig.endpoints[0].half_open and rig.endpoints[0].available
    assert rig.endpoints[0].consecutive_failures == 0
    rig.call(0)
    rig.fail(0, 1, grpc.StatusCode.INTERNAL)  # a failed trial: out again, for longer
    assert rig.endpoints[0].ejected
    rig.later(19.9)
    assert rig.endpoints[0].ejected
    rig.later(0.1)
    rig.call(0)
    assert rig.endpoints[0].half_open
    rig.call(0)
    assert rig.history(0) == [
        (events.EJECTED, "3 consecutive failures (UNAVAILABLE); out for 10 s"),
        (events.HALF_OPEN, "ejection over; 2 trial calls decide"),
        (events.EJECTED, "trial call failed (INTERNAL) while half-open; out for 20 s"),
        (events.HALF_OPEN, "ejection over; 2 trial calls decide"),
        (events.READMITTED, "2 trial calls succeeded"),
    ]
    assert rig.endpoints[0].available and not rig.endpoints[0].half_open


def test_outcomes_that_arrive_after_the_verdict_change_nothing() -> None:
    rig = Rig(consecutive_config())
    rig.fail(0, 3)
    rig.later(10.0)
    for _ in range(3):  # three trials finish before the loop hears of any
        rig.call(0, hold=True)
    rig.loop.run()
    assert rig.history(0)[-1] == (events.READMITTED, "2 trial calls succeeded")
    assert not rig.endpoints[0].ejected


def test_multiplier_grows_and_falls_by_one_per_sweep_while_in() -> None:
    rig = Rig(consecutive_config(max_ejection_time=100.0, half_open_trials=1))

    def round_trip() -> str | None:
        """Eject by a streak, wait the ejection out, pass one trial: the ejection's reason."""
        rig.fail(0, 3)
        reason = rig.endpoints[0].reason
        rig.later(100.0)
        rig.call(0)
        assert rig.history(0)[-1] == (events.READMITTED, "1 trial calls succeeded")
        return reason

    reasons = [round_trip() for _ in range(4)]
    assert reasons == [
        f"3 consecutive failures (UNAVAILABLE); out for {s} s" for s in (10, 20, 30, 40)
    ]
    rig.later(1.0)  # multiplier 4 -> 3
    assert round_trip() == "3 consecutive failures (UNAVAILABLE); out for 40 s"
    for _ in range(5):  # 4 -> 0, and no lower
        rig.later(1.0)
    assert round_trip() == "3 consecutive failures (UNAVAILABLE); out for 10 s"


def test_failures_that_do_not_count_never_eject() -> None:
    rig = Rig(consecutive_config())
    rig.fail(0, 10, grpc.StatusCode.NOT_FOUND)
    rig.fail(0, 10, grpc.StatusCode.CANCELLED)
    assert not rig.endpoints[0].ejected


def test_an_ejected_endpoint_is_not_ejected_again_by_a_streak() -> None:
    rig = Rig(consecutive_config())
    rig.fail(0, 3)
    rig.call(0)  # in panic an ejected endpoint may still take calls
    rig.fail(0, 3)
    assert rig.history(0) == [
        (events.EJECTED, "3 consecutive failures (UNAVAILABLE); out for 10 s")
    ]


def test_consecutive_failures_respect_the_limits(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(consecutive_config(max_ejection_percent=50))
    with caplog.at_level(logging.INFO, logger="resilientrpc.outlier"):
        for index in range(4):
            rig.fail(index, 3)
        assert [e.ejected for e in rig.endpoints] == [True, True, False, False]
        two = Rig(consecutive_config(max_ejection_percent=100), count=2)
        two.fail(0, 3)
        two.fail(1, 3)
    assert [e.ejected for e in two.endpoints] == [True, False]
    assert logged(caplog) == [
        "not ejecting 127.0.0.1:10002: 3 consecutive failures (UNAVAILABLE); "
        "2 of 4 already out (max 50 %)",
        "not ejecting 127.0.0.1:10003: 3 consecutive failures (UNAVAILABLE); "
        "2 of 4 already out (max 50 %)",
        "not ejecting 127.0.0.1:10001: 3 consecutive failures (UNAVAILABLE); the last available",
    ]


def test_consecutive_failures_enforcement() -> None:
    rule = ConsecutiveFailures(count=2, enforcement_percentage=40)
    rig = Rig(consecutive_config(consecutive_failures=rule), rng=Scripted([40, 39]))
    rig.fail(0, 2)
    assert not rig.endpoints[0].ejected
    rig.call(0)
    rig.fail(0, 2)
    assert rig.endpoints[0].ejected


def test_detector_has_its_own_rng_by_default() -> None:
    rig = Rig(consecutive_config())  # no rng given: enforcement still rolls
    rig.fail(0, 3)
    assert rig.endpoints[0].ejected


def test_an_error_on_an_outcome_is_logged_and_never_reaches_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(consecutive_config(), rng=Scripted([]))  # the roll raises IndexError
    rig.fail(0, 3)
    assert not rig.endpoints[0].ejected
    assert logged(caplog) == ["outlier detection failed on an outcome of 127.0.0.1:10000"]


def test_failed_trial_of_the_last_available_endpoint_readmits_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(consecutive_config(max_ejection_percent=100), count=2)
    rig.fail(0, 3)
    rig.later(10.0)
    rig.balancer.set_state(rig.endpoints[1], grpc.ChannelConnectivity.TRANSIENT_FAILURE)
    with caplog.at_level(logging.INFO, logger="resilientrpc.outlier"):
        rig.fail(0, 1)
    assert rig.endpoints[0].available and not rig.endpoints[0].half_open
    assert rig.history(0)[-1] == (
        events.READMITTED,
        "trial call failed (UNAVAILABLE) while half-open; kept: the last available",
    )
    assert logged(caplog) == [
        "not ejecting 127.0.0.1:10000 again: trial call failed (UNAVAILABLE) while "
        "half-open; the last available"
    ]


def test_a_quiet_half_open_endpoint_is_readmitted_after_an_interval() -> None:
    rig = Rig(consecutive_config())
    rig.fail(0, 3)
    rig.later(10.0)
    assert rig.endpoints[0].half_open
    rig.call(0)
    rig.later(0.5)
    assert rig.endpoints[0].half_open
    rig.later(0.5)
    assert not rig.endpoints[0].half_open and rig.endpoints[0].available
    assert rig.history(0)[-1] == (
        events.READMITTED,
        "half-open for an interval with no failed trial (1 calls)",
    )


FP_SWEEP = OutlierDetection(
    interval=1.0,
    base_ejection_time=2.0,
    max_ejection_percent=100,
    failure_percentage_ejection=FailurePercentageEjection(minimum_hosts=2, request_volume=10),
)


def test_sweep_ejects_by_window_and_forgets_removed_endpoints() -> None:
    rig = Rig(FP_SWEEP, count=3)
    for index in (0, 1):
        for _ in range(10):
            rig.call(index)
    rig.fail(2, 10)
    rig.later(1.0)
    assert rig.history(2) == [
        (
            events.EJECTED,
            "failure percentage 100 % above threshold 85 % (10 of 10 calls); out for 2 s",
        )
    ]
    assert all(e.window_failures == 0 and e.window_successes == 0 for e in rig.endpoints)
    rig.balancer.set_addresses([e.address for e in rig.endpoints[:2]])
    rig.later(1.0)
    assert rig.endpoints[2] not in rig.detector._tracks


def test_sweep_keeps_one_available_and_judges_no_one_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(FP_SWEEP, count=2)
    with caplog.at_level(logging.INFO, logger="resilientrpc.outlier"):
        rig.fail(0, 10)
        rig.fail(1, 10)
        rig.later(1.0)
    assert [e.ejected for e in rig.endpoints] == [True, False]
    assert logged(caplog) == [
        "not ejecting 127.0.0.1:10001: failure percentage 100 % above threshold 85 % "
        "(10 of 10 calls); the last available endpoint"
    ]
    rig.fail(0, 10)  # an ejected endpoint's window (panic traffic) does not eject it again
    rig.fail(1, 10)
    rig.later(1.0)
    assert rig.history(0) == [
        (
            events.EJECTED,
            "failure percentage 100 % above threshold 85 % (10 of 10 calls); out for 2 s",
        ),
    ]
    assert not rig.endpoints[1].ejected


LATENCY_SWEEP = OutlierDetection(
    interval=1.0,
    base_ejection_time=2.0,
    max_ejection_percent=100,
    latency_ejection=LatencyEjection(minimum_hosts=3, request_volume=5),
    half_open_trials=2,
)


def slow_window(rig: Rig, slow: float = 30 * MS) -> None:
    for _ in range(5):
        rig.call(0, latency=1 * MS)
        rig.call(1, latency=2 * MS)
        rig.call(2, latency=slow)


def test_latency_ejection_times_the_trials() -> None:
    rig = Rig(LATENCY_SWEEP, count=3)
    slow_window(rig)
    rig.later(1.0)
    assert rig.endpoints[2].ejected
    rig.later(2.0)  # the peers had no calls in this interval: their last means stand
    rig.call(2, latency=30 * MS)
    rig.call(2, latency=30 * MS)
    assert rig.history(2)[-1] == (
        events.EJECTED,
        "trial calls slow: mean latency 30.0 ms > 3 x peers' median 1.5 ms; out for 4 s",
    )
    rig.later(4.0)
    rig.call(2, latency=30 * MS)
    rig.call(2, latency=30 * MS)
    assert rig.history(2)[-1] == (
        events.EJECTED,
        "trial calls slow: mean latency 30.0 ms > 3 x peers' median 1.5 ms; out for 6 s",
    )
    rig.later(6.0)
    rig.call(2, latency=2 * MS)
    rig.call(2, latency=2 * MS)
    assert rig.history(2)[-1] == (events.READMITTED, "2 trial calls succeeded")


def test_trials_after_a_failure_ejection_are_not_timed() -> None:
    config = OutlierDetection(
        interval=1.0,
        base_ejection_time=2.0,
        max_ejection_percent=100,
        consecutive_failures=ConsecutiveFailures(count=3),
        latency_ejection=LatencyEjection(minimum_hosts=3, request_volume=5),
        half_open_trials=2,
    )
    rig = Rig(config, count=3)
    slow_window(rig, slow=2 * MS)
    rig.later(1.0)
    rig.fail(2, 3)
    rig.later(2.0)
    rig.call(2, latency=30 * MS)
    rig.call(2, latency=30 * MS)
    assert rig.history(2)[-1] == (events.READMITTED, "2 trial calls succeeded")


def test_latency_trials_with_no_peer_known_readmit() -> None:
    rig = Rig(LATENCY_SWEEP, count=3)
    slow_window(rig)
    rig.later(1.0)
    rig.balancer.set_addresses([rig.endpoints[2].address])
    rig.later(2.0)
    rig.call(2, latency=30 * MS)
    rig.call(2, latency=30 * MS)
    assert rig.history(2)[-1] == (events.READMITTED, "2 trial calls succeeded")


def test_an_unstarted_or_closed_detector_takes_no_outcomes() -> None:
    balancer = Balancer(RoundRobinStrategy(rng=random.Random(1)))
    OutlierDetector(balancer, consecutive_config())
    balancer.set_addresses(["127.0.0.1:10000"])
    endpoint = balancer.endpoints[0]
    for _ in range(3):
        endpoint.begin()
        endpoint.record(Outcome(UNAVAILABLE, MS))
    assert not endpoint.ejected
    rig = Rig(consecutive_config())
    rig.detector.close()
    rig.fail(0, 5)
    assert not rig.endpoints[0].ejected


def test_a_closed_loop_never_breaks_a_call() -> None:
    rig = Rig(consecutive_config())
    rig.loop.closed = True
    rig.fail(0, 5)  # the observer's hand-off raises RuntimeError: swallowed
    assert not rig.endpoints[0].ejected


def sweeps_in(seconds: float, interval: float) -> int:
    """How many sweeps the detector's task runs in ``seconds`` (its first one raises)."""
    config = OutlierDetection(interval=interval, consecutive_failures=ConsecutiveFailures())
    detector = OutlierDetector(Balancer(RoundRobinStrategy()), config)
    sweeps: list[float] = []

    def sweep() -> None:
        sweeps.append(0.0)
        if len(sweeps) == 1:
            raise ValueError("one bad sweep")

    detector.sweep = sweep  # type: ignore[method-assign]  # a sweep that fails once, on purpose

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(detector.start(asyncio.get_running_loop()))
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_for_a_while())
    return len(sweeps)


def test_the_sweep_task_sweeps_every_interval_and_survives_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert 2 <= sweeps_in(0.07, 0.02) <= 4
    assert 2 <= sweeps_in(0.07, 0.0) <= 8  # an interval of 0 is MIN_INTERVAL
    assert "outlier detection sweep failed; carrying on" in logged(caplog)


def test_public_names_import_and_docstring_examples_hold() -> None:
    module = outlier_module
    assert module.__doc__
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted >= 5


def test_with_no_trials_the_ejection_ends_in_readmission() -> None:
    rig = Rig(consecutive_config(half_open_trials=0))
    rig.fail(0, 3)
    rig.later(10.0)
    assert rig.history(0) == [
        (events.EJECTED, "3 consecutive failures (UNAVAILABLE); out for 10 s"),
        (events.READMITTED, "ejection over"),
    ]
    assert rig.endpoints[0].consecutive_failures == 0
    rig.fail(0, 3)  # the multiplier is 1 still: the next ejection is longer
    assert rig.endpoints[0].reason == "3 consecutive failures (UNAVAILABLE); out for 20 s"
