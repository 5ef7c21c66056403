"""The service config: gRPC's JSON schema, parsed and validated into frozen values.

This module owns the one translation from configuration text to policy values. The input
is a gRPC service config (a mapping, JSON text or a path to a JSON file) and means exactly
what it means in gRPC (gRFC A6 retries, hedging and ``retryThrottling``; A17
``healthCheckConfig``; A58 ``weighted_round_robin``; A48 ``least_request``; A42/A76
``ring_hash``), plus a few camelCase extensions that gRPC lacks (the ``peak_ewma`` and
``random`` policies, static ``weights`` for ``weighted_round_robin``).

Everything is checked before anything starts: the first invalid value raises one
:class:`~resilientrpc.errors.ConfigError` whose ``path`` is the JSON path of the field
(``methodConfig[0].retryPolicy.maxAttempts``) and whose message says what was expected and
what was found. Unknown field names are errors too, with a "did you mean" suggestion.

Where this differs from gRPC on purpose:

* With no load-balancing configuration the policy is ``round_robin``, not gRPC's
  ``pick_first``: spreading calls is the point of this library.
* ``ring_hash`` needs ``requestHashHeader`` (A76): there is no xDS route to supply a hash.
* ``weighted_round_robin`` takes per-call ORCA reports only; ``enableOobLoadReport: true``
  is rejected.
* Unknown field names are errors (gRPC ignores them), and so is a ``methodConfig`` entry
  without names (gRPC skips it): both are almost always typos.
* Only integers that proto3 writes as 64-bit (``maxRequestMessageBytes``,
  ``maxResponseMessageBytes``, ``choiceCount``, ``minRingSize``, ``maxRingSize``) may be
  given as decimal strings; everywhere else a number must be a JSON number.

Each JSON object is described by a small table of fields (:class:`_Field`); adding a field
is one line in the table of its object plus the attribute on its value class.

>>> config = parse_service_config('{"loadBalancingConfig": [{"least_request": {}}]}')
>>> config.load_balancing
LeastRequest(choice_count=2)
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import ROUND_DOWN, Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import grpc

from resilientrpc.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DEFAULT_BLACKOUT_PERIOD",
    "DEFAULT_CHOICE_COUNT",
    "DEFAULT_ERROR_UTILIZATION_PENALTY",
    "DEFAULT_HEDGING_DELAY",
    "DEFAULT_LOAD_BALANCING",
    "DEFAULT_MAX_RING_SIZE",
    "DEFAULT_MIN_RING_SIZE",
    "DEFAULT_OOB_REPORTING_PERIOD",
    "DEFAULT_PEAK_EWMA_DECAY",
    "DEFAULT_WEIGHT_EXPIRATION_PERIOD",
    "DEFAULT_WEIGHT_UPDATE_PERIOD",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_CHOICE_COUNT",
    "MAX_DURATION_SECONDS",
    "MAX_RETRY_TOKENS",
    "MIN_ATTEMPTS",
    "MIN_CHOICE_COUNT",
    "MIN_WEIGHT_UPDATE_PERIOD",
    "RING_SIZE_LIMIT",
    "SUPPORTED_POLICIES",
    "TOKEN_RATIO_DECIMALS",
    "HealthCheckConfig",
    "HedgingPolicy",
    "LeastRequest",
    "LoadBalancingPolicy",
    "MethodConfig",
    "MethodName",
    "PeakEwma",
    "PickFirst",
    "Random",
    "RetryPolicy",
    "RetryThrottling",
    "RingHash",
    "RoundRobin",
    "ServiceConfig",
    "WeightedRoundRobin",
    "parse_duration",
    "parse_service_config",
    "parse_status_code",
]

# --------------------------------------------------------------------------- limits

#: Attempts (the first one included) that a retry or hedging policy may ask for at most;
#: larger values are treated as this one, as gRPC does (A6).
MAX_ATTEMPTS_LIMIT = 5
#: The fewest attempts a retry or hedging policy may ask for (A6: "greater than 1").
MIN_ATTEMPTS = 2
#: ``retryThrottling.maxTokens`` lies in (0, MAX_RETRY_TOKENS] (A6).
MAX_RETRY_TOKENS = 1000
#: Decimal places of ``retryThrottling.tokenRatio`` that gRPC keeps (A6); the rest is cut.
TOKEN_RATIO_DECIMALS = 3
#: The largest proto3 ``Duration``: 10,000 years, in seconds.
MAX_DURATION_SECONDS = 315_576_000_000

DEFAULT_HEDGING_DELAY = 0.0

# weighted_round_robin (A58)
DEFAULT_BLACKOUT_PERIOD = 10.0
DEFAULT_WEIGHT_EXPIRATION_PERIOD = 180.0
DEFAULT_WEIGHT_UPDATE_PERIOD = 1.0
#: ``weightUpdatePeriod`` values below this are raised to it (A58).
MIN_WEIGHT_UPDATE_PERIOD = 0.1
DEFAULT_ERROR_UTILIZATION_PENALTY = 1.0
DEFAULT_OOB_REPORTING_PERIOD = 10.0

# least_request (A48) and peak_ewma
DEFAULT_CHOICE_COUNT = 2
MIN_CHOICE_COUNT = 2
#: ``choiceCount`` values above this are treated as this one (A48).
MAX_CHOICE_COUNT = 10
DEFAULT_PEAK_EWMA_DECAY = 10.0

# ring_hash (A42)
DEFAULT_MIN_RING_SIZE = 1024
#: gRPC's default for ``maxRingSize`` (A42 and ``service_config.proto``), not Envoy's 8M.
DEFAULT_MAX_RING_SIZE = 4096
#: Ring sizes above this are rejected (A42).
RING_SIZE_LIMIT = 8_388_608

_INT64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]+")
_MAX_PORT = 65535

# --------------------------------------------------------------------------- values


class _FrozenMap(Mapping[str, float]):
    """A read-only, hashable mapping; repr like a dict."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, float]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._data)


