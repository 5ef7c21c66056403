"""``resilientrpc demo``: two scenarios, ``faults`` (the default) and ``strategies``.

``faults`` (:mod:`resilientrpc.faults_demo`): backends in child processes hang, fail,
slow down and report NOT_SERVING, and come back, while health checking and outlier
detection take each out of traffic and back in; events and a live table show it.

``strategies``: for every strategy it sends the same bounded load through a
:class:`ResilientChannel` over three local backends (``healthy``, ``slow``, ``flaky``)
and prints, per backend, its name and address, its share of the calls, the median and
p99 latency the client saw and the calls it failed, then one line reading the table.

Options are range-checked so that every call stays well inside the demo's call deadline;
an option of the other scenario is an error (exit status 2), and nothing starts.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import threading
import time
from collections.abc import Mapping, Sequence

import grpc

from resilientrpc._argtypes import add_bounded
from resilientrpc.channel import ResilientChannel
from resilientrpc.faults_demo import FAULT_STRATEGIES, run_faults
from resilientrpc.testing import echo_pb2, echo_pb2_grpc, start_backends

__all__ = [
    "BACKEND_NAMES",
    "CALL_TIMEOUT",
    "MAX_SLOW_MS",
    "SCENARIOS",
    "STRATEGIES",
    "BackendStats",
    "StrategyResult",
    "build_parser",
    "main",
    "run_strategy",
]

STRATEGIES: dict[str, dict[str, object]] = {
    "round_robin": {},
    "weighted_round_robin": {},  # filled with static weights at run time
    "least_request": {},
    "peak_ewma": {},
    "random": {},
    "ring_hash": {"requestHashHeader": "x-user"},
    "pick_first": {},
}

#: The three demo backends, in table order.
BACKEND_NAMES = ("healthy", "slow", "flaky")
#: Static weights of ``weighted_round_robin``, in the order of :data:`BACKEND_NAMES`.
_WEIGHTS = (3, 1, 1)
#: Deadline of every demo call, seconds.
CALL_TIMEOUT = 2.0
#: Upper limit of the slow backend's delay: a quarter of the call deadline, so the slow
#: backend is slow but never times out, even with the machine busy.
MAX_SLOW_MS = 500

SCENARIOS = ("faults", "strategies")
#: Options only the strategies scenario has: giving one selects it (they predate faults).
_STRATEGIES_ONLY = {"calls": "--calls", "seconds": "--seconds", "flaky": "--flaky"}
#: Options only the faults scenario has.
_FAULTS_ONLY = {
    "time_scale": "--time-scale",
    "strategy": "--strategy",
    "detection": "--no-detection",
}
#: Defaults of the options above (and of the slow delay, which differs per scenario).
_DEFAULTS: dict[str, object] = {
    "calls": 600,
    "seconds": 15.0,
    "flaky": 0.2,
    "time_scale": 1.0,
    "strategy": "round_robin",
    "detection": True,
}
_SLOW_MS = {"strategies": 20.0, "faults": 150.0}

DESCRIPTION = (
    "faults (the default): five Echo backends in child processes on 127.0.0.1 behind one "
    "ResilientChannel with health checking and outlier detection; paced traffic while one "
    "backend hangs (SIGSTOP), one fails every call, one turns --slow-ms slow, one reports "
    "NOT_SERVING, then three at once (panic mode), each undone after a few seconds (about "
    "35 s in all, x --time-scale). The channel's events are printed as they happen and a "
    "table shows each backend leave traffic and come back. "
    "strategies: three local Echo backends - healthy, slow (each reply delayed by "
    "--slow-ms) and flaky (a --flaky fraction of its calls fail with UNAVAILABLE) - get "
    "the same bounded load through a ResilientChannel with each balancing strategy, and "
    "per backend its share of the calls, the median and p99 latency the client saw, and "
    f"the calls it failed are printed. Every call has a {CALL_TIMEOUT:g} s deadline. "
    "--calls, --seconds and --flaky select the strategies scenario."
)

LEGEND = (
    "legend: share = the backend's part of the strategy's calls (answered or failed),\n"
    f"        {1 / len(BACKEND_NAMES):.0%} each on an even split; p50 / p99 ms = latency the "
    "client saw on answered\n"
    "        calls; errors = calls the backend failed."
)


@dataclasses.dataclass
class BackendStats:
    """What one backend did under one strategy: answered calls' latencies, failures."""

    name: str
    address: str
    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0

    @property
    def calls(self) -> int:
        return len(self.latencies) + self.errors


