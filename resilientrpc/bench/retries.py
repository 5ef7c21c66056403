"""The retries scenario (issue 9): grpcio's native retryPolicy next to both twins.

Every row runs one service config JSON through three columns in one run: a grpc channel
over the backends with grpcio's own ``retryPolicy`` (``grpc.service_config`` and
``round_robin``), the sync ``ResilientChannel`` and the asyncio one. Attempts are counted
where they land: each backend counts the Echo calls it executes, so "server attempts
per call" is the backends' added count over the calls made, whatever the client says.

- 9a one of 3 backends fails 30 % UNAVAILABLE: success rate and attempts per call;
- 9b all backends fail: attempts per call without a budget, with ``retryThrottling``
  and with the ``retryBudget`` extension;
- 9c one backend SIGSTOPped (child processes), ``perAttemptRecvTimeout``: errors, p99;
- 9d one backend stalls 200 ms on 5 % of calls, ``hedgingPolicy``: p99 against native
  (grpcio ignores hedging), with a fixed delay and with ``hedgingDelayPercentile``;
- 9e every first attempt succeeds, a ``retryPolicy`` configured: latency against a plain
  channel, measured in interleaved rounds like the latency scenario.

A config a column does not accept (a ResilientChannel before the retry engine exists
rejects ``retryBudget``) gives that column an ``n/a`` row saying why; the others run.
Every loop is bounded in calls and in seconds (:class:`RetryBudget`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resilientrpc.bench.drivers import Driver, Load, Opened, Variant, merge
from resilientrpc.bench.fleet import BackendMode, Fleet
from resilientrpc.bench.network import (
    LATENCY_GOAL_AIO,
    LATENCY_GOAL_SYNC,
    interleaved,
    opened_variants,
)
from resilientrpc.bench.results import Goal, Row, at_least, at_most, ratio, summarize
from resilientrpc.errors import ConfigError
from resilientrpc.testing import ECHO_SERVICE_NAME

__all__ = [
    "FAILOVER_GOAL",
    "FULL_RETRY_BUDGET",
    "HEDGING",
    "HUNG_ERRORS_GOAL",
    "OUTAGE_GOAL",
    "QUICK_RETRY_BUDGET",
    "RETRY_POLICY",
    "RetryBudget",
    "first_attempt",
    "hedging",
    "hung_backend",
    "method_config",
    "one_flaky",
    "outage",
    "retry_rows",
]

#: The retryPolicy of rows 9a, 9b and 9e (gRFC A6 field names).
RETRY_POLICY: Mapping[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
#: Row 9c: the same policy, a hung attempt given up after 100 ms and retried elsewhere.
HUNG_RETRY_POLICY: Mapping[str, Any] = {
    **RETRY_POLICY,
    "perAttemptRecvTimeout": "0.1s",
    "retryableStatusCodes": ["UNAVAILABLE", "DEADLINE_EXCEEDED"],
}
#: Row 9d: one hedge after 20 ms.
HEDGING: Mapping[str, Any] = {
    "maxAttempts": 2,
    "hedgingDelay": "0.02s",
    "nonFatalStatusCodes": ["UNAVAILABLE"],
}
#: Row 9d's second config: hedge after the method's live p95 (20 ms until it is known).
HEDGING_PERCENTILE: Mapping[str, Any] = {**HEDGING, "hedgingDelayPercentile": 95}
#: Row 9b's budgets: A6's token bucket, and the ratio budget extension.
THROTTLING: Mapping[str, Any] = {"maxTokens": 10, "tokenRatio": 0.1}
RATIO_BUDGET: Mapping[str, Any] = {"retryRatio": 0.2, "minRetriesPerSecond": 10, "ttl": "10s"}

FAILOVER_GOAL = at_least(100.0, "%")
OUTAGE_GOAL = at_most(1.2, "attempts/call")
HUNG_ERRORS_GOAL = at_most(0.0, "errors")

#: Failure rate and code of the flaky backend (9a), stalls of the stalling one (9d).
FLAKY_RATE = 0.3
STALL_RATE = 0.05
STALL_SECONDS = 0.2
#: Deadline of each call in the hung-backend row: what a hung attempt costs without a
#: per-attempt timeout.
HUNG_DEADLINE = 1.0

_NAMES = ("r1", "r2", "r3")
_NATIVE = "native grpcio"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """How much each row may do per column: calls, seconds, concurrent callers."""

    #: Calls of row 9a (the issue's 10,000); the other rows make at most this many.
    calls: int
    #: Most seconds each column of a row may take.
    seconds: float
    #: Calls of the outage, hung-backend and hedging rows (at most ``calls``).
    fault_calls: int
    #: Concurrent callers of every row but 9e (sequential, like the latency scenario).
    concurrency: int
    #: Rounds and calls per column of 9e.
    latency_rounds: int
    latency_calls: int
    #: Calls each column makes, once connected, before it is measured.
    warm_calls: int


FULL_RETRY_BUDGET = RetryBudget(
    calls=10_000,
    seconds=60.0,
    fault_calls=2_000,
    concurrency=8,
    latency_rounds=20,
    latency_calls=3_000,
    warm_calls=100,
)
QUICK_RETRY_BUDGET = RetryBudget(
    calls=2_000,
    seconds=15.0,
    fault_calls=600,
    concurrency=8,
    latency_rounds=8,
    latency_calls=600,
    warm_calls=50,
)


def method_config(
    policy: Mapping[str, Any], *, hedged: bool = False, **top: Mapping[str, Any]
) -> dict[str, Any]:
    """A service config with ``policy`` for every Echo method, plus top-level fields.

    >>> method_config({"maxAttempts": 2}, retryThrottling={"maxTokens": 10})["retryThrottling"]
    {'maxTokens': 10}
    """
    key = "hedgingPolicy" if hedged else "retryPolicy"
    return {
        "methodConfig": [{"name": [{"service": ECHO_SERVICE_NAME}], key: dict(policy)}],
        **{name: dict(value) for name, value in top.items()},
    }


# ------------------------------------------------------------------ columns


@dataclass(slots=True)
class _Column:
    """One column of a row: how it is labelled, its driver, and its variant."""

    twin: str
    driver: Driver
    variant: Variant


def _columns(
    drivers: Sequence[Driver], addresses: Sequence[str], config: Mapping[str, Any]
) -> list[_Column]:
    """Native grpcio (through the first driver, the sync one), then each twin."""
    addresses = tuple(addresses)
    native = Variant(label=_NATIVE, kind="native", addresses=addresses, config=config)
    columns = [_Column("-", drivers[0], native)]
    for driver in drivers:
        resilient = Variant(
            label=f"resilient {driver.name}", kind="resilient", addresses=addresses, config=config
        )
        columns.append(_Column(driver.name, driver, resilient))
    return columns


@contextlib.contextmanager
def _open(column: _Column, warm_calls: int) -> Iterator[Opened | str]:
    """The column's channel open and warm, or why it could not be opened."""
    try:
        opened = column.driver.open(column.variant, warm_calls=warm_calls)
    except ConfigError as error:
        yield f"config not accepted: {error}"
        return
    try:
        yield opened
    finally:
        column.driver.close(opened)