def _codes_repr(codes: frozenset[grpc.StatusCode]) -> str:
    if not codes:
        return "frozenset()"
    names = ", ".join(f"StatusCode.{code.name}" for code in sorted(codes, key=_code_number))
    return f"frozenset({{{names}}})"


def _readable_repr(value: DataclassInstance) -> str:
    """Dataclass-style repr that lists status codes by name, in code order."""
    parts = []
    for item in fields(value):
        if not item.repr:
            continue
        attr = getattr(value, item.name)
        if isinstance(attr, frozenset) and all(isinstance(c, grpc.StatusCode) for c in attr):
            text = _codes_repr(attr)
        else:
            text = repr(attr)
        parts.append(f"{item.name}={text}")
    return f"{type(value).__name__}({', '.join(parts)})"


@dataclass(frozen=True, kw_only=True, slots=True)
class MethodName:
    """One ``name`` entry of a ``methodConfig``: a service and optionally a method.

    An absent, ``null`` or empty ``service`` / ``method`` is stored as ``None`` (gRPC treats
    the three alike). ``service`` only: every method of that service. Neither: the default
    entry, for every method of every service.

    >>> MethodName(service="echo.Echo", method="Say")
    MethodName(service='echo.Echo', method='Say')
    """

    service: str | None = None
    method: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class RetryPolicy:
    """``retryPolicy`` of a method (gRFC A6), plus gRPC's ``perAttemptRecvTimeout``.

    ``max_attempts`` counts the first attempt and is at most :data:`MAX_ATTEMPTS_LIMIT`
    after parsing. The n-th retry waits ``random(0, min(initial_backoff *
    backoff_multiplier ** (n - 1), max_backoff))`` seconds.

    >>> RetryPolicy(
    ...     max_attempts=3,
    ...     initial_backoff=0.1,
    ...     max_backoff=1.0,
    ...     backoff_multiplier=2.0,
    ...     retryable_status_codes=frozenset({grpc.StatusCode.UNAVAILABLE}),
    ... )  # doctest: +NORMALIZE_WHITESPACE
    RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0, backoff_multiplier=2.0,
                retryable_status_codes=frozenset({StatusCode.UNAVAILABLE}),
                per_attempt_recv_timeout=None)
    """

    max_attempts: int
    initial_backoff: float
    max_backoff: float
    backoff_multiplier: float
    retryable_status_codes: frozenset[grpc.StatusCode]
    per_attempt_recv_timeout: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "retryable_status_codes", frozenset(self.retryable_status_codes))

    __repr__ = _readable_repr


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class HedgingPolicy:
    """``hedgingPolicy`` of a method (gRFC A6).

    The first attempt goes at once, then one more every ``hedging_delay`` seconds up to
    ``max_attempts`` in all (at most :data:`MAX_ATTEMPTS_LIMIT`); a non-fatal status makes
    the next one go at once, any other failure ends the call.

    >>> HedgingPolicy(max_attempts=3, hedging_delay=0.05)
    HedgingPolicy(max_attempts=3, hedging_delay=0.05, non_fatal_status_codes=frozenset())
    """

    max_attempts: int
    hedging_delay: float = DEFAULT_HEDGING_DELAY
    non_fatal_status_codes: frozenset[grpc.StatusCode] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "non_fatal_status_codes", frozenset(self.non_fatal_status_codes))

    __repr__ = _readable_repr


@dataclass(frozen=True, kw_only=True, slots=True)
class MethodConfig:
    """One ``methodConfig`` entry: the names it applies to and their call policy.

    ``timeout`` is seconds; at most one of ``retry_policy`` and ``hedging_policy`` is set.

    >>> MethodConfig(names=(MethodName(service="echo.Echo"),), timeout=2.0)
    ... # doctest: +NORMALIZE_WHITESPACE
    MethodConfig(names=(MethodName(service='echo.Echo', method=None),), timeout=2.0,
                 wait_for_ready=None, max_request_message_bytes=None,
                 max_response_message_bytes=None, retry_policy=None, hedging_policy=None)
    """

    names: tuple[MethodName, ...]
    timeout: float | None = None
    wait_for_ready: bool | None = None
    max_request_message_bytes: int | None = None
    max_response_message_bytes: int | None = None
    retry_policy: RetryPolicy | None = None
    hedging_policy: HedgingPolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryThrottling:
    """``retryThrottling`` (gRFC A6): a token bucket shared by every call of the channel.

    Each failed call takes one token, each success adds ``token_ratio``; retries and hedges
    are sent only while more than ``max_tokens / 2`` tokens are left.

    >>> RetryThrottling(max_tokens=10, token_ratio=0.1)
    RetryThrottling(max_tokens=10, token_ratio=0.1)
    """

    max_tokens: float
    token_ratio: float


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthCheckConfig:
    """``healthCheckConfig`` (gRFC A17): the service name sent in ``grpc.health.v1`` Watch.

    The empty name asks for the health of the whole server. ``{"healthCheckConfig": {}}``
    without ``serviceName`` leaves health checking off, as in gRPC.

    >>> HealthCheckConfig(service_name="echo.Echo")
    HealthCheckConfig(service_name='echo.Echo')
    """

    service_name: str = ""


