"""The schema machinery behind the service config: kinds, field tables, paths, messages.

A JSON object is described by a table of :class:`Field` rows; each row names a
:class:`Kind`, a checked conversion from a JSON value to a Python value that raises one
:class:`~resilientrpc.errors.ConfigError` naming the JSON path of the value. This module
also owns the scalar kinds every area shares: booleans, strings, integers, numbers,
proto3 durations and status codes, and the wording of every "expected ..., found ..."
message and "did you mean" hint.

Numbers are checked for what the engine can do with them, not only for what JSON allows:
no NaN or infinity, no integer the interpreter cannot print (``LongInteger`` stands in for
the digits of one that JSON text spells out), and durations that are only ever waited on
stay within what timers and gRPC deadlines accept (:data:`MAX_WAIT_SECONDS`).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

import grpc

from resilientrpc.errors import ConfigError

__all__ = [
    "INT64_MAX",
    "LONG_INTEGER_DIGITS",
    "MAX_DURATION_SECONDS",
    "MAX_WAIT_SECONDS",
    "Field",
    "Kind",
    "LongInteger",
    "array_kind",
    "bool_kind",
    "child",
    "code_number",
    "codes_kind",
    "describe",
    "did_you_mean",
    "duration_kind",
    "expect_array",
    "expect_object",
    "integer_kind",
    "logger",
    "mismatch",
    "number_kind",
    "object_kind",
    "parse_duration",
    "parse_status_code",
    "read_fields",
    "string_kind",
]

#: Where clamped values are reported.
logger = logging.getLogger("resilientrpc.config")

INT64_MAX = 2**63 - 1
#: The largest proto3 ``Duration``: 10,000 years, in seconds.
MAX_DURATION_SECONDS = 315_576_000_000
#: Durations that become a deadline, a timer or a sleep are at most this (about 31.7
#: years, "forever" for any call); longer ones are treated as it. gRPC deadlines and
#: thread waits overflow not far above (``threading.TIMEOUT_MAX`` is about 9.2e9 s).
MAX_WAIT_SECONDS = 1_000_000_000.0
#: Integers in JSON text with more digits than this are read as :class:`LongInteger`;
#: every number field refuses them or clamps them (none is that large as a float).
LONG_INTEGER_DIGITS = 400

_DECIMAL = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class LongInteger:
    """An integer too long to convert: JSON text with more than LONG_INTEGER_DIGITS digits."""

    digits: int
    negative: bool = False

    @classmethod
    def read(cls, text: str) -> int | LongInteger:
        """``json.loads``'s ``parse_int`` hook: short digit strings become ints."""
        digits = len(text.lstrip("-").lstrip("0"))
        if digits <= LONG_INTEGER_DIGITS:
            return int(text)
        return cls(digits, text.startswith("-"))


# --------------------------------------------------------------------------- messages


def describe(value: object) -> str:
    """How a JSON value reads in an error message: ``the string "3"``, ``true``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, LongInteger):
        return f"an integer of {value.digits} digits"
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = json.dumps(value)
        if len(text) > 60:
            text = text[:56] + '..."'
        return f"the string {text}"
    if isinstance(value, Mapping):
        return "an object" if value else "an empty object"
    if isinstance(value, list | tuple):
        return "an array" if value else "an empty array"
    return f"a Python {type(value).__name__}"


def mismatch(path: str, expected: str, value: object) -> ConfigError:
    return ConfigError(path, f"expected {expected}, found {describe(value)}")


def did_you_mean(name: str, allowed: Sequence[str]) -> str:
    """`` did you mean 'x'?`` for a near miss, else the empty string."""

    def squash(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    for candidate in allowed:
        if squash(candidate) == squash(name):
            return f" did you mean {candidate!r}?"
    lowered = {candidate.lower(): candidate for candidate in allowed}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" did you mean {lowered[close[0]]!r}?" if close else ""


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def child(path: str, key: str) -> str:
    """The JSON path of field ``key`` of the object at ``path``."""
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _warn_clamped(path: str, value: object, used: object) -> None:
    logger.warning("%s: %s is above the limit; %s is used", path, describe(value), used)


# ------------------------------------------------------------------------ field tables

_Convert: TypeAlias = Callable[[object, str], Any]


@dataclass(frozen=True, slots=True)
class Kind:
    """What a field holds: a description for messages and a checked conversion."""

    expected: str
    convert: _Convert


@dataclass(frozen=True, slots=True)
class Field:
    """One row of an object's field table: JSON name, attribute, kind, required."""

    json_name: str
    attr: str
    kind: Kind
    required: bool = False


def expect_object(value: object, path: str, expected: str = "an object") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise mismatch(path or "config", expected, value)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path or "config", f"expected string field names, found {key!r}")
    return value


