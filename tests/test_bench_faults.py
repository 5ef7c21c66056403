"""Smoke test of the fault-detection benchmark (``--scenario faults``): tiny runs, sane rows.

The benchmark informs and is no test, so nothing here asserts a timing or a verdict:
each row family runs end to end with tiny budgets and in-process backends, and its rows
are checked for shape (scenario, twin, unit, goal) and for being read correctly from a
call log where the answer is known (hand-made logs).
"""

from __future__ import annotations

import math

import grpc

from resilientrpc.bench.drivers import SyncDriver
from resilientrpc.bench.events import PLAIN_CONFIG, CallRecord, EventRun, run_events
from resilientrpc.bench.faults import (
    FAST_FAIL_SHARE_GOAL,
    FLOOR_P99_GOAL,
    FaultBudget,
    fast_failing,
    flip_rows,
    hang_rows,
    kill_rows,
    slow_floor,
)
from resilientrpc.bench.footprint import THREADS_GOAL, footprint_rows, measure_footprint
from resilientrpc.bench.report import text_table
from resilientrpc.testing import start_backends

TINY = FaultBudget(after_seconds=0.1, flip_seconds=0.1, strategy_seconds=0.3, strategy_calls=200)
OK = grpc.StatusCode.OK


def _call(start: float, backend: str | None, code: grpc.StatusCode = OK) -> CallRecord:
    return CallRecord(start, start + 0.001, backend, code)


def test_hand_made_logs_are_read_as_documented() -> None:
    hung = EventRun(
        "native",
        (
            *(_call(0.2 + i * 0.01, "f2") for i in range(80)),  # 100 calls/s before
            _call(1.1, None, grpc.StatusCode.DEADLINE_EXCEEDED),  # to the hung one
            _call(1.3, "f1"),  # served by it, the last new call to it
            *(_call(3.0 + i * 0.02, "f2") for i in range(50)),  # 50 calls/s after
        ),
        {"sigstop": 1.0},
        4.0,
        {},
    )
    isolation, throughput = hang_rows(hung)
    assert isolation.value == 1.3 - 1.0 and isolation.unit == "s" and isolation.twin == "-"
    assert throughput.value == 0.5 and "1 of 52 calls after the event failed" in throughput.context

    dead = EventRun(
        "sync",
        (_call(0.5, "f1"), _call(1.05, None, grpc.StatusCode.UNAVAILABLE), _call(1.1, "f2")),
        {"kill": 1.0},
        3.0,
        PLAIN_CONFIG,
    )
    gone, errors = kill_rows(dead)
    assert math.isclose(gone.value, 0.05) and errors.value == 1.0
    assert "no healthCheckConfig" in gone.subject and gone.twin == "sync"

    flip = EventRun(
        "aio",
        (_call(1.01, "f1"), _call(1.5, "f1"), _call(1.6, "f2"), _call(2.25, "f1")),
        {"not_serving": 1.0, "serving": 2.0},
        3.0,
        {},
    )
    late, readmitted = flip_rows(flip)
    assert late.value == 1.0 and late.verdict == "MISS"  # the 1.5 s call; 1.01 s is in grace
    assert math.isclose(readmitted.value, 0.25)


def test_event_run_logs_every_call_and_when_events_were_sent() -> None:
    with start_backends(3, names=["f1", "f2", "f3"]) as backends:
        backend = backends[0]
        run = run_events(
            "sync",
            backends.addresses,
            [
                (0.1, "not_serving", lambda: backend.configure(health="NOT_SERVING")),
                (0.2, "serving", lambda: backend.configure(health="SERVING")),
            ],
            0.3,
            health=False,
        )
    assert run.config is PLAIN_CONFIG and set(run.events) == {"not_serving", "serving"}
    assert 0.1 <= run.events["not_serving"] < run.events["serving"] < 0.3 + 0.5
    assert run.records and all(r.start <= r.end for r in run.records)
    assert {r.backend for r in run.records} == {"f1", "f2", "f3"}
    rows = flip_rows(run)
    assert [row.scenario for row in rows] == ["6c NOT_SERVING, SERVING"] * 2
    assert len(text_table(rows).splitlines()) == 4


def test_fast_failing_and_slow_rows_are_produced() -> None:
    driver = SyncDriver(seed=3)
    rows = fast_failing(driver, TINY, mode="inproc") + slow_floor(driver, TINY, mode="inproc")
    assert [(row.scenario, row.goal) for row in rows] == [
        ("6d fast-failing backend", FAST_FAIL_SHARE_GOAL),
        ("6d fast-failing backend", FAST_FAIL_SHARE_GOAL),
        ("6e slow backend", FLOOR_P99_GOAL),
    ]
    for row in rows[:2]:
        assert row.unit == "%" and 0 <= row.value <= 100 and "attempts" in row.context
    assert rows[2].value > 0 and "slow backend served" in rows[2].context


def test_footprint_rows_are_produced() -> None:
    results = measure_footprint(["native", "sync"], (2,))
    assert [(r.variant, r.size, r.connected) for r in results] == [
        ("native", 2, True),
        ("sync", 2, True),
    ]
    rows = footprint_rows(results)
    assert [row.unit for row in rows] == ["threads", "KiB", "fds"] * 2
    assert rows[3].goal == THREADS_GOAL and rows[0].goal is None
    assert all(row.value >= 0 for row in rows[2::3])