# ----------------------------------------------------------------- load balancing


@dataclass(frozen=True, kw_only=True, slots=True)
class PickFirst:
    """``pick_first``: every call to the first reachable address.

    >>> PickFirst(shuffle_address_list=True)
    PickFirst(shuffle_address_list=True)
    """

    name: ClassVar[str] = "pick_first"
    shuffle_address_list: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class RoundRobin:
    """``round_robin``: calls in turn over the endpoints that can take traffic.

    >>> RoundRobin()
    RoundRobin()
    """

    name: ClassVar[str] = "round_robin"


@dataclass(frozen=True, kw_only=True, slots=True)
class WeightedRoundRobin:
    """``weighted_round_robin`` (gRFC A58), weights from per-call ORCA reports or static.

    ``weights`` is an extension: ``{"host:port": weight}``; when it is set, load reports
    are not used. Out-of-band reports (``enableOobLoadReport: true``) are not supported;
    ``oob_reporting_period`` is accepted for compatibility and unused.

    >>> WeightedRoundRobin(weights={"10.0.0.1:50051": 3.0}).weights
    {'10.0.0.1:50051': 3.0}
    """

    name: ClassVar[str] = "weighted_round_robin"
    weights: Mapping[str, float] | None = None
    blackout_period: float = DEFAULT_BLACKOUT_PERIOD
    weight_expiration_period: float = DEFAULT_WEIGHT_EXPIRATION_PERIOD
    weight_update_period: float = DEFAULT_WEIGHT_UPDATE_PERIOD
    error_utilization_penalty: float = DEFAULT_ERROR_UTILIZATION_PENALTY
    enable_oob_load_report: bool = False
    oob_reporting_period: float = DEFAULT_OOB_REPORTING_PERIOD

    def __post_init__(self) -> None:
        if self.weights is not None and not isinstance(self.weights, _FrozenMap):
            object.__setattr__(self, "weights", _FrozenMap(self.weights))


@dataclass(frozen=True, kw_only=True, slots=True)
class LeastRequest:
    """``least_request`` (gRFC A48): the fewest outstanding calls of ``choice_count`` picks.

    >>> LeastRequest(choice_count=3)
    LeastRequest(choice_count=3)
    """

    name: ClassVar[str] = "least_request"
    choice_count: int = DEFAULT_CHOICE_COUNT


@dataclass(frozen=True, kw_only=True, slots=True)
class PeakEwma:
    """``peak_ewma`` (extension): lowest peak-sensitive latency estimate of a few picks.

    ``decay`` is the time constant, in seconds, of the moving average.

    >>> PeakEwma(decay=5.0)
    PeakEwma(decay=5.0, choice_count=2)
    """

    name: ClassVar[str] = "peak_ewma"
    decay: float = DEFAULT_PEAK_EWMA_DECAY
    choice_count: int = DEFAULT_CHOICE_COUNT


@dataclass(frozen=True, kw_only=True, slots=True)
class Random:
    """``random`` (extension): a uniformly random endpoint for each call.

    >>> Random()
    Random()
    """

    name: ClassVar[str] = "random"


@dataclass(frozen=True, kw_only=True, slots=True)
class RingHash:
    """``ring_hash`` (gRFC A42, A76): consistent hashing on one request header.

    ``request_hash_header`` is a lower-case metadata key (not ``-bin``); calls with the same
    value go to the same endpoint while it is up.

    >>> RingHash(request_hash_header="x-user-id")
    RingHash(request_hash_header='x-user-id', min_ring_size=1024, max_ring_size=4096)
    """

    name: ClassVar[str] = "ring_hash"
    request_hash_header: str
    min_ring_size: int = DEFAULT_MIN_RING_SIZE
    max_ring_size: int = DEFAULT_MAX_RING_SIZE


LoadBalancingPolicy: TypeAlias = (
    PickFirst | RoundRobin | WeightedRoundRobin | LeastRequest | PeakEwma | Random | RingHash
)

#: The policy used when the config names none. gRPC's default is ``pick_first``; ours is
#: ``round_robin`` because spreading calls is what this library is for.
DEFAULT_LOAD_BALANCING: LoadBalancingPolicy = RoundRobin()


