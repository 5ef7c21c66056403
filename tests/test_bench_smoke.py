"""Smoke test of the benchmark: the pick-cost scenario runs and returns sane structures.

The benchmark is not part of the suite's pass/fail, so nothing here asserts a timing or
that a goal is met; only that the scenario runs end to end with tiny counts, that its
results cover what was asked for, and that its rows are the ratios of the figures they
show, judged against the goal (checked on hand-made figures, where the verdict is known);
and that its command line rejects impossible budgets and its help says what it runs.
"""

from __future__ import annotations

import math

import pytest

from resilientrpc.bench import build_parser, measure_pick_cost, pick_cost_rows
from resilientrpc.bench.network import (
    LATENCY_GOAL_AIO,
    LATENCY_GOAL_SYNC,
    PEAK_EWMA_P99_GOAL,
    THROUGHPUT_GOAL,
)
from resilientrpc.bench.pick_cost import PICK_COST_GOAL, PICK_COST_POLICIES, PickCost
from resilientrpc.bench.report import markdown_table, text_table
from resilientrpc.bench.runner import (
    FULL_BUDGET,
    FULL_PICKS,
    QUICK_BUDGET,
    QUICK_PICKS,
    SCENARIOS,
    SLOW_LATENCY,
)

SIZES = (2, 5)


def test_pick_cost_measures_every_policy_at_every_size() -> None:
    results = measure_pick_cost(sizes=SIZES, picks=20, rounds=2, rebuilds=1)

    assert [(r.policy, r.size) for r in results] == [
        (policy, size) for policy in PICK_COST_POLICIES for size in SIZES
    ]
    for result in results:
        assert math.isfinite(result.per_pick) and result.per_pick > 0
        assert math.isfinite(result.rebuild) and result.rebuild > 0  # a rebuild was timed
        assert result.rounds == 2


def test_pick_cost_measures_only_what_it_is_asked_for() -> None:
    results = measure_pick_cost(policies=["ring_hash"], sizes=(3,), picks=5, rounds=1, rebuilds=1)
    assert [(r.policy, r.size, r.rounds) for r in results] == [("ring_hash", 3, 1)]
    for bad in ({"sizes": ()}, {"sizes": (0, 2)}, {"picks": 0}, {"rounds": 0}, {"rebuilds": 0}):
        with pytest.raises(ValueError):
            measure_pick_cost(**bad)
    with pytest.raises(ValueError, match="no_such_policy"):
        measure_pick_cost(policies=["no_such_policy"], sizes=(2,), picks=1, rounds=1)


def test_pick_cost_rows_are_ratios_of_the_measured_figures() -> None:
    results = measure_pick_cost(sizes=SIZES, picks=20, rounds=2, rebuilds=1)
    rows = pick_cost_rows(results)
    cost = {(r.policy, r.size): r for r in results}

    # Per policy, in order: the pick ratio 5 / 2 (judged) and the rebuild ratio (info).
    assert [row.subject for row in rows] == [
        subject
        for policy in PICK_COST_POLICIES
        for subject in (
            f"{policy} pick, 5 / 2 endpoints",
            f"{policy} picker rebuild, 5 / 2 (info)",
        )
    ]
    for pick_row, rebuild_row, policy in zip(
        rows[::2], rows[1::2], PICK_COST_POLICIES, strict=True
    ):
        small, large = cost[(policy, 2)], cost[(policy, 5)]
        assert pick_row.goal == PICK_COST_GOAL
        assert pick_row.value == large.per_pick / small.per_pick
        assert pick_row.verdict == ("PASS" if pick_row.value <= PICK_COST_GOAL.limit else "MISS")
        assert pick_row.context == (
            f"{small.per_pick * 1e6:.2f} / {large.per_pick * 1e6:.2f} us per pick+done "
            "at 2/5 endpoints"
        )
        assert rebuild_row.goal is None and rebuild_row.verdict == "info"
        assert rebuild_row.value == large.rebuild / small.rebuild
        assert rebuild_row.context == (
            f"{small.rebuild * 1e3:.3f} / {large.rebuild * 1e3:.3f} ms per rebuild at 2/5 endpoints"
        )

    table = text_table(rows).splitlines()
    assert len(table) == len(rows) + 2  # header and rule
    for line, row in zip(table[2:], rows, strict=True):
        assert row.subject in line and row.shown_value in line and row.verdict in line
    assert len(markdown_table(rows).splitlines()) == len(rows) + 2


def test_pick_cost_rows_judge_each_size_against_the_smallest() -> None:
    def figures(size: int, per_pick_us: float, rebuild_ms: float) -> PickCost:
        return PickCost(
            policy="round_robin",
            size=size,
            per_pick=per_pick_us * 1e-6,
            rebuild=rebuild_ms * 1e-3,
            rounds=3,
        )

    # Out of order on purpose: rows are per size, ascending, each over the smallest.
    rows = pick_cost_rows([figures(1000, 1.5, 8.0), figures(10, 1.0, 0.5), figures(100, 1.1, 1.0)])

    assert [(row.subject, row.verdict) for row in rows] == [
        ("round_robin pick, 100 / 10 endpoints", "PASS"),
        ("round_robin pick, 1000 / 10 endpoints", "MISS"),
        ("round_robin picker rebuild, 1000 / 10 (info)", "info"),
    ]
    assert [row.value for row in rows] == pytest.approx([1.1, 1.5, 16.0])
    assert [row.shown_value for row in rows] == ["1.10x", "1.50x", "16.00x"]
    context = "1.00 / 1.10 / 1.50 us per pick+done at 10/100/1000 endpoints"
    assert [row.context for row in rows] == [
        context,
        context,
        "0.500 / 1.000 / 8.000 ms per rebuild at 10/100/1000 endpoints",
    ]


def test_command_line_accepts_the_documented_options() -> None:
    args = build_parser().parse_args(
        ["--quick", "--calls", "100", "--seconds", "1.5", "--twin", "sync", "--scenario", "pick"]
    )

    assert (args.quick, args.calls, args.seconds, args.twin) == (True, 100, 1.5, "sync")
    assert args.scenario == ["pick"]


@pytest.mark.parametrize(
    "argv", [["--calls", "0"], ["--calls", "lots"], ["--seconds", "0"], ["--seconds", "inf"]]
)
def test_command_line_rejects_out_of_range_budgets(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert f"argument {argv[0]}: " in capsys.readouterr().err


def test_help_describes_what_bench_runs() -> None:
    help_text = " ".join(build_parser().format_help().split())
    for scenario in SCENARIOS:
        assert f" {scenario} " in help_text
    assert f"plain grpc channel; goal {LATENCY_GOAL_SYNC}" in help_text
    assert f"the asyncio twin against grpc.aio: {LATENCY_GOAL_AIO}" in help_text
    assert f"native round_robin; goal {THROUGHPUT_GOAL}" in help_text
    assert f"goal: peak_ewma {PEAK_EWMA_P99_GOAL}" in help_text
    assert f"each size over the smallest {PICK_COST_GOAL}" in help_text
    assert f"{SLOW_LATENCY * 1000:g} ms slow" in help_text
    for budget, picks in ((FULL_BUDGET, FULL_PICKS), (QUICK_BUDGET, QUICK_PICKS)):
        assert f"latency {budget.latency_calls} calls / {budget.latency_seconds:g} s" in help_text
        assert f"pick {picks[0]} picks x {picks[1]} rounds" in help_text
    assert f"(default: {FULL_BUDGET.latency_calls}; {QUICK_BUDGET.latency_calls} with --quick)" in (
        help_text
    )
    assert "does not exist" not in help_text  # the asyncio twin does
