"""Benchmark results as values: goals, one row per compared ratio, and the statistics behind them.

A benchmark here never reports an absolute time as its result: the machine is shared
and noisy. Every result is a :class:`Row`, the ratio of two variants measured side by
side in one run, judged against a :class:`Goal`. Absolute figures travel along only as
context, to make a ratio readable. This module does no I/O and no timing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Goal",
    "Row",
    "Summary",
    "at_least",
    "at_most",
    "percentile",
    "ratio",
    "summarize",
    "with_unit",
]


@dataclass(frozen=True, slots=True)
class Goal:
    """What a ratio should be: ``<= limit`` or ``>= limit``.

    ``unit`` is ``"x"`` for a ratio; a few fault-detection rows count things (threads,
    calls) or compare with a configured time, and say so.

    >>> at_most(1.15).met(1.1), str(at_most(1.15)), str(at_most(4, "threads"))
    (True, '<= 1.15x', '<= 4 threads')
    """

    op: Literal["<=", ">="]
    limit: float
    unit: str = "x"

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the goal (a NaN never does)."""
        if math.isnan(value):
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.op} {with_unit(self.limit, self.unit)}"


def at_most(limit: float, unit: str = "x") -> Goal:
    """The goal ``ratio <= limit``."""
    return Goal("<=", limit, unit)


def at_least(limit: float, unit: str = "x") -> Goal:
    """The goal ``ratio >= limit``."""
    return Goal(">=", limit, unit)


def with_unit(value: float, unit: str) -> str:
    """``value`` followed by its unit: ``1.15x``, ``25%``, ``1.7 s``, ``3 threads``.

    >>> with_unit(1.15, "x"), with_unit(25.0, "%"), with_unit(1.7, "s"), with_unit(3.0, "threads")
    ('1.15x', '25%', '1.7 s', '3 threads')
    """
    if unit == "x":
        return f"{value:g}x"
    number = f"{value:,.{3 if unit == 's' else 2}f}".rstrip("0").rstrip(".")
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One compared ratio: what was compared, the ratio, its goal and readable context.

    >>> Row(scenario="latency", twin="sync", subject="rr(1) / plain p50", value=1.08,
    ...     goal=at_most(1.15)).verdict
    'PASS'
    """

    scenario: str
    twin: str
    subject: str
    value: float
    goal: Goal | None = None
    context: str = ""
    #: ``"x"`` for a ratio (the usual case), else what the value counts.
    unit: str = "x"

    @property
    def verdict(self) -> str:
        """PASS or MISS against the goal; "info" for a row that has none."""
        if self.goal is None:
            return "info"
        return "PASS" if self.goal.met(self.value) else "MISS"

    @property
    def shown_value(self) -> str:
        """The value as the table shows it."""
        if math.isnan(self.value):
            return "n/a"
        if self.unit != "x":
            return with_unit(self.value, self.unit)
        if self.goal is not None and round(self.value, 2) == self.goal.limit:
            return f"{self.value:.3f}x"  # two decimals would hide which side of the goal
        return f"{self.value:.2f}x"


@dataclass(frozen=True, slots=True)
class Summary:
    """Order statistics of a sample of durations, in seconds."""

    count: int
    p50: float
    p99: float
    mean: float

    def ms(self) -> str:
        """The summary in milliseconds, for context columns."""
        return f"p50 {self.p50 * 1e3:.2f} / p99 {self.p99 * 1e3:.2f} ms"


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted sample; NaN when it is empty.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[float]) -> Summary:
    """p50, p99 and mean of ``samples`` (NaN for an empty sample)."""
    ordered = sorted(samples)
    mean = statistics.fmean(ordered) if ordered else math.nan
    return Summary(len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.99), mean)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when either is missing or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
