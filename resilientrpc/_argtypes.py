"""Range-checked number options for the command lines' argparse parsers.

``add_bounded(parser, "--threads", int, 1, 32, ...)`` adds an option whose value is
parsed and checked against ``[low, high]``: a value outside it is an argparse error
naming the option and the range (exit status 2, nothing starts), and the help text
states the same range, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["add_bounded", "bounded"]

Number = TypeVar("Number", int, float)


class _AddsArguments(Protocol):
    def add_argument(self, *names: str, **settings: Any) -> argparse.Action: ...


def _allowed(low: float, high: float, unit: str, low_open: bool) -> str:
    suffix = f" {unit}" if unit else ""
    return f"{'(' if low_open else '['}{low}, {high}]{suffix}"


def bounded(
    kind: Callable[[str], Number],
    low: Number,
    high: Number,
    *,
    unit: str = "",
    low_open: bool = False,
) -> Callable[[str], Number]:
    """An argparse type: ``kind(text)`` within ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    allowed = _allowed(low, high, unit, low_open)

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        if (isinstance(value, float) and not math.isfinite(value)) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text} is outside the allowed range {allowed}")
        return value

    parse.__name__ = getattr(kind, "__name__", "number")  # argparse names it in messages
    return parse


def add_bounded(
    parser: _AddsArguments,
    flag: str,
    kind: Callable[[str], Number],
    low: Number,
    high: Number,
    *,
    help: str,
    unit: str = "",
    low_open: bool = False,
    **settings: Any,
) -> argparse.Action:
    """Add ``flag`` with a :func:`bounded` type; its help ends with the allowed range."""
    return parser.add_argument(
        flag,
        type=bounded(kind, low, high, unit=unit, low_open=low_open),
        help=f"{help}; allowed {_allowed(low, high, unit, low_open)}",
        **settings,
    )