def expect_array(value: object, path: str, expected: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise mismatch(path, expected, value)
    return value


def read_fields(value: object, path: str, table: Sequence[Field], what: str) -> dict[str, Any]:
    """Check the object at ``path`` against its field table; its values by attribute.

    Unknown names are errors; ``null`` counts as absent (proto3 JSON); absent optional
    fields are left out so that the value class supplies its default.
    """
    obj = expect_object(value, path, f"{what} (a JSON object)")
    by_name = {row.json_name: row for row in table}
    for key in obj:
        if key not in by_name:
            allowed = ", ".join(repr(name) for name in by_name) or "none"
            raise ConfigError(
                child(path, key),
                f"unknown field {key!r} in {what}; allowed fields: {allowed}."
                + did_you_mean(key, list(by_name)),
            )
    values: dict[str, Any] = {}
    for row in table:
        field_path = child(path, row.json_name)
        raw = obj.get(row.json_name)
        if raw is None:
            if row.required:
                raise ConfigError(
                    field_path, f"is required: expected {row.kind.expected}, found nothing"
                )
            continue
        values[row.attr] = row.kind.convert(raw, field_path)
    return values


def object_kind(
    expected: str,
    table: Sequence[Field],
    build: Callable[[dict[str, Any], str], Any],
) -> Kind:
    """A nested object read with ``table`` and turned into a value by ``build``."""

    def convert(value: object, path: str) -> Any:
        return build(read_fields(value, path, table, expected), path)

    return Kind(expected, convert)


def array_kind(expected: str, item: Kind, *, non_empty: bool = False) -> Kind:
    def convert(value: object, path: str) -> tuple[Any, ...]:
        items = expect_array(value, path, expected)
        if non_empty and not items:
            raise mismatch(path, expected, value)
        return tuple(item.convert(entry, f"{path}[{i}]") for i, entry in enumerate(items))

    return Kind(expected, convert)


# ------------------------------------------------------------------------ scalar kinds


def bool_kind() -> Kind:
    expected = "true or false"

    def convert(value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise mismatch(path, expected, value)
        return value

    return Kind(expected, convert)


def string_kind() -> Kind:
    expected = "a string"

    def convert(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise mismatch(path, expected, value)
        return value

    return Kind(expected, convert)


def _as_integer(value: object, *, allow_string: bool) -> int | None:
    """``value`` as an integer if it is one (``3``, ``3.0``, ``"3"`` if allowed), else None.

    An integer past int64 in any spelling (long digit strings, :class:`LongInteger`)
    becomes ``±(INT64_MAX + 1)``, so range checks refuse or clamp it without converting it.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, LongInteger):
        return _past_int64(value.negative)
    if isinstance(value, str) and allow_string and _DECIMAL.fullmatch(value):
        if len(value.lstrip("-").lstrip("0")) > len(str(INT64_MAX)):
            return _past_int64(value.startswith("-"))
        return int(value)
    return None


def _past_int64(negative: bool) -> int:
    """The first integer past the int64 range on the side of ``negative``."""
    return -(INT64_MAX + 1) if negative else INT64_MAX + 1


def integer_kind(
    *,
    minimum: int,
    maximum: int = INT64_MAX,
    clamp_above: int | None = None,
    warn_clamp: bool = False,
    allow_string: bool = False,
) -> Kind:
    """An integer in [minimum, maximum]; values above ``clamp_above`` become it.

    ``warn_clamp`` logs a warning naming the path when a value is clamped.
    ``allow_string`` accepts a decimal string, as proto3 JSON writes 64-bit integers.
    """
    expected = f"an integer >= {minimum}"
    if clamp_above is None and maximum != INT64_MAX:
        expected = f"an integer from {minimum} to {maximum}"
    if allow_string:
        expected += " (a JSON number or a decimal string)"

    def convert(value: object, path: str) -> int:
        number = _as_integer(value, allow_string=allow_string)
        if number is None or number < minimum:
            raise mismatch(path, expected, value)
        if clamp_above is not None and number > clamp_above:
            if warn_clamp:
                _warn_clamped(path, value, clamp_above)
            return clamp_above
        if number > maximum:
            raise mismatch(path, expected, value)
        return number

    return Kind(expected, convert)


def number_kind(
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> Kind:
    """A finite JSON number with optional bounds (``above`` and ``below`` are exclusive)."""
    bounds = []
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if at_most is not None:
        bounds.append(f"<= {at_most:g}")
    if below is not None:
        bounds.append(f"< {below:g}")
    expected = "a finite number" + (f" {' and '.join(bounds)}" if bounds else "")

    def convert(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise mismatch(path, expected, value)
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            raise mismatch(path, expected, value) from None
        if (
            not math.isfinite(number)
            or (above is not None and not number > above)
            or (at_least is not None and number < at_least)
            or (at_most is not None and number > at_most)
            or (below is not None and not number < below)
        ):
            raise mismatch(path, expected, value)
        return number

    return Kind(expected, convert)


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,9}))?s")
_DURATION_EXPECTED = (
    "a duration string: seconds with up to 9 decimal places and an 's' suffix, like '1.5s'"
)


def parse_duration(value: object, path: str) -> float:
    """Seconds in a proto3 JSON ``Duration`` (``"1.5s"``, ``"0.000340s"``); must be >= 0.

    >>> parse_duration("0.25s", "timeout")
    0.25
    >>> parse_duration(1.5, "timeout")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    resilientrpc.errors.ConfigError: timeout: expected a duration string: ...
    """
    if not isinstance(value, str):
        raise mismatch(path, _DURATION_EXPECTED, value)
    match = _DURATION.fullmatch(value)
    if match is None:
        raise mismatch(path, _DURATION_EXPECTED, value)
    sign, whole, fraction = match.groups()
    whole = whole.lstrip("0") or "0"
    if len(whole) > len(str(MAX_DURATION_SECONDS)) or int(whole) > MAX_DURATION_SECONDS:
        raise mismatch(path, f"a duration of at most {MAX_DURATION_SECONDS}s", value)
    if sign and (int(whole) or int(fraction or "0")):
        raise mismatch(path, "a duration >= 0s", value)
    return float(Decimal(f"{whole}.{fraction or '0'}"))


def duration_kind(
    *,
    positive: bool = False,
    at_least: float = 0.0,
    at_most: float | None = None,
    clamp_below: float | None = None,
) -> Kind:
    """A duration; ``positive`` forbids ``0s``, ``at_least`` anything shorter and
    ``at_most`` anything longer; values below ``clamp_below`` become it.

    Values above :data:`MAX_WAIT_SECONDS` become it.
    """
    expected = "a duration, like '1.5s'"
    if at_most is not None:
        expected = f"a duration from {at_least:g}s to {at_most:g}s, like '1.5s'"
    elif at_least > 0:
        expected = f"a duration >= {at_least:g}s, like '1.5s'"
    elif positive:
        expected = "a duration > 0s, like '1.5s'"

    def convert(value: object, path: str) -> float:
        seconds = parse_duration(value, path)
        if (
            (positive and seconds <= 0)
            or seconds < at_least
            or (at_most is not None and seconds > at_most)
        ):
            raise mismatch(path, expected, value)
        if clamp_below is not None and seconds < clamp_below:
            return clamp_below
        return min(seconds, MAX_WAIT_SECONDS)

    return Kind(expected, convert)


# ------------------------------------------------------------------------ status codes


def code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


_CODES_BY_NAME: dict[str, grpc.StatusCode] = {code.name: code for code in grpc.StatusCode}
_CODES_BY_NUMBER: dict[int, grpc.StatusCode] = {code_number(c): c for c in grpc.StatusCode}
_STATUS_EXPECTED = "a status code name like 'UNAVAILABLE' or a number from 0 to 16"


def parse_status_code(value: object, path: str) -> grpc.StatusCode:
    """A gRPC status code from its name (any case, as A6 allows) or its number.

    >>> parse_status_code("unavailable", "codes[0]")
    <StatusCode.UNAVAILABLE: (14, 'unavailable')>
    >>> parse_status_code(4, "codes[1]")
    <StatusCode.DEADLINE_EXCEEDED: (4, 'deadline exceeded')>
    """
    if isinstance(value, str):
        code = _CODES_BY_NAME.get(value.upper())
        if code is None:
            hint = did_you_mean(value.upper(), list(_CODES_BY_NAME))
            hint = f";{hint}" if hint else ""
            raise ConfigError(path, f"expected {_STATUS_EXPECTED}, found {describe(value)}{hint}")
        return code
    number = _as_integer(value, allow_string=False)
    found = _CODES_BY_NUMBER.get(number) if number is not None else None
    if found is None:
        raise mismatch(path, _STATUS_EXPECTED, value)
    return found


def codes_kind(*, role: str, non_empty: bool = False) -> Kind:
    """A JSON array of status codes other than OK, as a frozen set."""
    expected = f'an array of {role} status codes, like ["UNAVAILABLE"]'
    if non_empty:
        expected = "a non-empty " + expected.removeprefix("an ")

    def convert(value: object, path: str) -> frozenset[grpc.StatusCode]:
        items = expect_array(value, path, expected)
        if non_empty and not items:
            raise mismatch(path, expected, value)
        codes = set()
        for position, item in enumerate(items):
            item_path = f"{path}[{position}]"
            code = parse_status_code(item, item_path)
            if code is grpc.StatusCode.OK:
                also = "" if role == "failure" else f", so it cannot be {role}"
                raise ConfigError(item_path, f"OK is not a failure{also}")
            codes.add(code)
        return frozenset(codes)

    return Kind(expected, convert)