def _name_key(name: MethodName) -> tuple[str, str]:
    return (name.service or "", name.method or "")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceConfig:
    """A whole service config. Build it with :func:`parse_service_config`.

    ``load_balancing`` defaults to :data:`DEFAULT_LOAD_BALANCING` (``round_robin``).

    >>> config = ServiceConfig(
    ...     method_configs=(
    ...         MethodConfig(names=(MethodName(),), timeout=5.0),
    ...         MethodConfig(names=(MethodName(service="echo.Echo"),), timeout=1.0),
    ...     )
    ... )
    >>> config.method_config("/echo.Echo/Say").timeout
    1.0
    >>> config.method_config("/other.Svc/Do").timeout
    5.0
    """

    load_balancing: LoadBalancingPolicy = DEFAULT_LOAD_BALANCING
    method_configs: tuple[MethodConfig, ...] = ()
    retry_throttling: RetryThrottling | None = None
    health_check: HealthCheckConfig | None = None
    _method_index: dict[tuple[str, str], MethodConfig] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_configs", tuple(self.method_configs))
        index: dict[tuple[str, str], MethodConfig] = {}
        for position, method_config in enumerate(self.method_configs):
            for name in method_config.names:
                key = _name_key(name)
                if key in index:
                    raise ConfigError(
                        f"method_configs[{position}]",
                        f"name {name!r} already appears in an earlier method config",
                    )
                index[key] = method_config
        object.__setattr__(self, "_method_index", index)

    def method_config(self, method: str) -> MethodConfig | None:
        """The method config for a call to ``method`` (``"/package.Service/Method"``).

        The most specific entry wins: service and method, then the service alone, then the
        default entry; ``None`` when nothing matches.
        """
        service, _, method_name = method.removeprefix("/").partition("/")
        index = self._method_index
        for key in ((service, method_name), (service, ""), ("", "")):
            found = index.get(key)
            if found is not None:
                return found
        return None


# --------------------------------------------------------------------------- errors


def _describe(value: object) -> str:
    """How a JSON value reads in an error message: ``the string "3"``, ``true``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
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


def _mismatch(path: str, expected: str, value: object) -> ConfigError:
    return ConfigError(path, f"expected {expected}, found {_describe(value)}")


def _did_you_mean(name: str, allowed: Sequence[str]) -> str:
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


def _child(path: str, key: str) -> str:
    """The JSON path of field ``key`` of the object at ``path``."""
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


# --------------------------------------------------------------------- scalar kinds

_Convert: TypeAlias = Callable[[object, str], Any]


@dataclass(frozen=True, slots=True)
class _Kind:
    """What a field holds: a description for messages and a checked conversion."""

    expected: str
    convert: _Convert


@dataclass(frozen=True, slots=True)
class _Field:
    """One row of an object's field table: JSON name, attribute, kind, required."""

    json_name: str
    attr: str
    kind: _Kind
    required: bool = False


