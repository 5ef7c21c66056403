"""The fault-detection scenarios (``--scenario faults``), side by side with native balancing.

Rows, each for grpcio's native round_robin with ``healthCheckConfig`` and for
resilientrpc's sync and asyncio twins, in one run:

* **6a hung backend** (SIGSTOP of one of 3 at t = 1 s): time until it gets no new calls
  (goal <= T + 0.2 s, T = heartbeat interval + timeout), client-visible errors, and
  throughput from t = 1 + T + 0.5 s against before the event (goal >= 0.8x);
* **6b killed backend** (kill -9): errors and time until no call goes to it;
* **6c NOT_SERVING then SERVING**: calls it still served more than 20 ms after the flip
  (goal: none) and the time until it serves again after SERVING;
* **6d fast-failing backend**: the share of attempts drawn by one of 4 backends that
  answers UNAVAILABLE at once, under least_request and peak_ewma (goal <= 25 %);
* **6e slow backend**: peak_ewma's p99 against the floor, native round_robin over the
  fast backends only (goal <= 1.3x), and the slow backend's share;
* **6f footprint**: see :mod:`resilientrpc.bench.footprint`.

How a call is attributed to the faulted backend (the reading of an :class:`EventRun`):
a call that succeeded names its backend in the reply; a call that failed is counted
against the faulted backend when its status is the one that backend's fault produces
(DEADLINE_EXCEEDED for a hung one, which no live backend comes near; UNAVAILABLE for a
dead one), since the live backends answer every call. "No new calls after" is the start
time of the last call so attributed that started after the event.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from resilientrpc.bench.drivers import Driver, Load, Variant, merge
from resilientrpc.bench.events import (
    CALL_DEADLINE,
    CLIENTS,
    PLAIN_CONFIG,
    CallRecord,
    EventRun,
    FaultVariant,
    run_events,
)
from resilientrpc.bench.fleet import BackendMode, Fleet
from resilientrpc.bench.network import strategy_variant
from resilientrpc.bench.results import Goal, Row, at_least, at_most, ratio, summarize
from resilientrpc.config.service import HealthCheckConfig
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.testing import Faults

__all__ = [
    "EVENT_AT",
    "FAST_FAIL_SHARE_GOAL",
    "FLIP_GRACE",
    "FLOOR_P99_GOAL",
    "HEARTBEAT_DEADLINE",
    "ISOLATION_SLACK",
    "THROUGHPUT_AFTER_GOAL",
    "FaultBudget",
    "event_rows",
    "fast_failing",
    "flip_rows",
    "hang_rows",
    "kill_rows",
    "last_start_after",
    "measure_events",
    "slow_floor",
]

#: When the event happens, seconds after the load began.
EVENT_AT = 1.0
#: T: the heartbeat deadline of the health config every variant uses (interval + timeout).
HEARTBEAT_DEADLINE = HealthCheckConfig().deadline
#: How much later than T a hung backend may still get new calls (the issue's goal).
ISOLATION_SLACK = 0.2
#: After NOT_SERVING, calls that start later than this still reaching it count as misses.
FLIP_GRACE = 0.02
THROUGHPUT_AFTER_GOAL = at_least(0.8)
#: Fair share of one of 4 backends, percent.
FAST_FAIL_SHARE_GOAL = at_most(25.0, "%")
FLOOR_P99_GOAL = at_most(1.3)
#: The strategies of the fast-failing and slow-backend rows.
FAULT_STRATEGIES = ("least_request", "peak_ewma")

_TARGET = "f1"
_NAMES = ("f1", "f2", "f3")
_FAIL_NAMES = ("failing", "ok1", "ok2", "ok3")
_SLOW_NAMES = ("slow", "fast1", "fast2")
_VARIANT_LABELS = {"native": "native rr + health", "sync": "resilient", "aio": "resilient"}


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultBudget:
    """How long each part of the fault scenarios runs."""

    #: Seconds of load measured after the throughput window opens (t = 1 + T + 0.5).
    after_seconds: float
    #: Seconds between NOT_SERVING and SERVING, and after SERVING until the end.
    flip_seconds: float
    #: Seconds per variant and calls cap of the fast-failing and slow-backend rows.
    strategy_seconds: float
    strategy_calls: int


FULL_FAULTS = FaultBudget(
    after_seconds=1.5, flip_seconds=1.5, strategy_seconds=3.0, strategy_calls=30_000
)
QUICK_FAULTS = FaultBudget(
    after_seconds=0.5, flip_seconds=0.8, strategy_seconds=1.0, strategy_calls=10_000
)


# ------------------------------------------------------------------ reading a log


def last_start_after(
    records: Sequence[CallRecord], after: float, belongs: Callable[[CallRecord], bool]
) -> float | None:
    """The start of the last call that began at or after ``after`` and ``belongs``."""
    starts = [record.start for record in records if record.start >= after and belongs(record)]
    return max(starts) if starts else None


def _rate(records: Sequence[CallRecord], begin: float, end: float) -> float:
    done = sum(1 for r in records if r.code is grpc.StatusCode.OK and begin <= r.end < end)
    return done / (end - begin) if end > begin else math.nan


def _errors_after(records: Sequence[CallRecord], after: float) -> tuple[int, int]:
    later = [record for record in records if record.start >= after]
    return sum(1 for record in later if record.code is not grpc.StatusCode.OK), len(later)


def _row(
    run: EventRun,
    scenario: str,
    subject: str,
    value: float,
    *,
    goal: Goal | None = None,
    unit: str = "x",
    context: str = "",
) -> Row:
    label = _VARIANT_LABELS[run.variant]
    if run.config is PLAIN_CONFIG:
        label += " (no healthCheckConfig: no SERVING seen)"
    twin = "-" if run.variant == "native" else run.variant
    return Row(
        scenario=scenario,
        twin=twin,
        subject=f"{label}: {subject}",
        value=value,
        goal=goal,
        unit=unit,
        context=context,
    )


def _isolation(
    run: EventRun, event: str, belongs: Callable[[CallRecord], bool]
) -> tuple[float, str]:
    """Seconds from the event to the last new call to the faulted backend, and a note."""
    at = run.events[event]
    last = last_start_after(run.records, at, belongs)
    if last is None:
        return 0.0, "no call reached it after the event"
    if last >= run.duration - CALL_DEADLINE:
        return run.duration - at, "still getting new calls when the load ended"
    return last - at, f"last new call {last - at:.3f} s after the event"


def _hung(record: CallRecord) -> bool:
    return record.backend == _TARGET or record.code is grpc.StatusCode.DEADLINE_EXCEEDED


def _dead(record: CallRecord) -> bool:
    return record.backend == _TARGET or record.code is grpc.StatusCode.UNAVAILABLE


def hang_rows(run: EventRun) -> list[Row]:
    """6a: isolation time, errors and throughput after a SIGSTOP."""
    at = run.events["sigstop"]
    seconds, note = _isolation(run, "sigstop", _hung)
    errors, calls = _errors_after(run.records, at)
    before = _rate(run.records, 0.2, at)
    window = at + HEARTBEAT_DEADLINE + 0.5
    after = _rate(run.records, window, run.duration)
    scenario = "6a hung backend"
    return [
        _row(
            run,
            scenario,
            "time until no new calls to the hung one",
            seconds,
            goal=at_most(HEARTBEAT_DEADLINE + ISOLATION_SLACK, "s"),
            unit="s",
            context=f"{note}; T = {HEARTBEAT_DEADLINE:g} s",
        ),
        _row(
            run,
            scenario,
            "calls/s from 1 + T + 0.5 s / before",
            ratio(after, before),
            goal=THROUGHPUT_AFTER_GOAL,
            context=f"{after:.0f} vs {before:.0f} calls/s; {errors} of {calls} calls "
            "after the event failed",
        ),
    ]


def kill_rows(run: EventRun) -> list[Row]:
    """6b: errors and isolation time after kill -9."""
    at = run.events["kill"]
    seconds, note = _isolation(run, "kill", _dead)
    errors, calls = _errors_after(run.records, at)
    scenario = "6b killed backend"
    return [
        _row(
            run,
            scenario,
            "time until no call goes to the dead one",
            seconds,
            unit="s",
            context=note,
        ),
        _row(
            run,
            scenario,
            "client-visible errors after the kill",
            float(errors),
            unit="calls",
            context=f"of {calls} calls started after it",
        ),
    ]


def flip_rows(run: EventRun) -> list[Row]:
    """6c: calls served after NOT_SERVING (+ grace) and readmission after SERVING."""
    out, back = run.events["not_serving"], run.events["serving"]
    late = [r for r in run.records if out + FLIP_GRACE <= r.start < back and r.backend == _TARGET]
    again = [r.start for r in run.records if r.start >= back and r.backend == _TARGET]
    readmitted = min(again) - back if again else math.nan
    scenario = "6c NOT_SERVING, SERVING"
    return [
        _row(
            run,
            scenario,
            f"calls it served > {FLIP_GRACE * 1e3:g} ms after NOT_SERVING",
            float(len(late)),
            goal=at_most(0, "calls"),
            unit="calls",
            context=f"in the {back - out:.2f} s it was NOT_SERVING",
        ),
        _row(
            run,
            scenario,
            "time from SERVING to its next call",
            readmitted,
            unit="s",
            context="never served again before the load ended" if not again else "",
        ),
    ]


def measure_events(
    variants: Sequence[FaultVariant], budget: FaultBudget, *, mode: BackendMode = "process"
) -> list[EventRun]:
    """The three event runs (SIGSTOP, kill -9, health flip) per variant, each on new backends."""
    if mode != "process":
        raise ValueError("the fault scenarios need backends in child processes")
    stop_seconds = EVENT_AT + HEARTBEAT_DEADLINE + 0.5 + budget.after_seconds
    kill_seconds = EVENT_AT + HEARTBEAT_DEADLINE + 0.5
    flip_seconds = EVENT_AT + 2 * budget.flip_seconds
    runs: list[EventRun] = []
    for variant in variants:
        health = True  # until a run of this variant falls back: then the rest start there
        with Fleet(_NAMES, mode="process") as fleet:
            target = fleet.processes[0]
            try:
                run = run_events(
                    variant,
                    fleet.addresses,
                    [(EVENT_AT, "sigstop", target.pause)],
                    stop_seconds,
                )
            finally:
                target.resume()
            runs.append(run)
            health = run.config is not PLAIN_CONFIG
            script = [
                (
                    EVENT_AT,
                    "not_serving",
                    functools.partial(target.configure, health="NOT_SERVING"),
                ),
                (
                    EVENT_AT + budget.flip_seconds,
                    "serving",
                    functools.partial(target.configure, health="SERVING"),
                ),
            ]
            runs.append(run_events(variant, fleet.addresses, script, flip_seconds, health=health))
        with Fleet(_NAMES, mode="process") as fleet:
            target = fleet.processes[0]
            runs.append(
                run_events(
                    variant,
                    fleet.addresses,
                    [(EVENT_AT, "kill", target.kill)],
                    kill_seconds,
                    health=health,
                )
            )
    return runs


def event_rows(runs: Sequence[EventRun]) -> list[Row]:
    """The rows of every event run, grouped by scenario."""
    readers = (("sigstop", hang_rows), ("kill", kill_rows), ("not_serving", flip_rows))
    rows: list[Row] = []
    for event, reader in readers:
        for run in runs:
            if event in run.events:
                rows += reader(run)
    return rows


# ------------------------------------------------------------- strategies under faults


def fast_failing(driver: Driver, budget: FaultBudget, *, mode: BackendMode) -> list[Row]:
    """6d: one of 4 backends answers UNAVAILABLE at once, the others take 5 ms.

    Attempts are counted by the channel itself: the difference of each endpoint's
    ``calls`` in ``endpoints()`` across the load, so a retried attempt counts too.
    """
    faults = {_FAIL_NAMES[0]: Faults(error_rate=1.0)}
    faults |= {name: Faults(latency=0.005) for name in _FAIL_NAMES[1:]}
    rows = []
    with Fleet(_FAIL_NAMES, mode=mode, faults=faults) as fleet:
        for strategy in FAULT_STRATEGIES:
            variant = strategy_variant(strategy, fleet.addresses)
            opened = driver.open(variant, warm_calls=0)
            try:
                before = _attempts(opened.channel)
                load = driver.concurrent(
                    opened,
                    concurrency=CLIENTS,
                    calls=budget.strategy_calls,
                    seconds=budget.strategy_seconds,
                )
                after = _attempts(opened.channel)
            finally:
                driver.close(opened)
            failing = fleet.addresses[0]
            drawn = after.get(failing, 0) - before.get(failing, 0)
            attempts = sum(after.values()) - sum(before.values())
            share = 100 * drawn / attempts if attempts else math.nan
            rows.append(
                Row(
                    scenario="6d fast-failing backend",
                    twin=driver.name,
                    subject=f"{strategy}: failing backend's share of attempts",
                    value=share,
                    unit="%",
                    goal=FAST_FAIL_SHARE_GOAL,
                    context=f"{drawn} of {attempts} attempts (endpoints() calls); "
                    f"{load.errors} of {load.calls + load.errors} calls failed",
                )
            )
    return rows


class _HasEndpoints(Protocol):
    def endpoints(self) -> list[EndpointStatus]: ...


def _attempts(channel: _HasEndpoints) -> dict[str, int]:
    """Finished attempts per address, from a ResilientChannel's ``endpoints()``."""
    statuses = channel.endpoints()
    return {status.address: status.calls + status.outstanding for status in statuses}


