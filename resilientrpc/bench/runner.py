"""The benchmark's command line: which scenarios run, on which twins, with what budget.

``main`` parses the options, starts the backends once per run (an even fleet of three
and one with a slow first backend), runs the scenarios twin by twin, prints one table
of ratios and optionally writes it as markdown. It returns 0 whether goals are met or
missed: the benchmark informs, it is no test; a scenario that cannot run at all is
reported and makes it return 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from resilientrpc._argtypes import add_bounded
from resilientrpc.bench import network
from resilientrpc.bench.aio_driver import AioDriver, aio_twin_available
from resilientrpc.bench.drivers import Driver, SyncDriver
from resilientrpc.bench.faults import (
    FULL_FAULTS,
    QUICK_FAULTS,
    event_rows,
    fast_failing,
    measure_events,
    slow_floor,
)
from resilientrpc.bench.fleet import BACKEND_MODES, BackendMode, Fleet
from resilientrpc.bench.footprint import (
    FOOTPRINT_SIZES,
    QUICK_FOOTPRINT_SIZES,
    footprint_rows,
    measure_footprint,
)
from resilientrpc.bench.pick_cost import (
    DEFAULT_SIZES,
    PICK_COST_GOAL,
    measure_pick_cost,
    pick_cost_rows,
)
from resilientrpc.bench.report import markdown_document, text_table
from resilientrpc.bench.results import Row
from resilientrpc.bench.retries import FULL_RETRY_BUDGET, QUICK_RETRY_BUDGET, retry_rows
from resilientrpc.bench.tracing import TRACED_GOAL, tracing_rows
from resilientrpc.testing import Faults

__all__ = [
    "DEFAULT_SCENARIOS",
    "FULL_BUDGET",
    "FULL_PICKS",
    "QUICK_BUDGET",
    "QUICK_PICKS",
    "SCENARIOS",
    "SLOW_LATENCY",
    "TWINS",
    "build_parser",
    "main",
]

SCENARIOS = ("latency", "throughput", "slow", "pick", "faults", "retries", "tracing")
#: What runs without --scenario: all but the fault, retry and tracing scenarios.
DEFAULT_SCENARIOS = ("latency", "throughput", "slow", "pick")
TWINS = ("sync", "aio", "both")
#: Extra latency of the slow backend in scenario 3, seconds.
SLOW_LATENCY = 0.02

FULL_BUDGET = network.NetworkBudget(
    latency_calls=3000,
    latency_rounds=30,
    latency_seconds=15.0,
    throughput_seconds=8.0,
    throughput_slices=8,
    slow_seconds=3.0,
    slow_rounds=3,
    max_calls=100_000,
    warm_calls=200,
)
QUICK_BUDGET = network.NetworkBudget(
    latency_calls=600,
    latency_rounds=12,
    latency_seconds=4.0,
    throughput_seconds=2.0,
    throughput_slices=4,
    slow_seconds=1.0,
    slow_rounds=2,
    max_calls=30_000,
    warm_calls=100,
)
#: (picks per timing, rounds) of the pick-cost scenario.
FULL_PICKS = (2000, 15)
QUICK_PICKS = (1000, 7)

_EVEN_NAMES = ("b1", "b2", "b3")
_SLOW_NAMES = ("slow", "fast1", "fast2")


def _epilog() -> str:
    """What each scenario compares and its goal, and the two budgets, from the constants."""
    sizes = ", ".join(str(size) for size in DEFAULT_SIZES)
    lines = [
        "scenarios (--scenario; every loop bounded in calls and in time):",
        "  latency     sequential unary calls: ResilientChannel (round_robin over 1 and 3",
        f"              backends) against a plain grpc channel; goal {network.LATENCY_GOAL_SYNC}",
        f"              (the asyncio twin against grpc.aio: {network.LATENCY_GOAL_AIO})",
        f"  throughput  {SyncDriver.throughput_concurrency} threads (asyncio: "
        f"{AioDriver.throughput_concurrency} concurrent calls) over 3 backends against",
        f"              grpcio's native round_robin; goal {network.THROUGHPUT_GOAL}",
        f"  slow        one of 3 backends {SLOW_LATENCY * 1000:g} ms slow: each strategy's p99 "
        "and slow-backend share",
        "              against native round_robin's p99; goal: peak_ewma "
        f"{network.PEAK_EWMA_P99_GOAL}",
        f"  pick        cost of picker.pick() + done() at {sizes} endpoints, no network;",
        f"              goal: each size over the smallest {PICK_COST_GOAL}; ignores --calls and",
        "              --seconds",
        "  faults      only when asked for (~3 min; ~1 min with --quick): with health checking,",
        "              vs grpcio's native round_robin + healthCheckConfig: one of 3 backends",
        "              SIGSTOPped, killed, NOT_SERVING then SERVING; a fast-failing and a slow",
        "              backend under least_request / peak_ewma; threads, memory and fds at",
        "              10, 100, 1000 endpoints (see docs/benchmarks.md); ignores --calls,",
        "              --seconds and --backends",
        "  retries     only when asked for (issue 9): grpcio's native retryPolicy, the sync and",
        "              the asyncio ResilientChannel with the same service config: one of 3",
        "              backends failing 30 % (success rate, server attempts per call; --calls",
        f"              calls, default {FULL_RETRY_BUDGET.calls:,}), a total outage with and",
        "              without retryThrottling / retryBudget, one backend SIGSTOPped with",
        "              perAttemptRecvTimeout, 5 % stalls of 200 ms with hedging, first-attempt",
        "              latency with a retryPolicy vs plain; --seconds bounds each column",
        f"              (default {FULL_RETRY_BUDGET.seconds:g} s)",
        "  tracing     only when asked for (issue 10; needs the otlp extra): per-call latency",
        "              against a plain channel (grpc.aio for the asyncio twin) of a",
        "              ResilientChannel without a tracer provider and with a no-op one",
        "              (goal: the latency one), with tracing on (every call sampled,",
        f"              batched, OTLP to a local receiver; goal {TRACED_GOAL}), with every",
        "              call sampled out (info) and of one hand-made span per call on a",
        "              plain channel (reference); the latency budget (--calls, --seconds)",
        "              applies",
        "",
        "budgets per measured variant:",
        f"  full run: {_describe(FULL_BUDGET, FULL_PICKS)}",
        f"  --quick:  {_describe(QUICK_BUDGET, QUICK_PICKS)}",
        "",
        "Values are ratios of variants measured side by side in this run (Verdict PASS or",
        "MISS against the goal). The exit status is 0 whether goals are met or missed, 1 if",
        "a scenario could not run.",
    ]
    return "\n".join(lines)


def _describe(budget: network.NetworkBudget, picks: tuple[int, int]) -> str:
    return (
        f"latency {budget.latency_calls} calls / {budget.latency_seconds:g} s, "
        f"throughput {budget.throughput_seconds:g} s, slow {budget.slow_seconds:g} s, "
        f"pick {picks[0]} picks x {picks[1]} rounds"
    )


def build_parser() -> argparse.ArgumentParser:
    """The options of ``resilientrpc bench`` / ``python -m resilientrpc.bench``."""
    parser = argparse.ArgumentParser(
        prog="resilientrpc bench",
        description=(
            "Compare resilientrpc's channels (the sync ResilientChannel and the asyncio\n"
            "twin) with plain grpcio and grpcio's native round_robin, side by side in one\n"
            "run, on 127.0.0.1. Results are ratios; a full run takes a few minutes."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run (about a minute), fewer samples, noisier",
    )
    add_bounded(
        parser,
        "--calls",
        int,
        1,
        1_000_000,
        metavar="N",
        help="calls per measured variant in the latency scenario, and the cap of calls per "
        f"variant in the concurrent ones (default: {FULL_BUDGET.latency_calls}; "
        f"{QUICK_BUDGET.latency_calls} with --quick); in the retries scenario the calls of "
        f"its first row (default: {FULL_RETRY_BUDGET.calls:,}; {QUICK_RETRY_BUDGET.calls:,} "
        "with --quick) and the cap of the others",
    )
    add_bounded(
        parser,
        "--seconds",
        float,
        0.0,
        600.0,
        unit="s",
        low_open=True,
        metavar="S",
        help="time budget in seconds per measured variant in each network scenario "
        f"(default: {FULL_BUDGET.latency_seconds:g} s latency, "
        f"{FULL_BUDGET.throughput_seconds:g} s throughput, {FULL_BUDGET.slow_seconds:g} s "
        "slow; less with --quick)",
    )
    parser.add_argument(
        "--twin",
        choices=TWINS,
        default="both",
        help="which channel to measure: the sync one, the asyncio one or both "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario; repeatable (default: all but faults, see below)",
    )
    parser.add_argument(
        "--backends",
        choices=BACKEND_MODES,
        default="process",
        help="run the backends in child processes, so the client keeps its GIL, or in "
        "this process (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="also write the table as a markdown report here (default: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the client's random keys and picks (default: %(default)s)",
    )
    return parser


def _budget(args: argparse.Namespace) -> network.NetworkBudget:
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    if args.calls is not None:
        budget = dataclasses.replace(budget, latency_calls=args.calls, max_calls=args.calls)
    if args.seconds is not None:
        budget = dataclasses.replace(
            budget,
            latency_seconds=args.seconds,
            throughput_seconds=args.seconds,
            slow_seconds=args.seconds,
        )
    return budget


class _Fleets:
    """The two backend fleets of a run, started on first use, stopped with the run."""

    def __init__(self, mode: BackendMode, stack: contextlib.ExitStack) -> None:
        self._mode = mode
        self._stack = stack
        self._even: Fleet | None = None
        self._slow: Fleet | None = None

    def even(self) -> Fleet:
        if self._even is None:
            self._even = self._stack.enter_context(Fleet(_EVEN_NAMES, mode=self._mode))
        return self._even

    def slow(self) -> Fleet:
        if self._slow is None:
            faults = {_SLOW_NAMES[0]: Faults(latency=SLOW_LATENCY)}
            self._slow = self._stack.enter_context(
                Fleet(_SLOW_NAMES, mode=self._mode, faults=faults)
            )
        return self._slow


class _Run:
    """The rows a run collected, the scenarios that failed, and progress on stderr.

    A scenario that raises is reported (traceback on stderr, a note in the markdown) and
    the run goes on with the next one, so one broken variant costs one scenario's rows.
    """

    def __init__(self) -> None:
        self._began = time.monotonic()
        self.rows: list[Row] = []
        self.failures: list[str] = []

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._began

    def progress(self, what: str) -> None:
        print(f"[{self.elapsed:6.1f} s] {what}", file=sys.stderr, flush=True)

    def scenario(self, what: str, measure: Callable[[], list[Row]]) -> None:
        self.progress(what)
        try:
            self.rows += measure()
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self.failures.append(f"{what} failed: {error!r}")


def _run_network(
    run: _Run,
    driver: Driver,
    scenarios: Sequence[str],
    fleets: _Fleets,
    budget: network.NetworkBudget,
) -> None:
    aio = driver.name == "aio"
    numbers = {"latency": "1", "throughput": "2", "slow": "3"}
    if aio:
        numbers = dict.fromkeys(numbers, "5")
    if "latency" in scenarios:
        goal = network.LATENCY_GOAL_AIO if aio else network.LATENCY_GOAL_SYNC
        run.scenario(
            f"latency ({driver.name})",
            lambda: network.latency(
                driver,
                fleets.even().addresses,
                budget,
                scenario=f"{numbers['latency']} latency",
                goal=goal,
            ),
        )
    if "throughput" in scenarios:
        run.scenario(
            f"throughput ({driver.name}, {driver.throughput_concurrency} concurrent)",
            lambda: network.throughput(
                driver,
                fleets.even().addresses,
                budget,
                scenario=f"{numbers['throughput']} throughput",
            ),
        )
    if "slow" in scenarios:
        run.scenario(
            f"slow backend ({driver.name})",
            lambda: network.slow_backend(
                driver,
                fleets.slow().addresses,
                fleets.slow().names,
                _SLOW_NAMES[0],
                budget,
                scenario=f"{numbers['slow']} slow backend",
            ),
        )


def _run_faults(run: _Run, twins: Sequence[str], args: argparse.Namespace) -> None:
    """The fault-detection scenarios (6a-6f), every twin next to native round_robin."""
    budget = QUICK_FAULTS if args.quick else FULL_FAULTS
    variants: list[Any] = ["native", *twins]
    run.scenario(
        "fault events: SIGSTOP, kill -9, NOT_SERVING (native, " + ", ".join(twins) + ")",
        lambda: event_rows(measure_events(variants, budget)),
    )
    for twin in twins:
        driver = _driver(twin, args.seed)
        try:
            run.scenario(
                f"fast-failing backend ({twin})",
                functools.partial(fast_failing, driver, budget, mode="process"),
            )
            run.scenario(
                f"slow backend vs floor ({twin})",
                functools.partial(slow_floor, driver, budget, mode="process"),
            )
        finally:
            driver.shutdown()
    sizes = QUICK_FOOTPRINT_SIZES if args.quick else FOOTPRINT_SIZES
    run.scenario(
        "footprint: threads, memory, fds per endpoint",
        lambda: footprint_rows(measure_footprint(variants, sizes)),
    )


def _run_retries(run: _Run, twins: Sequence[str], args: argparse.Namespace) -> None:
    """Rows 9a-9e: native grpcio retries next to each twin, one service config each."""
    budget = QUICK_RETRY_BUDGET if args.quick else FULL_RETRY_BUDGET
    if args.calls is not None:
        budget = dataclasses.replace(
            budget,
            calls=args.calls,
            fault_calls=min(budget.fault_calls, args.calls),
            latency_calls=min(budget.latency_calls, args.calls),
        )
    if args.seconds is not None:
        budget = dataclasses.replace(budget, seconds=args.seconds)
    drivers = [_driver(twin, args.seed) for twin in twins]
    try:
        run.scenario(
            "retries (native, " + ", ".join(twins) + ")",
            lambda: retry_rows(drivers, budget, mode=args.backends, progress=run.progress),
        )
    finally:
        for driver in drivers:
            driver.shutdown()


def _run_tracing(
    run: _Run, twins: Sequence[str], args: argparse.Namespace, budget: network.NetworkBudget
) -> None:
    """Issue 10's rows: what tracing costs a call, each twin against its plain channel."""
    drivers = [_driver(twin, args.seed) for twin in twins]
    try:
        run.scenario(
            "tracing (" + ", ".join(twins) + ")",
            lambda: tracing_rows(drivers, budget, mode=args.backends),
        )
    finally:
        for driver in drivers:
            driver.shutdown()