@dataclasses.dataclass
class StrategyResult:
    """One strategy's run: per backend stats, and failures no backend returned, by code."""

    backends: list[BackendStats]
    unattributed: collections.Counter[str]

    @property
    def calls(self) -> int:
        return sum(stats.calls for stats in self.backends) + sum(self.unattributed.values())

    def stats(self, name: str) -> BackendStats:
        return next(stats for stats in self.backends if stats.name == name)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_strategy(
    name: str,
    settings: Mapping[str, object],
    backends: Mapping[str, str],
    *,
    calls: int,
    threads: int,
    seconds: float,
    timeout: float = CALL_TIMEOUT,
) -> StrategyResult:
    """Send ``calls`` calls (at most ``seconds``, each ``timeout``) over ``threads`` threads.

    ``backends`` maps each backend's name (as its replies and errors carry it) to its
    address. A failure whose details name no backend (e.g. DEADLINE_EXCEEDED) is counted
    under its status code.
    """
    config = {"loadBalancingConfig": [{name: dict(settings)}]}
    result = StrategyResult(
        [BackendStats(backend, address) for backend, address in backends.items()],
        collections.Counter(),
    )
    by_name = {stats.name: stats for stats in result.backends}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    with ResilientChannel(list(backends.values()), config=config) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = echo_pb2_grpc.EchoStub(channel)

        def work(worker: int, count: int) -> None:
            for index in range(count):
                if time.monotonic() > deadline:
                    return
                metadata = [("x-user", f"user-{worker}-{index % 16}")]
                started = time.perf_counter()
                try:
                    reply = stub.Echo(
                        echo_pb2.EchoRequest(message="demo"),
                        timeout=timeout,
                        metadata=metadata,
                    )
                except grpc.RpcError as error:
                    details = error.details() or ""
                    stats = by_name.get(details.rpartition(" on ")[2])
                    with lock:
                        if stats is not None:
                            stats.errors += 1
                        else:
                            result.unattributed[error.code().name] += 1
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    by_name[reply.backend].latencies.append(elapsed)

        share, extra = divmod(calls, threads)
        workers = [
            threading.Thread(target=work, args=(i, share + (1 if i < extra else 0)))
            for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return result


def _milliseconds(values: list[float], fraction: float | None) -> str:
    if not values:
        return "-"
    seconds = statistics.median(values) if fraction is None else _percentile(values, fraction)
    return f"{seconds * 1000:.2f}"


def _table(result: StrategyResult) -> list[str]:
    total = result.calls or 1
    width = max(len(stats.name) for stats in result.backends) + 2
    lines = [
        f"   {'backend':<{width}}{'address':<18}{'share':>7}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    ]
    for stats in result.backends:
        lines.append(
            f"   {stats.name:<{width}}{stats.address:<18}{stats.calls / total:>7.1%}"
            f"{_milliseconds(stats.latencies, None):>9}{_milliseconds(stats.latencies, 0.99):>9}"
            f"{stats.errors:>8}"
        )
    return lines


def _reading(result: StrategyResult, slow_ms: float, flaky: float) -> str:
    total = result.calls or 1
    slow, flaky_stats = result.stats("slow"), result.stats("flaky")
    line = (
        f"   reading: of {result.calls} calls, slow (+{slow_ms:g} ms) took "
        f"{slow.calls / total:.0%} and flaky ({flaky:.0%} failing) took "
        f"{flaky_stats.calls / total:.0%}, of which {flaky_stats.errors} failed"
    )
    if result.unattributed:
        codes = ", ".join(f"{code} {count}" for code, count in result.unattributed.items())
        line += f"; {sum(result.unattributed.values())} failed on no backend ({codes})"
    return line + "."


def _title(name: str, settings: Mapping[str, object], names: Mapping[str, str]) -> str:
    if name == "weighted_round_robin":
        weights = settings["weights"]
        assert isinstance(weights, dict)
        shown = ", ".join(f"{names[address]} {weight}" for address, weight in weights.items())
        return f"== {name} (static weights: {shown})"
    if settings:
        return f"== {name} ({', '.join(f'{key} {value}' for key, value in settings.items())})"
    return f"== {name}"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``resilientrpc demo``, each with its unit, range and default."""
    parser = argparse.ArgumentParser(
        prog="resilientrpc demo",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=argparse.SUPPRESS,
        help="what to show (default: faults, or strategies when --calls, --seconds or "
        "--flaky is given)",
    )
    add_bounded(
        parser,
        "--calls",
        int,
        1,
        100_000,
        default=argparse.SUPPRESS,
        metavar="N",
        help="calls per strategy (strategies; default: 600)",
    )
    add_bounded(
        parser, "--threads", int, 1, 32, default=6, metavar="N", help="client threads sending them"
    )
    add_bounded(
        parser,
        "--seconds",
        float,
        0.0,
        300.0,
        unit="s",
        low_open=True,
        default=argparse.SUPPRESS,
        metavar="S",
        help="time limit per strategy, in seconds (strategies; default: 15.0)",
    )
    slow = parser.add_mutually_exclusive_group()
    add_bounded(
        slow,
        "--slow-ms",
        float,
        0.0,
        float(MAX_SLOW_MS),
        unit="ms",
        default=argparse.SUPPRESS,
        metavar="MS",
        help="delay the slow backend adds to each reply, in milliseconds (default: "
        f"{_SLOW_MS['strategies']:g} for strategies, {_SLOW_MS['faults']:g} for faults)",
    )
    add_bounded(
        slow,
        "--slow",
        float,
        0.0,
        MAX_SLOW_MS / 1000,
        unit="s",
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="the same delay in seconds (older spelling of --slow-ms)",
    )
    add_bounded(
        parser,
        "--flaky",
        float,
        0.0,
        1.0,
        default=argparse.SUPPRESS,
        metavar="FRACTION",
        help="fraction of the flaky backend's calls that fail with UNAVAILABLE "
        "(strategies; default: 0.2)",
    )
    add_bounded(
        parser,
        "--time-scale",
        float,
        0.05,
        5.0,
        default=argparse.SUPPRESS,
        metavar="F",
        help="multiply every duration of the faults timeline, heartbeat, ejection times "
        "and call deadline by F (faults; default: 1.0)",
    )
    parser.add_argument(
        "--strategy",
        choices=list(FAULT_STRATEGIES),
        default=argparse.SUPPRESS,
        help="the balancing strategy under outlier detection (faults; default: round_robin)",
    )
    parser.add_argument(
        "--no-detection",
        dest="detection",
        action="store_false",
        default=argparse.SUPPRESS,
        help="the same faults with health checking and outlier detection off, to compare (faults)",
    )
    return parser


def _settings(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``: pick the scenario, refuse the other scenario's options, fill defaults."""
    args = parser.parse_args(argv)
    given = vars(args)
    strategies_only = [flag for dest, flag in _STRATEGIES_ONLY.items() if dest in given]
    faults_only = [flag for dest, flag in _FAULTS_ONLY.items() if dest in given]
    if "scenario" not in given:
        args.scenario = "strategies" if strategies_only and not faults_only else "faults"
    wrong = faults_only if args.scenario == "strategies" else strategies_only
    if wrong:
        parser.error(f"{', '.join(wrong)}: not an option of the {args.scenario} scenario")
    for dest, value in _DEFAULTS.items():
        given.setdefault(dest, value)
    if "slow" in given:
        args.slow_ms = args.slow * 1000
    given.setdefault("slow_ms", _SLOW_MS[args.scenario])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _settings(build_parser(), argv)
    if args.scenario == "faults":
        return run_faults(
            strategy=args.strategy,
            threads=args.threads,
            slow_ms=args.slow_ms,
            time_scale=args.time_scale,
            detection=args.detection,
        )
    return _strategies(args)


def _strategies(args: argparse.Namespace) -> int:
    slow_ms = args.slow_ms
    with start_backends(len(BACKEND_NAMES), names=list(BACKEND_NAMES), seed=1) as backends:
        backends[1].configure(latency=slow_ms / 1000)
        backends[2].configure(error_rate=args.flaky, error_code=grpc.StatusCode.UNAVAILABLE)
        addresses = {backend.name: backend.address for backend in backends}
        names = {address: name for name, address in addresses.items()}
        print(
            f"backends: healthy {addresses['healthy']}, "
            f"slow {addresses['slow']} (+{slow_ms:g} ms per reply), "
            f"flaky {addresses['flaky']} ({args.flaky:.0%} of calls fail with UNAVAILABLE)"
        )
        print(
            f"{args.calls} calls per strategy over {args.threads} threads, at most "
            f"{args.seconds:g} s per strategy, {CALL_TIMEOUT:g} s deadline per call"
        )
        print(LEGEND + "\n")
        for name, default_settings in STRATEGIES.items():
            settings = default_settings
            if name == "weighted_round_robin":
                settings = {"weights": dict(zip(backends.addresses, _WEIGHTS, strict=True))}
            result = run_strategy(
                name,
                settings,
                addresses,
                calls=args.calls,
                threads=args.threads,
                seconds=args.seconds,
            )
            print(_title(name, settings, names))
            print("\n".join(_table(result)))
            print(_reading(result, slow_ms, args.flaky))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
