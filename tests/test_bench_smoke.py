"""Smoke test of the benchmark: the pick-cost scenario runs and returns sane structures.

The benchmark is not part of the suite's pass/fail, so nothing here asserts a timing or
a verdict; only that the scenario runs end to end with tiny counts and that its results
and rows are well formed.
"""

from __future__ import annotations

import math

from resilientrpc.bench import build_parser, measure_pick_cost, pick_cost_rows
from resilientrpc.bench.pick_cost import PICK_COST_GOAL, PICK_COST_POLICIES
from resilientrpc.bench.report import markdown_table, text_table

SIZES = (2, 5)


def test_pick_cost_measures_every_policy_at_every_size() -> None:
    results = measure_pick_cost(sizes=SIZES, picks=20, rounds=2, rebuilds=1)

    assert [(r.policy, r.size) for r in results] == [
        (policy, size) for policy in PICK_COST_POLICIES for size in SIZES
    ]
    for result in results:
        assert math.isfinite(result.per_pick) and result.per_pick > 0
        assert math.isfinite(result.rebuild) and result.rebuild >= 0
        assert result.rounds == 2


def test_pick_cost_rows_are_ratios_judged_against_the_goal() -> None:
    rows = pick_cost_rows(measure_pick_cost(sizes=SIZES, picks=20, rounds=2, rebuilds=1))

    # Per policy: the pick ratio 5 / 2 (judged) and the rebuild ratio (information).
    assert len(rows) == 2 * len(PICK_COST_POLICIES)
    judged = [row for row in rows if row.goal is not None]
    assert len(judged) == len(PICK_COST_POLICIES)
    for row in judged:
        assert row.goal == PICK_COST_GOAL
        assert row.verdict in ("PASS", "MISS")
        assert row.value > 0 and math.isfinite(row.value)
        assert "5 / 2 endpoints" in row.subject
    assert {row.verdict for row in rows if row.goal is None} == {"info"}

    table = text_table(rows)
    for policy in PICK_COST_POLICIES:
        assert policy in table
    assert len(markdown_table(rows).splitlines()) == len(rows) + 2


def test_command_line_accepts_the_documented_options() -> None:
    args = build_parser().parse_args(
        ["--quick", "--calls", "100", "--seconds", "1.5", "--twin", "sync", "--scenario", "pick"]
    )

    assert (args.quick, args.calls, args.seconds, args.twin) == (True, 100, 1.5, "sync")
    assert args.scenario == ["pick"]