def _bool_kind() -> _Kind:
    expected = "true or false"

    def convert(value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise _mismatch(path, expected, value)
        return value

    return _Kind(expected, convert)


def _string_kind() -> _Kind:
    expected = "a string"

    def convert(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _mismatch(path, expected, value)
        return value

    return _Kind(expected, convert)


def _as_integer(value: object, *, allow_string: bool) -> int | None:
    """``value`` as an integer if it is one (``3``, ``3.0``, ``"3"`` if allowed), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and allow_string and _DECIMAL.fullmatch(value):
        return int(value)
    return None


def _integer_kind(
    *,
    minimum: int,
    maximum: int = _INT64_MAX,
    clamp_above: int | None = None,
    allow_string: bool = False,
) -> _Kind:
    """An integer in [minimum, maximum]; values above ``clamp_above`` become it.

    ``allow_string`` accepts a decimal string, as proto3 JSON writes 64-bit integers.
    """
    expected = f"an integer >= {minimum}"
    if clamp_above is None and maximum != _INT64_MAX:
        expected = f"an integer from {minimum} to {maximum}"
    if allow_string:
        expected += " (a JSON number or a decimal string)"

    def convert(value: object, path: str) -> int:
        number = _as_integer(value, allow_string=allow_string)
        if number is None:
            raise _mismatch(path, expected, value)
        if number < minimum:
            raise _mismatch(path, expected, value)
        if clamp_above is not None and number > clamp_above:
            return clamp_above
        if number > maximum:
            raise _mismatch(path, expected, value)
        return number

    return _Kind(expected, convert)


def _number_kind(
    *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> _Kind:
    """A finite JSON number with optional bounds (``above`` is exclusive)."""
    bounds = []
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if at_most is not None:
        bounds.append(f"<= {at_most:g}")
    expected = "a number" + (f" {' and '.join(bounds)}" if bounds else "")

    def convert(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(path, expected, value)
        number = float(value)
        if (
            not math.isfinite(number)
            or (above is not None and not number > above)
            or (at_least is not None and number < at_least)
            or (at_most is not None and number > at_most)
        ):
            raise _mismatch(path, expected, value)
        return number

    return _Kind(expected, convert)


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
        raise _mismatch(path, _DURATION_EXPECTED, value)
    match = _DURATION.fullmatch(value)
    if match is None:
        raise _mismatch(path, _DURATION_EXPECTED, value)
    sign, whole, fraction = match.groups()
    if sign and (int(whole) or int(fraction or "0")):
        raise _mismatch(path, "a duration >= 0s", value)
    if int(whole) > MAX_DURATION_SECONDS:
        raise _mismatch(path, f"a duration of at most {MAX_DURATION_SECONDS}s", value)
    return float(Decimal(f"{whole}.{fraction or '0'}"))


def _duration_kind(*, positive: bool = False, clamp_below: float | None = None) -> _Kind:
    """A duration; ``positive`` forbids ``0s``; values below ``clamp_below`` become it."""
    expected = "a duration > 0s, like '1.5s'" if positive else "a duration, like '1.5s'"

    def convert(value: object, path: str) -> float:
        seconds = parse_duration(value, path)
        if positive and seconds <= 0:
            raise _mismatch(path, expected, value)
        if clamp_below is not None and seconds < clamp_below:
            return clamp_below
        return seconds

    return _Kind(expected, convert)


def _code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


_CODES_BY_NAME: dict[str, grpc.StatusCode] = {code.name: code for code in grpc.StatusCode}
_CODES_BY_NUMBER: dict[int, grpc.StatusCode] = {_code_number(c): c for c in grpc.StatusCode}
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
            hint = _did_you_mean(value.upper(), list(_CODES_BY_NAME))
            raise ConfigError(path, f"expected {_STATUS_EXPECTED}, found {_describe(value)};{hint}")
        return code
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        code = _CODES_BY_NUMBER.get(int(value))
        if code is not None:
            return code
    raise _mismatch(path, _STATUS_EXPECTED, value)


def _codes_kind(*, role: str) -> _Kind:
    """A JSON array of status codes other than OK, as a frozen set."""
    expected = f'an array of {role} status codes, like ["UNAVAILABLE"]'

    def convert(value: object, path: str) -> frozenset[grpc.StatusCode]:
        items = _expect_array(value, path, expected)
        codes = set()
        for position, item in enumerate(items):
            item_path = f"{path}[{position}]"
            code = parse_status_code(item, item_path)
            if code is grpc.StatusCode.OK:
                raise ConfigError(item_path, f"OK is not a failure, so it cannot be {role}")
            codes.add(code)
        return frozenset(codes)

    return _Kind(expected, convert)


# ------------------------------------------------------------------ structure kinds


def _expect_object(value: object, path: str, expected: str = "an object") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _mismatch(path or "config", expected, value)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path or "config", f"expected string field names, found {key!r}")
    return value


def _expect_array(value: object, path: str, expected: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise _mismatch(path, expected, value)
    return value


def _read_fields(value: object, path: str, table: Sequence[_Field], what: str) -> dict[str, Any]:
    """Check the object at ``path`` against its field table; its values by attribute.

    Unknown names are errors; ``null`` counts as absent (proto3 JSON); absent optional
    fields are left out so that the value class supplies its default.
    """
    obj = _expect_object(value, path, f"{what} (a JSON object)")
    by_name = {row.json_name: row for row in table}
    for key in obj:
        if key not in by_name:
            allowed = ", ".join(repr(name) for name in by_name) or "none"
            raise ConfigError(
                _child(path, key),
                f"unknown field {key!r} in {what}; allowed fields: {allowed}."
                + _did_you_mean(key, list(by_name)),
            )
    values: dict[str, Any] = {}
    for row in table:
        field_path = _child(path, row.json_name)
        raw = obj.get(row.json_name)
        if raw is None:
            if row.required:
                raise ConfigError(
                    field_path, f"is required: expected {row.kind.expected}, found nothing"
                )
            continue
        values[row.attr] = row.kind.convert(raw, field_path)
    return values


def _object_kind(
    expected: str,
    table: Sequence[_Field],
    build: Callable[[dict[str, Any], str], Any],
) -> _Kind:
    """A nested object read with ``table`` and turned into a value by ``build``."""

    def convert(value: object, path: str) -> Any:
        return build(_read_fields(value, path, table, expected), path)

    return _Kind(expected, convert)


def _array_kind(expected: str, item: _Kind, *, non_empty: bool = False) -> _Kind:
    def convert(value: object, path: str) -> tuple[Any, ...]:
        items = _expect_array(value, path, expected)
        if non_empty and not items:
            raise _mismatch(path, expected, value)
        return tuple(item.convert(entry, f"{path}[{i}]") for i, entry in enumerate(items))

    return _Kind(expected, convert)


# ------------------------------------------------------------------ method configs


def _build_retry_policy(values: dict[str, Any], path: str) -> RetryPolicy:
    # As in gRPC, an empty list is allowed only when perAttemptRecvTimeout is set.
    if not values["retryable_status_codes"] and "per_attempt_recv_timeout" not in values:
        raise ConfigError(
            _child(path, "retryableStatusCodes"),
            "expected at least one status code (an empty list is allowed only with "
            "'perAttemptRecvTimeout'), found an empty array",
        )
    return RetryPolicy(**values)


_ATTEMPTS = _integer_kind(minimum=MIN_ATTEMPTS, clamp_above=MAX_ATTEMPTS_LIMIT)

_RETRY_POLICY_FIELDS = (
    _Field("maxAttempts", "max_attempts", _ATTEMPTS, required=True),
    _Field("initialBackoff", "initial_backoff", _duration_kind(positive=True), required=True),
    _Field("maxBackoff", "max_backoff", _duration_kind(positive=True), required=True),
    _Field("backoffMultiplier", "backoff_multiplier", _number_kind(above=0), required=True),
    _Field(
        "retryableStatusCodes",
        "retryable_status_codes",
        _codes_kind(role="retryable"),
        required=True,
    ),
    _Field("perAttemptRecvTimeout", "per_attempt_recv_timeout", _duration_kind(positive=True)),
)

_HEDGING_POLICY_FIELDS = (
    _Field("maxAttempts", "max_attempts", _ATTEMPTS, required=True),
    _Field("hedgingDelay", "hedging_delay", _duration_kind()),
    _Field("nonFatalStatusCodes", "non_fatal_status_codes", _codes_kind(role="non-fatal")),
)


def _build_method_name(values: dict[str, Any], path: str) -> MethodName:
    service = values.get("service") or None
    method = values.get("method") or None
    if method is not None and service is None:
        raise ConfigError(
            _child(path, "service"),
            f"expected a service name, since 'method' is set ({method!r}), found nothing",
        )
    return MethodName(service=service, method=method)


_NAME_FIELDS = (
    _Field("service", "service", _string_kind()),
    _Field("method", "method", _string_kind()),
)


def _build_method_config(values: dict[str, Any], path: str) -> MethodConfig:
    if "retry_policy" in values and "hedging_policy" in values:
        raise ConfigError(
            _child(path, "hedgingPolicy"),
            "expected only one of 'retryPolicy' and 'hedgingPolicy', found both",
        )
    return MethodConfig(**values)


_MESSAGE_BYTES = _integer_kind(minimum=0, allow_string=True)

_METHOD_CONFIG_FIELDS = (
    _Field(
        "name",
        "names",
        _array_kind(
            'a non-empty array of names like {"service": "pkg.Service", "method": "M"}',
            _object_kind("a method name", _NAME_FIELDS, _build_method_name),
            non_empty=True,
        ),
        required=True,
    ),
    _Field("timeout", "timeout", _duration_kind()),
    _Field("waitForReady", "wait_for_ready", _bool_kind()),
    _Field("maxRequestMessageBytes", "max_request_message_bytes", _MESSAGE_BYTES),
    _Field("maxResponseMessageBytes", "max_response_message_bytes", _MESSAGE_BYTES),
    _Field(
        "retryPolicy",
        "retry_policy",
        _object_kind("a retry policy", _RETRY_POLICY_FIELDS, _build_retry_policy),
    ),
    _Field(
        "hedgingPolicy",
        "hedging_policy",
        _object_kind("a hedging policy", _HEDGING_POLICY_FIELDS, lambda v, _p: HedgingPolicy(**v)),
    ),
)

_METHOD_CONFIG = _object_kind("a method config", _METHOD_CONFIG_FIELDS, _build_method_config)


def _method_configs(value: object, path: str) -> tuple[MethodConfig, ...]:
    """The ``methodConfig`` array; a name may appear once in the whole service config."""
    configs: tuple[MethodConfig, ...] = _array_kind(
        "an array of method configs", _METHOD_CONFIG
    ).convert(value, path)
    seen: dict[tuple[str, str], str] = {}
    for i, method_config in enumerate(configs):
        for j, name in enumerate(method_config.names):
            name_path = f"{path}[{i}].name[{j}]"
            key = _name_key(name)
            if key in seen:
                shown = json.dumps(
                    {k: v for k, v in zip(("service", "method"), key, strict=True) if v}
                )
                if key == ("", ""):
                    shown += " (the default name)"
                raise ConfigError(
                    name_path,
                    f"expected each name once in the service config, found {shown} again "
                    f"(first at {seen[key]})",
                )
            seen[key] = name_path
    return configs


# ------------------------------------------------------------------ load balancing

_ADDRESS = re.compile(r"(?:\[[0-9A-Za-z:.%]+\]|[^\s:\[\]/]+):([0-9]{1,5})")


def _weights_kind() -> _Kind:
    expected = 'an object of "host:port" to weight, like {"10.0.0.1:50051": 2}'
    weight = _number_kind(above=0)

    def convert(value: object, path: str) -> _FrozenMap:
        obj = _expect_object(value, path, expected)
        if not obj:
            raise ConfigError(path, f"expected at least one address in {expected}, found {{}}")
        weights: dict[str, float] = {}
        for address, raw in obj.items():
            entry_path = f"{path}[{json.dumps(address)}]"
            match = _ADDRESS.fullmatch(address)
            if match is None or not 0 < int(match.group(1)) <= _MAX_PORT:
                raise ConfigError(
                    entry_path,
                    f"expected an address 'host:port' as the key, found {json.dumps(address)}",
                )
            weights[address] = weight.convert(raw, entry_path)
        return _FrozenMap(weights)

    return _Kind(expected, convert)


def _per_call_reports_only() -> _Kind:
    expected = "false (out-of-band load reports are not supported; per-call reports are used)"

    def convert(value: object, path: str) -> bool:
        if value is not False:
            raise _mismatch(path, expected, value)
        return False

    return _Kind(expected, convert)


_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")


def _hash_header_kind() -> _Kind:
    expected = "a metadata key such as 'x-user-id' (letters, digits, '-', '_', '.'; not -bin)"

    def convert(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _mismatch(path, expected, value)
        key = value.lower()  # metadata keys are case-insensitive; gRPC lower-cases them
        if not _METADATA_KEY.fullmatch(key) or key.endswith("-bin"):
            raise _mismatch(path, expected, value)
        return key

    return _Kind(expected, convert)


def _build_ring_hash(values: dict[str, Any], path: str) -> RingHash:
    low = values.get("min_ring_size", DEFAULT_MIN_RING_SIZE)
    high = values.get("max_ring_size", DEFAULT_MAX_RING_SIZE)
    if low > high:
        which = "maxRingSize" if "max_ring_size" in values else "the default maxRingSize"
        raise ConfigError(
            _child(path, "minRingSize"),
            f"expected at most {which} ({high}), found the number {low}",
        )
    return RingHash(**values)


_CHOICE_COUNT = _integer_kind(
    minimum=MIN_CHOICE_COUNT, clamp_above=MAX_CHOICE_COUNT, allow_string=True
)
_RING_SIZE = _integer_kind(minimum=1, maximum=RING_SIZE_LIMIT, allow_string=True)


@dataclass(frozen=True, slots=True)
class _Policy:
    """A supported ``loadBalancingConfig`` entry: its field table and how to build it."""

    fields: tuple[_Field, ...]
    build: Callable[[dict[str, Any], str], LoadBalancingPolicy]
    #: Whether the policy cannot run on defaults alone (so not via ``loadBalancingPolicy``).
    needs_config: bool = False


_RING_HASH = _Policy(
    (
        _Field("requestHashHeader", "request_hash_header", _hash_header_kind(), required=True),
        _Field("minRingSize", "min_ring_size", _RING_SIZE),
        _Field("maxRingSize", "max_ring_size", _RING_SIZE),
    ),
    _build_ring_hash,
    needs_config=True,
)
_LEAST_REQUEST = _Policy(
    (_Field("choiceCount", "choice_count", _CHOICE_COUNT),),
    lambda v, _p: LeastRequest(**v),
)

_POLICIES: dict[str, _Policy] = {
    "pick_first": _Policy(
        (_Field("shuffleAddressList", "shuffle_address_list", _bool_kind()),),
        lambda v, _p: PickFirst(**v),
    ),
    "round_robin": _Policy((), lambda v, _p: RoundRobin()),
    "weighted_round_robin": _Policy(
        (
            _Field("weights", "weights", _weights_kind()),
            _Field("blackoutPeriod", "blackout_period", _duration_kind()),
            _Field("weightExpirationPeriod", "weight_expiration_period", _duration_kind()),
            _Field(
                "weightUpdatePeriod",
                "weight_update_period",
                _duration_kind(clamp_below=MIN_WEIGHT_UPDATE_PERIOD),
            ),
            _Field(
                "errorUtilizationPenalty", "error_utilization_penalty", _number_kind(at_least=0)
            ),
            _Field("enableOobLoadReport", "enable_oob_load_report", _per_call_reports_only()),
            _Field("oobReportingPeriod", "oob_reporting_period", _duration_kind()),
        ),
        lambda v, _p: WeightedRoundRobin(**v),
    ),
    "least_request": _LEAST_REQUEST,
    "least_request_experimental": _LEAST_REQUEST,
    "peak_ewma": _Policy(
        (
            _Field("decay", "decay", _duration_kind(positive=True)),
            _Field("choiceCount", "choice_count", _CHOICE_COUNT),
        ),
        lambda v, _p: PeakEwma(**v),
    ),
    "random": _Policy((), lambda v, _p: Random()),
    "ring_hash": _RING_HASH,
    "ring_hash_experimental": _RING_HASH,
}

#: The policy names accepted in ``loadBalancingConfig``, aliases included.
SUPPORTED_POLICIES: tuple[str, ...] = tuple(_POLICIES)


def _load_balancing_config(value: object, path: str) -> LoadBalancingPolicy:
    """The first supported entry of ``loadBalancingConfig``; unknown names are skipped.

    As in gRPC, entries are looked at in order up to the first supported one, whose config
    must be valid; entries after it are not looked at.
    """
    entries = _expect_array(value, path, 'an array of {"policy_name": {config}} objects')
    seen: list[str] = []
    for position, entry in enumerate(entries):
        entry_path = f"{path}[{position}]"
        obj = _expect_object(entry, entry_path, "an object with one policy name as its key")
        if len(obj) != 1:
            found = ", ".join(repr(key) for key in obj) or "no keys"
            raise ConfigError(
                entry_path, f"expected an object with exactly one policy name, found {found}"
            )
        ((name, config),) = obj.items()
        policy = _POLICIES.get(name)
        if policy is None:
            seen.append(name)
            continue
        policy_path = _child(entry_path, name)
        values = _read_fields(config, policy_path, policy.fields, f"the {name} config")
        return policy.build(values, policy_path)
    hints = "".join(_did_you_mean(name, SUPPORTED_POLICIES) for name in seen)
    found = ", ".join(repr(name) for name in seen) or "an empty array"
    raise ConfigError(
        path,
        f"expected at least one supported policy ({', '.join(SUPPORTED_POLICIES)}), "
        f"found {found}.{hints}",
    )


def _load_balancing_policy(value: object, path: str) -> LoadBalancingPolicy:
    """The deprecated ``"loadBalancingPolicy": "round_robin"`` form (any case)."""
    plain = [name for name, policy in _POLICIES.items() if not policy.needs_config]
    expected = f"one of {', '.join(plain)}"
    if not isinstance(value, str):
        raise _mismatch(path, f"a policy name, {expected}", value)
    name = value.lower()
    policy = _POLICIES.get(name)
    if policy is None:
        raise ConfigError(
            path, f"expected {expected}, found {_describe(value)}." + _did_you_mean(name, plain)
        )
    if policy.needs_config:
        raise ConfigError(
            path,
            f"expected {expected}, found {_describe(value)}; {name} needs a config, so give "
            f'it in loadBalancingConfig: [{{"{name}": {{...}}}}]',
        )
    return policy.build({}, path)


# ---------------------------------------------------------------- service config


def _build_retry_throttling(values: dict[str, Any], path: str) -> RetryThrottling:
    # gRPC keeps three decimal places of tokenRatio and drops the rest (0.5466 -> 0.546).
    exact = Decimal(repr(values["token_ratio"]))
    kept = exact.quantize(Decimal(1).scaleb(-TOKEN_RATIO_DECIMALS), ROUND_DOWN, Context(prec=400))
    if kept <= 0:
        raise ConfigError(
            _child(path, "tokenRatio"),
            f"expected a number >= 0.001 (gRPC keeps {TOKEN_RATIO_DECIMALS} decimal places), "
            f"found the number {values['token_ratio']!r}",
        )
    return RetryThrottling(max_tokens=float(values["max_tokens"]), token_ratio=float(kept))


def _build_health_check(values: dict[str, Any], _path: str) -> HealthCheckConfig | None:
    # A17: without a service name, health checking stays off.
    if "service_name" not in values:
        return None
    return HealthCheckConfig(**values)


_SERVICE_CONFIG_FIELDS = (
    _Field(
        "loadBalancingConfig",
        "load_balancing_config",
        _Kind("an array of policies", _load_balancing_config),
    ),
    _Field(
        "loadBalancingPolicy",
        "load_balancing_policy",
        _Kind("a policy name", _load_balancing_policy),
    ),
    _Field("methodConfig", "method_configs", _Kind("an array of method configs", _method_configs)),
    _Field(
        "retryThrottling",
        "retry_throttling",
        _object_kind(
            "a retry throttling policy",
            (
                _Field(
                    "maxTokens",
                    "max_tokens",
                    _integer_kind(minimum=1, maximum=MAX_RETRY_TOKENS),
                    required=True,
                ),
                _Field("tokenRatio", "token_ratio", _number_kind(above=0), required=True),
            ),
            _build_retry_throttling,
        ),
    ),
    _Field(
        "healthCheckConfig",
        "health_check",
        _object_kind(
            "a health check config",
            (_Field("serviceName", "service_name", _string_kind()),),
            _build_health_check,
        ),
    ),
)


def _build_service_config(values: dict[str, Any]) -> ServiceConfig:
    # loadBalancingConfig wins; the deprecated loadBalancingPolicy is used only without it.
    policy = values.pop("load_balancing_config", None)
    deprecated = values.pop("load_balancing_policy", None)
    if policy is None:
        policy = deprecated
    if policy is not None:
        values["load_balancing"] = policy
    return ServiceConfig(**values)


def _parse_json(text: str, origin: str) -> object:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise ConfigError("config", f"field {key!r} appears twice in an object in {origin}")
            obj[key] = value
        return obj

    def no_constants(name: str) -> object:
        raise ConfigError("config", f"{name} is not valid JSON (in {origin})")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "config", f"invalid JSON in {origin}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def _read_file(path: str | os.PathLike[str]) -> object:
    shown = repr(os.fspath(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("config", f"service config file {shown} is not UTF-8 text") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError("config", f"cannot read service config file {shown}: {reason}") from exc
    return _parse_json(text, f"service config file {shown}")


def parse_service_config(
    source: ServiceConfig | Mapping[str, Any] | str | os.PathLike[str] | None,
) -> ServiceConfig:
    """Validate a gRPC service config and return it as a :class:`ServiceConfig`.

    ``source`` is ``None`` (every default), a mapping (parsed JSON), JSON text (a string
    that starts with ``{``), a path to a JSON file (any other string or path-like), or an
    already-built :class:`ServiceConfig` (returned as is). Raises
    :class:`~resilientrpc.errors.ConfigError` naming the first invalid field; unreadable
    files and malformed JSON are reported with the path ``config``.

    >>> config = parse_service_config({
    ...     "methodConfig": [{
    ...         "name": [{"service": "echo.Echo"}],
    ...         "retryPolicy": {
    ...             "maxAttempts": 9, "initialBackoff": "0.1s", "maxBackoff": "1s",
    ...             "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"],
    ...         },
    ...     }],
    ... })
    >>> config.method_config("/echo.Echo/Say").retry_policy.max_attempts
    5
    >>> parse_service_config({"methodConfig": [{"name": [{}], "timeout": 3}]})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    resilientrpc.errors.ConfigError: methodConfig[0].timeout: expected a duration string: ...
    """
    if source is None:
        return ServiceConfig()
    if isinstance(source, ServiceConfig):
        return source
    raw: object
    if isinstance(source, Mapping):
        raw = source
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        raw = _parse_json(source, "the service config text")
    elif isinstance(source, str | os.PathLike):
        raw = _read_file(source)
    else:
        raise _mismatch("config", "a mapping, JSON text, a path to a JSON file or None", source)
    values = _read_fields(raw, "", _SERVICE_CONFIG_FIELDS, "the service config")
    return _build_service_config(values)