def slow_floor(driver: Driver, budget: FaultBudget, *, mode: BackendMode) -> list[Row]:
    """6e: one of 3 backends 20 ms slower; peak_ewma's p99 against the floor.

    The floor is grpcio's native round_robin over the two fast backends only, measured
    in the same run, alternating with peak_ewma in three rounds.
    """
    faults = {_SLOW_NAMES[0]: Faults(latency=0.02)}
    with Fleet(_SLOW_NAMES, mode=mode, faults=faults) as fleet:
        fast = tuple(fleet.addresses[1:])
        variants = [
            Variant(label="floor", kind="native", addresses=fast),
            strategy_variant("peak_ewma", fleet.addresses),
        ]
        opened = []
        try:
            for variant in variants:
                opened.append(driver.open(variant, warm_calls=100))
            loads: dict[str, list[Load]] = {item.variant.label: [] for item in opened}
            rounds = 3
            for number in range(rounds):
                order = opened if number % 2 == 0 else opened[::-1]
                for item in order:
                    loads[item.variant.label].append(
                        driver.concurrent(
                            item,
                            concurrency=CLIENTS,
                            calls=budget.strategy_calls // rounds,
                            seconds=budget.strategy_seconds / rounds,
                        )
                    )
        finally:
            for item in opened:
                driver.close(item)
    floor, ours = merge(loads["floor"]), merge(loads["peak_ewma"])
    floor_stats, our_stats = summarize(floor.latencies), summarize(ours.latencies)
    return [
        Row(
            scenario="6e slow backend",
            twin=driver.name,
            subject="peak_ewma p99 / floor p99 (native rr over the fast two)",
            value=ratio(our_stats.p99, floor_stats.p99),
            goal=FLOOR_P99_GOAL,
            context=f"{our_stats.ms()} vs floor {floor_stats.ms()}; slow backend served "
            f"{ours.share(_SLOW_NAMES[0]) * 100:.1f} % of {ours.calls}",
        )
    ]
