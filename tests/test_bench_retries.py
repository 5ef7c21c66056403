"""Smoke test of the retries benchmark (issue 9): its table's shape, and native's sanity.

The benchmark is not part of the suite's pass/fail, so nothing here asserts a timing or
that a resilientrpc goal is met. It runs every row once with tiny counts and checks that
each row has its three columns (native grpcio, the sync twin, the asyncio twin), that a
column either measured something or says why not, and that grpcio's native figures are
what its documented behaviour implies: it retries under the retryPolicy (more server
executions than calls), three executions per call in a total outage, fewer with
retryThrottling, and a hung backend costs it whole deadlines.
"""

from __future__ import annotations

import collections
import math

from resilientrpc.bench import build_parser
from resilientrpc.bench.aio_driver import AioDriver, aio_twin_available
from resilientrpc.bench.drivers import Driver, SyncDriver
from resilientrpc.bench.results import Row
from resilientrpc.bench.retries import (
    FULL_RETRY_BUDGET,
    HUNG_DEADLINE,
    RETRY_POLICY,
    RetryBudget,
    retry_rows,
)

TINY = RetryBudget(
    calls=160,
    seconds=10.0,
    fault_calls=48,
    concurrency=8,
    latency_rounds=2,
    latency_calls=40,
    warm_calls=10,
)


def _value(rows: list[Row], scenario: str, twin: str, subject: str) -> float:
    (row,) = [
        r
        for r in rows
        if r.scenario.startswith(scenario) and r.twin == twin and subject in r.subject
    ]
    return row.value


def test_retry_rows_have_every_column_and_native_figures_are_sane() -> None:
    drivers: list[Driver] = [SyncDriver(seed=3)]
    if aio_twin_available():
        drivers.append(AioDriver(seed=4))
    try:
        rows = retry_rows(drivers, TINY, mode="inproc")
    finally:
        for driver in drivers:
            driver.shutdown()
    twins = ["-", *(driver.name for driver in drivers)]

    # Shape: every row of 9a-9d has one entry per column, in column order; 9e compares
    # each twin (and native, as a reference) with plain grpcio.
    by_scenario: dict[str, list[Row]] = collections.defaultdict(list)
    for row in rows:
        by_scenario[row.scenario.split()[0]].append(row)
    assert list(by_scenario) == ["9a", "9b", "9c", "9d", "9e"]
    per_column = {"9a": 2, "9b": 3, "9c": 2, "9d": 2}
    for scenario, count in per_column.items():
        seen = collections.Counter(row.twin for row in by_scenario[scenario])
        assert seen == dict.fromkeys(twins, count), (scenario, seen)
    assert {row.twin for row in by_scenario["9e"]} == set(twins)
    for row in rows:
        # A column measured something, or says why it could not.
        assert math.isfinite(row.value) or row.context.startswith("config not accepted"), row
        if row.twin == "-":
            assert row.verdict == "info", row  # native is the reference, never judged

    # Native grpcio honours the retryPolicy: more server executions than calls, and
    # (almost) every call succeeds although one backend fails 30 % of them.
    assert 1.0 < _value(rows, "9a", "-", "server attempts per call") < 1.5
    assert _value(rows, "9a", "-", "success rate") >= 95.0
    # Total outage: every attempt is made without a budget, the token bucket stops them.
    attempts = RETRY_POLICY["maxAttempts"]
    assert _value(rows, "9b", "-", "no budget") == attempts
    assert _value(rows, "9b", "-", "retryThrottling") <= 1.2
    # A hung backend costs native grpcio whole deadlines (no per-attempt timeout).
    assert _value(rows, "9c", "-", "client-visible errors") >= 1
    assert _value(rows, "9c", "-", "p99") >= HUNG_DEADLINE * 1e3 * 0.9
    # Native ignores hedging: its p99 is a positive time; 9e's ratios are positive.
    assert _value(rows, "9d", "-", "hedgingDelay 20 ms") > 0
    assert all(row.value > 0 for row in by_scenario["9e"])


def test_retries_is_a_scenario_of_the_command_line() -> None:
    args = build_parser().parse_args(["--scenario", "retries", "--calls", "500"])
    assert (args.scenario, args.calls) == (["retries"], 500)
    help_text = " ".join(build_parser().format_help().split())
    assert f"default {FULL_RETRY_BUDGET.calls:,}" in help_text