@dataclass(slots=True)
class _Measured:
    """One column's load and the server executions it caused."""

    load: Load
    attempts: int

    @property
    def made(self) -> int:
        return self.load.calls + self.load.errors

    @property
    def success(self) -> float:
        return 100.0 * self.load.calls / self.made if self.made else math.nan

    @property
    def attempts_per_call(self) -> float:
        return ratio(self.attempts, self.made)

    @property
    def p99(self) -> float:
        """p99 over every call, failed ones included (their time to fail)."""
        return summarize([*self.load.latencies, *self.load.error_latencies]).p99


def _measure_columns(
    columns: Sequence[_Column],
    fleet: Fleet,
    budget: RetryBudget,
    *,
    calls: int,
    faults: Callable[[], None],
) -> list[tuple[_Column, _Measured | str]]:
    """Each column in turn: open on a healthy fleet, inject ``faults``, measure, reset."""
    results: list[tuple[_Column, _Measured | str]] = []
    for column in columns:
        fleet.reset()
        with _open(column, budget.warm_calls) as opened:
            if isinstance(opened, str):
                results.append((column, opened))
                continue
            faults()
            before = fleet.calls()
            load = column.driver.concurrent(
                opened, concurrency=budget.concurrency, calls=calls, seconds=budget.seconds
            )
            results.append((column, _Measured(load, fleet.calls() - before)))
        fleet.reset()
    return results


def _row(
    scenario: str,
    column: _Column,
    subject: str,
    value: float,
    *,
    unit: str,
    goal: Goal | None = None,
    context: str = "",
) -> Row:
    return Row(
        scenario=scenario,
        twin=column.twin,
        subject=f"{column.variant.label}: {subject}",
        value=value,
        goal=None if column.twin == "-" else goal,
        unit=unit,
        context=context,
    )


def _not_measured(scenario: str, column: _Column, subject: str, why: str) -> Row:
    return _row(scenario, column, subject, math.nan, unit="x", context=why)


def _tally(measured: _Measured) -> str:
    return (
        f"{measured.made} calls, {measured.load.errors} failed, "
        f"{measured.attempts} server executions"
    )


# ------------------------------------------------------------------ rows


