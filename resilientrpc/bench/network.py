"""The network scenarios, written once for both twins: latency, throughput, slow backend.

Each scenario opens the variants it compares on one :class:`Driver`, measures them in
interleaved rounds (A, B, C, then B, C, A, ...) so that drift of the shared machine hits
every variant alike, and turns the pooled samples into :class:`Row` ratios against
plain grpcio or grpcio's native ``round_robin``. Every loop is bounded in calls and time
by a :class:`NetworkBudget`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resilientrpc.bench.drivers import KEY_HEADER, Driver, Load, Opened, Variant, merge
from resilientrpc.bench.results import Goal, Row, at_least, at_most, ratio, summarize

__all__ = [
    "LATENCY_GOAL_AIO",
    "LATENCY_GOAL_SYNC",
    "PEAK_EWMA_P99_GOAL",
    "SLOW_BACKEND_CONCURRENCY",
    "SLOW_BACKEND_STRATEGIES",
    "THROUGHPUT_GOAL",
    "NetworkBudget",
    "interleaved",
    "latency",
    "opened_variants",
    "slow_backend",
    "strategy_variant",
    "throughput",
]

LATENCY_GOAL_SYNC = at_most(1.15)
LATENCY_GOAL_AIO = at_most(1.2)
THROUGHPUT_GOAL = at_least(0.9)
PEAK_EWMA_P99_GOAL = at_most(0.25)
#: Concurrent callers in the slow-backend scenario (both twins, so they compare).
SLOW_BACKEND_CONCURRENCY = 8
#: The strategies the slow-backend scenario compares, in table order.
SLOW_BACKEND_STRATEGIES = (
    "round_robin",
    "weighted_round_robin",
    "least_request",
    "peak_ewma",
    "random",
    "pick_first",
    "ring_hash",
)

_ROUND_ROBIN: Mapping[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
_NATIVE = "native round_robin"
_ORACLE = "native round_robin, fast backends only"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkBudget:
    """How much each network scenario may do, per measured variant."""

    latency_calls: int
    latency_rounds: int
    latency_seconds: float
    throughput_seconds: float
    throughput_slices: int
    slow_seconds: float
    slow_rounds: int
    #: Upper bound of calls per variant in a concurrent scenario.
    max_calls: int
    #: Calls each variant makes, after it reached every backend, before measuring.
    warm_calls: int


def strategy_variant(strategy: str, addresses: Sequence[str]) -> Variant:
    """A ResilientChannel variant using ``strategy`` over ``addresses``."""
    config: dict[str, Any]
    if strategy == "weighted_round_robin":
        config = {"weights": dict.fromkeys(addresses, 1)}  # static, equal
    elif strategy == "ring_hash":
        config = {"requestHashHeader": KEY_HEADER}
    else:
        config = {}
    return Variant(
        label=strategy,
        kind="resilient",
        addresses=tuple(addresses),
        config={"loadBalancingConfig": [{strategy: config}]},
        keyed=strategy == "ring_hash",
    )


@contextlib.contextmanager
def opened_variants(
    driver: Driver, variants: Sequence[Variant], warm_calls: int
) -> Iterator[list[Opened]]:
    """Every variant open and warm; all closed afterwards, however the scenario ends."""
    opened: list[Opened] = []
    try:
        for variant in variants:
            opened.append(driver.open(variant, warm_calls=warm_calls))
        gc.collect()
        yield opened
    finally:
        for item in opened:
            driver.close(item)


def interleaved(
    opened: Sequence[Opened], rounds: int, measure: Callable[[Opened], Load]
) -> dict[str, list[Load]]:
    """``rounds`` rounds over all variants, the order rotated by one every round."""
    loads: dict[str, list[Load]] = {item.variant.label: [] for item in opened}
    count = len(opened)
    for number in range(rounds):
        shift = number % count
        for item in (*opened[shift:], *opened[:shift]):
            loads[item.variant.label].append(measure(item))
    return loads


def _errors(*loads: Load) -> str:
    failed = sum(load.errors for load in loads)
    return f"; {failed} calls failed" if failed else ""


def latency(
    driver: Driver, addresses: Sequence[str], budget: NetworkBudget, *, scenario: str, goal: Goal
) -> list[Row]:
    """Sequential unary calls: ResilientChannel over 1 and 3 backends vs a plain channel.

    Judged against the goal: our channel to one backend vs a plain channel to it, and our
    channel over 3 backends vs grpcio's native round_robin over the same 3.
    """
    first = (addresses[0],)
    variants = [
        Variant(label="plain", kind="plain", addresses=first),
        Variant(label="rr(1)", kind="resilient", addresses=first, config=_ROUND_ROBIN),
        Variant(label="rr(3)", kind="resilient", addresses=tuple(addresses), config=_ROUND_ROBIN),
        Variant(label="native rr(3)", kind="native", addresses=tuple(addresses)),
    ]
    rounds = max(1, budget.latency_rounds)
    batch = max(1, budget.latency_calls // rounds)
    seconds = budget.latency_seconds / rounds
    with opened_variants(driver, variants, budget.warm_calls) as opened:
        loads = interleaved(
            opened, rounds, lambda item: driver.sequential(item, calls=batch, seconds=seconds)
        )
    pooled = {label: merge(parts) for label, parts in loads.items()}
    stats = {label: summarize(load.latencies) for label, load in pooled.items()}
    rows: list[Row] = []

    def row(subject: str, top: str, bottom: str, which: str, row_goal: Goal | None) -> None:
        a, b = stats[top], stats[bottom]
        value = ratio(getattr(a, which), getattr(b, which))
        context = (
            f"{which} {getattr(a, which) * 1e3:.3f} vs {getattr(b, which) * 1e3:.3f} ms; "
            f"{a.count} calls each{_errors(pooled[top], pooled[bottom])}"
        )
        rows.append(
            Row(
                scenario=scenario,
                twin=driver.name,
                subject=subject,
                value=value,
                goal=row_goal,
                context=context,
            )
        )

    # The goal compares like with like: our channel and a plain one, both to one backend.
    # Over three backends the fair reference is grpcio's own round_robin over the same
    # three (spreading calls over three server processes costs grpcio as much as us).
    for which in ("p50", "mean"):
        row(f"resilient rr(1) / plain, {which}", "rr(1)", "plain", which, goal)
    for which in ("p50", "mean"):
        row(f"resilient rr(3) / native rr(3), {which}", "rr(3)", "native rr(3)", which, goal)
    row("resilient rr(3) / plain, p50 (reference)", "rr(3)", "plain", "p50", None)
    row("native rr(3) / plain, p50 (reference)", "native rr(3)", "plain", "p50", None)
    return rows


def throughput(
    driver: Driver, addresses: Sequence[str], budget: NetworkBudget, *, scenario: str
) -> list[Row]:
    """Concurrent callers over 3 backends: ResilientChannel vs grpcio's native round_robin.

    The variants take turns in slices of equal time; the ratio is of pooled calls per
    second, and the context shows the spread of the per-slice-pair ratios.
    """
    concurrency = driver.throughput_concurrency
    variants = [
        Variant(label="native rr(3)", kind="native", addresses=tuple(addresses)),
        Variant(label="rr(3)", kind="resilient", addresses=tuple(addresses), config=_ROUND_ROBIN),
    ]
    slices = max(1, budget.throughput_slices)
    seconds = budget.throughput_seconds / slices
    calls = max(concurrency, budget.max_calls // slices)
    with opened_variants(driver, variants, budget.warm_calls) as opened:
        loads = interleaved(
            opened,
            slices,
            lambda item: driver.concurrent(
                item, concurrency=concurrency, calls=calls, seconds=seconds
            ),
        )
    native, ours = loads["native rr(3)"], loads["rr(3)"]
    pairs = sorted(ratio(o.rate, n.rate) for o, n in zip(ours, native, strict=True))
    native_total, ours_total = merge(native), merge(ours)
    value = ratio(ours_total.rate, native_total.rate)
    context = (
        f"{ours_total.rate:.0f} vs {native_total.rate:.0f} calls/s with {concurrency} "
        f"concurrent callers; per-slice ratios {pairs[0]:.2f}-{pairs[-1]:.2f}"
        f"{_errors(ours_total, native_total)}"
    )
    return [
        Row(
            scenario=scenario,
            twin=driver.name,
            subject="resilient rr(3) / native rr(3), calls/s",
            value=value,
            goal=THROUGHPUT_GOAL,
            context=context,
        )
    ]


def slow_backend(
    driver: Driver,
    addresses: Sequence[str],
    names: Sequence[str],
    slow: str,
    budget: NetworkBudget,
    *,
    scenario: str,
    strategies: Sequence[str] = SLOW_BACKEND_STRATEGIES,
    concurrency: int = SLOW_BACKEND_CONCURRENCY,
) -> list[Row]:
    """One of 3 backends is slow: each strategy's p99 against native round_robin's.

    ``names`` are the names the backends at ``addresses`` put in their replies, ``slow``
    the slow one's. Every row's context gives p50, p99 and the share of calls the slow
    backend served. A second reference, native round_robin over the fast backends only
    (an oracle that knows which backend is slow), shows the best p99 any strategy could
    reach with this many callers on this machine.
    """
    fast = tuple(address for address, name in zip(addresses, names, strict=True) if name != slow)
    variants = [
        Variant(label=_NATIVE, kind="native", addresses=tuple(addresses)),
        Variant(label=_ORACLE, kind="native", addresses=fast),
        *(strategy_variant(strategy, addresses) for strategy in strategies),
    ]
    rounds = max(1, budget.slow_rounds)
    seconds = budget.slow_seconds / rounds
    calls = max(concurrency, budget.max_calls // rounds)
    with opened_variants(driver, variants, budget.warm_calls) as opened:
        loads = interleaved(
            opened,
            rounds,
            lambda item: driver.concurrent(
                item, concurrency=concurrency, calls=calls, seconds=seconds
            ),
        )
    pooled = {label: merge(parts) for label, parts in loads.items()}
    reference = summarize(pooled[_NATIVE].latencies)
    oracle = summarize(pooled[_ORACLE].latencies)
    rows = []
    for variant in variants:
        load = pooled[variant.label]
        stats = summarize(load.latencies)
        context = (
            f"{stats.ms()}; slow backend served {load.share(slow) * 100:.1f} % of "
            f"{load.calls}{_errors(load)}"
        )
        if variant.label == _NATIVE:
            subject = "native round_robin p99 (reference)"
        elif variant.label == _ORACLE:
            subject = "native rr over the fast backends only p99 / native rr p99 (floor)"
        else:
            subject = f"{variant.label} p99 / native rr p99"
            context += f"; {ratio(stats.p99, oracle.p99):.2f}x the floor's p99"
        rows.append(
            Row(
                scenario=scenario,
                twin=driver.name,
                subject=subject,
                value=ratio(stats.p99, reference.p99),
                goal=PEAK_EWMA_P99_GOAL if variant.label == "peak_ewma" else None,
                context=context,
            )
        )
    return rows
