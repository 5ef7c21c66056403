"""Smoke test of the tracing benchmark (issue 10): its table's shape, nothing about timing.

The benchmark is not part of the suite's pass/fail, so nothing here asserts a ratio or
that a goal is met. It runs the scenario once for both twins with tiny counts and checks
that each twin's variants have their p50 and mean rows against plain grpcio (grpc.aio
for the asyncio twin) with the documented goals, and that each twin's traced variant
really traced: its receiver got one attempt span per traced call of that twin - and none
from the sampled-out variant, which shares that receiver.
"""

from __future__ import annotations

import math

from resilientrpc.bench import build_parser
from resilientrpc.bench.aio_driver import AioDriver
from resilientrpc.bench.drivers import SyncDriver
from resilientrpc.bench.network import LATENCY_GOAL_AIO, LATENCY_GOAL_SYNC, NetworkBudget
from resilientrpc.bench.tracing import TRACED_GOAL, tracing_rows

TINY = NetworkBudget(
    latency_calls=40,
    latency_rounds=2,
    latency_seconds=4.0,
    throughput_seconds=1.0,
    throughput_slices=1,
    slow_seconds=1.0,
    slow_rounds=1,
    max_calls=100,
    warm_calls=10,
)


def test_tracing_rows_have_every_variant_of_both_twins_and_the_spans_arrive() -> None:
    drivers = [SyncDriver(seed=1), AioDriver(seed=2)]
    try:
        rows = tracing_rows(drivers, TINY, mode="inproc")
    finally:
        for driver in drivers:
            driver.shutdown()

    assert {row.scenario for row in rows} == {"10 tracing"}
    assert [row.twin for row in rows] == ["sync"] * 11 + ["aio"] * 11
    for twin, bare_goal in (("sync", LATENCY_GOAL_SYNC), ("aio", LATENCY_GOAL_AIO)):
        goals = {row.subject: row.goal for row in rows if row.twin == twin}
        assert goals == {
            "no tracer / plain, p50": bare_goal,
            "no tracer / plain, mean": bare_goal,
            "no-op provider / plain, p50": bare_goal,
            "no-op provider / plain, mean": bare_goal,
            "traced / plain, p50": TRACED_GOAL,
            "traced / plain, mean": TRACED_GOAL,
            "sampled out / plain, p50": None,
            "sampled out / plain, mean": None,
            "one span / plain, p50": None,
            "one span / plain, mean": None,
            "attempt spans received per traced call": None,
        }, twin
    for row in rows:
        assert math.isfinite(row.value) and row.value > 0, row
        assert "calls failed" not in row.context, row
    spans = [row for row in rows if row.subject.startswith("attempt spans")]
    assert [row.twin for row in spans] == ["sync", "aio"]
    for row in spans:
        # Every traced call of the twin (12 warm-up: 4 callers x 3, then 2 rounds of 20)
        # sent one attempt span that reached that twin's receiver, and nothing else did:
        # not one of the sampled-out variant's as many calls.
        assert row.value == 1.0, row
        assert row.context.startswith("52 attempt spans"), row
        assert "for 52 traced calls" in row.context, row


def test_the_tracing_scenario_is_on_the_command_line() -> None:
    args = build_parser().parse_args(["--scenario", "tracing"])
    assert args.scenario == ["tracing"]
    help_text = " ".join(build_parser().format_help().split())
    assert "with tracing on" in help_text and str(TRACED_GOAL) in help_text