def one_flaky(
    drivers: Sequence[Driver], fleet: Fleet, budget: RetryBudget, *, scenario: str = "9a"
) -> list[Row]:
    """9a: one of 3 backends fails 30 % UNAVAILABLE; success rate, attempts per call."""
    scenario = f"{scenario} one of 3 fails {FLAKY_RATE:.0%}"
    columns = _columns(drivers, fleet.addresses, method_config(RETRY_POLICY))
    flaky = fleet.names[0]
    results = _measure_columns(
        columns,
        fleet,
        budget,
        calls=budget.calls,
        faults=lambda: fleet.configure({flaky: {"error_rate": FLAKY_RATE}}),
    )
    rows = []
    for column, measured in results:
        if isinstance(measured, str):
            rows.append(_not_measured(scenario, column, "success rate", measured))
            continue
        rows.append(
            _row(
                scenario,
                column,
                "success rate",
                measured.success,
                unit="%",
                goal=FAILOVER_GOAL,
                context=_tally(measured),
            )
        )
        rows.append(
            _row(
                scenario,
                column,
                "server attempts per call",
                measured.attempts_per_call,
                unit="attempts/call",
            )
        )
    return rows


def outage(
    drivers: Sequence[Driver], fleet: Fleet, budget: RetryBudget, *, scenario: str = "9b"
) -> list[Row]:
    """9b: every backend fails; attempts per call without a budget and with each budget."""
    scenario = f"{scenario} total outage"
    configs = (
        ("no budget", method_config(RETRY_POLICY), None),
        ("retryThrottling", method_config(RETRY_POLICY, retryThrottling=THROTTLING), OUTAGE_GOAL),
        ("retryBudget", method_config(RETRY_POLICY, retryBudget=RATIO_BUDGET), OUTAGE_GOAL),
    )
    calls = min(budget.fault_calls, budget.calls)
    everyone = {name: {"error_rate": 1.0} for name in fleet.names}
    rows = []
    for what, config, goal in configs:
        results = _measure_columns(
            _columns(drivers, fleet.addresses, config),
            fleet,
            budget,
            calls=calls,
            faults=lambda: fleet.configure(everyone),
        )
        subject = f"attempts per call, {what}"
        for column, measured in results:
            if isinstance(measured, str):
                rows.append(_not_measured(scenario, column, subject, measured))
                continue
            rows.append(
                _row(
                    scenario,
                    column,
                    subject,
                    measured.attempts_per_call,
                    unit="attempts/call",
                    goal=goal,
                    context=_tally(measured),
                )
            )
    return rows


def hung_backend(
    drivers: Sequence[Driver], budget: RetryBudget, *, scenario: str = "9c"
) -> list[Row]:
    """9c: one of 3 child-process backends SIGSTOPped; perAttemptRecvTimeout 100 ms."""
    scenario = f"{scenario} one of 3 hung (SIGSTOP)"
    calls = min(budget.fault_calls, budget.calls)
    rows = []
    with Fleet(_NAMES, mode="process") as fleet:
        hung = fleet.processes[0]
        columns = _columns(drivers, fleet.addresses, method_config(HUNG_RETRY_POLICY))
        for column in columns:
            with _open(column, budget.warm_calls) as opened:
                if isinstance(opened, str):
                    rows.append(_not_measured(scenario, column, "client-visible errors", opened))
                    continue
                hung.pause()
                try:
                    load = column.driver.concurrent(
                        opened,
                        concurrency=budget.concurrency,
                        calls=calls,
                        seconds=budget.seconds,
                        timeout=HUNG_DEADLINE,
                    )
                finally:
                    hung.resume()
            measured = _Measured(load, 0)
            context = (
                f"{measured.made} calls with a {HUNG_DEADLINE:g} s deadline; "
                f"p50 {summarize(load.latencies).p50 * 1e3:.2f} ms of the successful"
            )
            rows.append(
                _row(
                    scenario,
                    column,
                    "client-visible errors",
                    float(load.errors),
                    unit="errors",
                    goal=HUNG_ERRORS_GOAL,
                    context=context,
                )
            )
            rows.append(_row(scenario, column, "p99", measured.p99 * 1e3, unit="ms"))
    return rows


