"""``methodConfig``: per-method call policy (timeout, wait for ready, message limits,
retries and hedging, gRFC A6), parsed into frozen values.

A name may appear once in the whole service config; the most specific entry for a call
is found by :meth:`~resilientrpc.config.ServiceConfig.method_config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import grpc

from resilientrpc.config._schema import (
    Field,
    Kind,
    array_kind,
    bool_kind,
    child,
    code_number,
    codes_kind,
    duration_kind,
    integer_kind,
    number_kind,
    object_kind,
    string_kind,
)
from resilientrpc.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DEFAULT_HEDGING_DELAY",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_BACKOFF_MULTIPLIER",
    "MIN_ATTEMPTS",
    "HedgingPolicy",
    "MethodConfig",
    "MethodName",
    "RetryPolicy",
    "method_configs_kind",
    "name_key",
]

#: Attempts (the first one included) that a retry or hedging policy may ask for at most;
#: larger values are treated as this one, as gRPC does (A6), with a warning on the
#: ``resilientrpc.config`` logger naming the field.
MAX_ATTEMPTS_LIMIT = 5
#: The fewest attempts a retry or hedging policy may ask for (A6: "greater than 1").
MIN_ATTEMPTS = 2
#: ``backoffMultiplier`` values above this are refused: with at most four retries a
#: larger one only reaches ``maxBackoff`` sooner, and ``multiplier ** 3`` stays finite.
MAX_BACKOFF_MULTIPLIER = 1e6

DEFAULT_HEDGING_DELAY = 0.0


def _codes_repr(codes: frozenset[grpc.StatusCode]) -> str:
    if not codes:
        return "frozenset()"
    names = ", ".join(f"StatusCode.{code.name}" for code in sorted(codes, key=code_number))
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


def name_key(name: MethodName) -> tuple[str, str]:
    """The lookup key of a name: ``(service, method)`` with ``""`` for absent parts."""
    return (name.service or "", name.method or "")


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

    Extension (``hedgingDelayPercentile``, Finagle's backup requests): with
    ``hedging_delay_percentile`` set, in (0, 100), the delay is that percentile of the
    method's live latency; ``hedging_delay`` is used until enough samples exist.

    >>> HedgingPolicy(max_attempts=3, hedging_delay=0.05)  # doctest: +NORMALIZE_WHITESPACE
    HedgingPolicy(max_attempts=3, hedging_delay=0.05, non_fatal_status_codes=frozenset(),
                  hedging_delay_percentile=None)
    """

    max_attempts: int
    hedging_delay: float = DEFAULT_HEDGING_DELAY
    non_fatal_status_codes: frozenset[grpc.StatusCode] = frozenset()
    hedging_delay_percentile: float | None = None

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


# ---------------------------------------------------------------------------- parsing


def _build_retry_policy(values: dict[str, Any], path: str) -> RetryPolicy:
    # As in gRPC, an empty list is allowed only when perAttemptRecvTimeout is set.
    if not values["retryable_status_codes"] and "per_attempt_recv_timeout" not in values:
        raise ConfigError(
            child(path, "retryableStatusCodes"),
            "expected at least one status code (an empty list is allowed only with "
            "'perAttemptRecvTimeout'), found an empty array",
        )
    return RetryPolicy(**values)


_ATTEMPTS = integer_kind(minimum=MIN_ATTEMPTS, clamp_above=MAX_ATTEMPTS_LIMIT, warn_clamp=True)

_RETRY_POLICY_FIELDS = (
    Field("maxAttempts", "max_attempts", _ATTEMPTS, required=True),
    Field("initialBackoff", "initial_backoff", duration_kind(positive=True), required=True),
    Field("maxBackoff", "max_backoff", duration_kind(positive=True), required=True),
    Field(
        "backoffMultiplier",
        "backoff_multiplier",
        number_kind(above=0, at_most=MAX_BACKOFF_MULTIPLIER),
        required=True,
    ),
    Field(
        "retryableStatusCodes",
        "retryable_status_codes",
        codes_kind(role="retryable"),
        required=True,
    ),
    Field("perAttemptRecvTimeout", "per_attempt_recv_timeout", duration_kind(positive=True)),
)

_HEDGING_POLICY_FIELDS = (
    Field("maxAttempts", "max_attempts", _ATTEMPTS, required=True),
    Field("hedgingDelay", "hedging_delay", duration_kind()),
    Field("nonFatalStatusCodes", "non_fatal_status_codes", codes_kind(role="non-fatal")),
    Field("hedgingDelayPercentile", "hedging_delay_percentile", number_kind(above=0, below=100)),
)


def _build_method_name(values: dict[str, Any], path: str) -> MethodName:
    service = values.get("service") or None
    method = values.get("method") or None
    if method is not None and service is None:
        raise ConfigError(
            child(path, "service"),
            f"expected a service name, since 'method' is set ({method!r}), found nothing",
        )
    return MethodName(service=service, method=method)


_NAME_FIELDS = (
    Field("service", "service", string_kind()),
    Field("method", "method", string_kind()),
)


def _build_method_config(values: dict[str, Any], path: str) -> MethodConfig:
    if "retry_policy" in values and "hedging_policy" in values:
        raise ConfigError(
            child(path, "hedgingPolicy"),
            "expected only one of 'retryPolicy' and 'hedgingPolicy', found both",
        )
    return MethodConfig(**values)


_MESSAGE_BYTES = integer_kind(minimum=0, allow_string=True)

_METHOD_CONFIG_FIELDS = (
    Field(
        "name",
        "names",
        array_kind(
            'a non-empty array of names like {"service": "pkg.Service", "method": "M"}',
            object_kind("a method name", _NAME_FIELDS, _build_method_name),
            non_empty=True,
        ),
        required=True,
    ),
    Field("timeout", "timeout", duration_kind()),
    Field("waitForReady", "wait_for_ready", bool_kind()),
    Field("maxRequestMessageBytes", "max_request_message_bytes", _MESSAGE_BYTES),
    Field("maxResponseMessageBytes", "max_response_message_bytes", _MESSAGE_BYTES),
    Field(
        "retryPolicy",
        "retry_policy",
        object_kind("a retry policy", _RETRY_POLICY_FIELDS, _build_retry_policy),
    ),
    Field(
        "hedgingPolicy",
        "hedging_policy",
        object_kind("a hedging policy", _HEDGING_POLICY_FIELDS, lambda v, _p: HedgingPolicy(**v)),
    ),
)

_METHOD_CONFIGS = array_kind(
    "an array of method configs",
    object_kind("a method config", _METHOD_CONFIG_FIELDS, _build_method_config),
)


def _method_configs(value: object, path: str) -> tuple[MethodConfig, ...]:
    """The ``methodConfig`` array; a name may appear once in the whole service config."""
    configs: tuple[MethodConfig, ...] = _METHOD_CONFIGS.convert(value, path)
    seen: dict[tuple[str, str], str] = {}
    for i, method_config in enumerate(configs):
        for j, name in enumerate(method_config.names):
            name_path = f"{path}[{i}].name[{j}]"
            key = name_key(name)
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


#: The kind of the service config's ``methodConfig`` field.
method_configs_kind = Kind("an array of method configs", _method_configs)