def _notes(
    args: argparse.Namespace, twins: Sequence[str], run: _Run, skipped_aio: bool
) -> list[str]:
    notes = [
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {platform.system()} {platform.machine()}",
        f"mode: {'quick' if args.quick else 'full'}; backends: {args.backends}; "
        f"twins: {', '.join(twins)}; the run took {run.elapsed:.0f} s",
        "values are ratios of variants measured side by side in this run; "
        "absolute figures in Context are for reading the ratios only",
    ]
    if skipped_aio:
        notes.append("the asyncio twin (resilientrpc.aio) does not exist yet: scenario 5 skipped")
    notes += run.failures
    return notes


def _driver(twin: str, seed: int) -> Driver:
    return SyncDriver(seed=seed) if twin == "sync" else AioDriver(seed=seed + 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table.

    Returns 0 whether goals are met or missed, 1 if a scenario could not run, 2 if the
    asyncio twin was asked for and does not exist.
    """
    args = build_parser().parse_args(argv)
    budget = _budget(args)
    scenarios = tuple(args.scenario) if args.scenario else DEFAULT_SCENARIOS
    aio_available = aio_twin_available()
    if args.twin == "aio" and not aio_available:
        print("resilientrpc.aio is not available: cannot measure the aio twin", file=sys.stderr)
        return 2
    twins = ["sync"] if args.twin in ("sync", "both") else []
    if args.twin == "aio" or (args.twin == "both" and aio_available):
        twins.append("aio")
    skipped_aio = args.twin == "both" and not aio_available
    run = _Run()
    picks, rounds = QUICK_PICKS if args.quick else FULL_PICKS
    network_scenarios = [
        name for name in scenarios if name not in ("pick", "faults", "retries", "tracing")
    ]
    with contextlib.ExitStack() as stack:
        fleets = _Fleets(args.backends, stack)
        for index, twin in enumerate(twins):
            if network_scenarios:
                driver = _driver(twin, args.seed)
                try:
                    _run_network(run, driver, network_scenarios, fleets, budget)
                finally:
                    driver.shutdown()
            if index == 0 and "pick" in scenarios:  # once per run: it measures no channel
                run.scenario(
                    "pick cost (no network)",
                    lambda: pick_cost_rows(
                        measure_pick_cost(picks=picks, rounds=rounds, seed=args.seed)
                    ),
                )
    if "faults" in scenarios:
        _run_faults(run, twins, args)
    if "retries" in scenarios:
        _run_retries(run, twins, args)
    if "tracing" in scenarios:
        _run_tracing(run, twins, args, budget)
    run.progress("done")
    if skipped_aio:
        print(
            "note: resilientrpc.aio does not exist yet; the asyncio scenarios (5) were skipped",
            file=sys.stderr,
        )
    for failure in run.failures:
        print(f"error: {failure}", file=sys.stderr)
    print(text_table(run.rows))
    if args.output is not None:
        command = "python -m resilientrpc.bench" + "".join(
            f" {part}" for part in (argv if argv is not None else sys.argv[1:])
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            markdown_document(
                run.rows, command=command, notes=_notes(args, twins, run, skipped_aio)
            ),
            encoding="utf-8",
        )
        print(f"wrote {args.output}", file=sys.stderr)
    return 1 if run.failures else 0