def hedging(
    drivers: Sequence[Driver], fleet: Fleet, budget: RetryBudget, *, scenario: str = "9d"
) -> list[Row]:
    """9d: one backend stalls 200 ms on 5 % of calls; p99 with hedging against native."""
    scenario = f"{scenario} {STALL_RATE:.0%} stalls of {STALL_SECONDS * 1e3:g} ms on one"
    calls = min(budget.fault_calls, budget.calls)
    staller = fleet.names[0]
    stalls = {staller: {"stall_rate": STALL_RATE, "stall_seconds": STALL_SECONDS}}
    configs = (
        ("hedgingDelay 20 ms", method_config(HEDGING, hedged=True)),
        ("hedgingDelayPercentile 95", method_config(HEDGING_PERCENTILE, hedged=True)),
    )
    rows = []
    for what, config in configs:
        results = _measure_columns(
            _columns(drivers, fleet.addresses, config),
            fleet,
            budget,
            calls=calls,
            faults=lambda: fleet.configure(stalls),
        )
        native = next((m for c, m in results if c.twin == "-" and not isinstance(m, str)), None)
        for column, measured in results:
            subject = f"p99, {what}" + (" (grpcio ignores hedging)" if column.twin == "-" else "")
            if isinstance(measured, str):
                rows.append(_not_measured(scenario, column, subject, measured))
                continue
            context = f"{_tally(measured)}; p99 {measured.p99 * 1e3:.2f} ms"
            if column.twin == "-" or native is None:
                rows.append(_row(scenario, column, subject, measured.p99 * 1e3, unit="ms"))
            else:
                rows.append(
                    _row(
                        scenario,
                        column,
                        f"{subject} / native p99",
                        ratio(measured.p99, native.p99),
                        unit="x",
                        context=context,
                    )
                )
    return rows


def first_attempt(
    drivers: Sequence[Driver], address: str, budget: RetryBudget, *, scenario: str = "9e"
) -> list[Row]:
    """9e: sequential calls that all succeed, a retryPolicy configured, against plain grpcio.

    Interleaved rounds per twin, as the latency scenario: plain (grpcio, or grpc.aio for
    the asyncio twin), the ResilientChannel with the retryPolicy, and (sync only) grpcio
    with the same retryPolicy as a reference.
    """
    scenario = f"{scenario} first attempt succeeds"
    config = method_config(RETRY_POLICY)
    rounds = max(1, budget.latency_rounds)
    batch = max(1, min(budget.latency_calls, budget.calls) // rounds)
    seconds = budget.seconds / rounds
    rows: list[Row] = []
    for index, driver in enumerate(drivers):
        plain = Variant(label="plain", kind="plain", addresses=(address,))
        ours = Variant(label="resilient", kind="resilient", addresses=(address,), config=config)
        variants = [plain, ours]
        if index == 0:
            variants.append(
                Variant(label=_NATIVE, kind="native", addresses=(address,), config=config)
            )
        goal = LATENCY_GOAL_AIO if driver.name == "aio" else LATENCY_GOAL_SYNC
        try:
            with opened_variants(driver, variants, budget.warm_calls) as opened:
                measure = functools.partial(driver.sequential, calls=batch, seconds=seconds)
                loads = interleaved(opened, rounds, measure)
        except ConfigError as error:
            column = _Column(driver.name, driver, ours)
            rows.append(
                _not_measured(scenario, column, "p50 / plain", f"config not accepted: {error}")
            )
            continue
        stats = {label: summarize(merge(parts).latencies) for label, parts in loads.items()}
        for variant in variants[1:]:
            twin = "-" if variant.label == _NATIVE else driver.name
            for which in ("p50", "mean"):
                mine, base = getattr(stats[variant.label], which), getattr(stats["plain"], which)
                rows.append(
                    Row(
                        scenario=scenario,
                        twin=twin,
                        subject=f"{variant.label} with retryPolicy / plain, {which}",
                        value=ratio(mine, base),
                        goal=None if twin == "-" else goal,
                        context=f"{which} {mine * 1e3:.3f} vs {base * 1e3:.3f} ms; "
                        f"{stats['plain'].count} calls each",
                    )
                )
    return rows


def retry_rows(
    drivers: Sequence[Driver],
    budget: RetryBudget,
    *,
    mode: BackendMode = "process",
    progress: Callable[[str], None] = lambda what: None,
) -> list[Row]:
    """Rows 9a-9e, each twin in ``drivers`` (the sync one first) next to native grpcio."""
    rows: list[Row] = []
    with Fleet(_NAMES, mode=mode) as fleet:
        progress("retries 9a: one of 3 backends fails 30 %")
        rows += one_flaky(drivers, fleet, budget)
        progress("retries 9b: total outage, with and without budgets")
        rows += outage(drivers, fleet, budget)
        progress("retries 9d: stalls and hedging")
        rows += hedging(drivers, fleet, budget)
        progress("retries 9e: first-attempt success against plain grpcio")
        rows += first_attempt(drivers, fleet.addresses[1], budget)
    progress("retries 9c: one backend hung (SIGSTOP), per-attempt timeout")
    rows += hung_backend(drivers, budget)
    return sorted(rows, key=lambda row: row.scenario.split()[0])  # stable: 9a, 9b, ...
