"""Smoke test of the tracing benchmark (issue 10): its table's shape, nothing about timing.

The benchmark is not part of the suite's pass/fail, so nothing here asserts a ratio or
that a goal is met. It runs the scenario once with tiny counts and checks that each
variant has its p50 and mean rows against plain grpcio with the documented goals, and
that the traced variant really traced: the receiver got one attempt span per traced call.
"""

from __future__ import annotations

import math

from resilientrpc.bench import build_parser
from resilientrpc.bench.network import LATENCY_GOAL_SYNC, NetworkBudget
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


def test_tracing_rows_have_every_variant_and_the_spans_arrive() -> None:
    rows = tracing_rows(TINY, mode="inproc")

    assert {row.scenario for row in rows} == {"10 tracing"}
    assert {row.twin for row in rows} == {"sync"}
    goals = {row.subject: row.goal for row in rows}
    assert goals == {
        "no tracer / plain, p50": LATENCY_GOAL_SYNC,
        "no tracer / plain, mean": LATENCY_GOAL_SYNC,
        "traced / plain, p50": TRACED_GOAL,
        "traced / plain, mean": TRACED_GOAL,
        "one span / plain, p50": None,
        "one span / plain, mean": None,
        "attempt spans received per traced call": None,
    }
    for row in rows:
        assert math.isfinite(row.value) and row.value > 0, row
        assert "calls failed" not in row.context, row
    (spans,) = [row for row in rows if row.subject.startswith("attempt spans")]
    # Every traced call (10 warm-up + 2 rounds of 20) sent one attempt span that arrived.
    assert spans.value == 1.0, spans
    assert "50 traced calls" in spans.context, spans


def test_the_tracing_scenario_is_on_the_command_line() -> None:
    args = build_parser().parse_args(["--scenario", "tracing"])
    assert args.scenario == ["tracing"]
    help_text = " ".join(build_parser().format_help().split())
    assert "with tracing on" in help_text and str(TRACED_GOAL) in help_text
