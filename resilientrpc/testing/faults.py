"""What a test backend does wrong: the :class:`Faults` and :class:`LoadReport` values.

This module owns the fault values, their validation, and their translation to and from
the ``resilientrpc.faults.v1.FaultConfig`` message that the Faults service speaks, so an
in-process backend and one in a child process are configured by exactly the same rules.
It does no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from resilientrpc.errors import ConfigError
from resilientrpc.load_report import LOAD_REPORT_ALIAS_KEY, LOAD_REPORT_KEY, LoadReport
from resilientrpc.proto import faults_pb2

__all__ = [
    "DEFAULT_ERROR_CODE",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_FAIL_AFTER_MESSAGES",
    "DEFAULT_FAIL_NEXT",
    "DEFAULT_HANG",
    "DEFAULT_HEALTH",
    "DEFAULT_LATENCY",
    "DEFAULT_LATENCY_JITTER",
    "DEFAULT_PUSHBACK_MS",
    "DEFAULT_RETRY_INFO_SECONDS",
    "DEFAULT_STALL_RATE",
    "DEFAULT_STALL_SECONDS",
    "HEALTH_STATUSES",
    "LOAD_REPORT_ALIAS_METADATA_KEY",
    "LOAD_REPORT_METADATA_KEY",
    "PLAIN_FIELDS",
    "Faults",
    "LoadReport",
    "apply_fault_config",
    "changes_to_fault_config",
    "fault_config_from_faults",
    "faults_from_fault_config",
    "replace_faults",
    "status_code_from_number",
]

DEFAULT_LATENCY = 0.0
DEFAULT_LATENCY_JITTER = 0.0
DEFAULT_ERROR_RATE = 0.0
DEFAULT_ERROR_CODE = grpc.StatusCode.UNAVAILABLE
DEFAULT_HANG = False
DEFAULT_HEALTH = "SERVING"
DEFAULT_FAIL_NEXT = 0
DEFAULT_PUSHBACK_MS = ""
DEFAULT_RETRY_INFO_SECONDS = 0.0
DEFAULT_STALL_RATE = 0.0
DEFAULT_STALL_SECONDS = 0.0
DEFAULT_FAIL_AFTER_MESSAGES = 0

_INT32_MAX = 2**31 - 1

HEALTH_STATUSES = ("SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
"""The ``grpc.health.v1`` statuses a backend can be told to report."""

LOAD_REPORT_METADATA_KEY = LOAD_REPORT_KEY
"""Trailing metadata key of the serialized ORCA load report (gRFC A51).

grpcio's C core parses this key itself and never publishes it to the application, so a
Python client cannot read it; backends send the same bytes under
:data:`LOAD_REPORT_ALIAS_METADATA_KEY` as well.
"""

LOAD_REPORT_ALIAS_METADATA_KEY = LOAD_REPORT_ALIAS_KEY
"""The key under which a grpcio client can read the load report (same bytes)."""

_LOAD_FIELDS = (
    "cpu_utilization",
    "application_utilization",
    "mem_utilization",
    "rps_fractional",
    "eps",
)

_CODES_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def _check_non_negative(path: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(path, f"expected a finite number >= 0, got {value!r}")


def _check_probability(path: str, value: float) -> None:
    _check_non_negative(path, value)
    if value > 1:
        raise ConfigError(path, f"expected a probability in [0, 1], got {value!r}")


def _check_count(path: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
        raise ConfigError(path, f"expected an integer in [0, {_INT32_MAX}], got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Faults:
    """The faults a test backend injects into every Echo call.

    Each call first sleeps ``stall_seconds`` with probability ``stall_rate``, then waits
    ``latency`` seconds plus a uniform extra delay in ``[0, latency_jitter)``, then, with
    ``hang``, never answers until the client gives up; otherwise it fails with
    ``error_code`` if ``fail_next`` is above 0 (which counts it down), else with
    probability ``error_rate``. Server-streaming and bidi calls also fail with
    ``error_code`` right after their ``fail_after_messages``-th reply (0: never).
    Injected failures carry the trailing metadata ``grpc-retry-pushback-ms:
    <pushback_ms>`` unless it is ``""``, and a ``google.rpc.RetryInfo`` with
    ``retry_info_seconds`` in ``grpc-status-details-bin`` unless it is 0. grpc's core
    parses the pushback key: a value that is not an integer (``"abc"``) reaches a grpcio
    client as ``"-9223372036854775808"``, negative as A6 wants for "do not retry".
    ``health`` is what the backend's ``grpc.health.v1`` service reports, and a
    ``load_report`` is attached to every reply as the ``endpoint-load-metrics-bin``
    trailer.

    >>> Faults(latency=0.05, error_rate=0.1)
    Faults(latency=0.05, latency_jitter=0.0, error_rate=0.1, \
error_code=<StatusCode.UNAVAILABLE: (14, 'unavailable')>, hang=False, health='SERVING', \
load_report=None, fail_next=0, pushback_ms='', retry_info_seconds=0.0, stall_rate=0.0, \
stall_seconds=0.0, fail_after_messages=0)
    >>> Faults(error_rate=2.0)
    Traceback (most recent call last):
    ...
    resilientrpc.errors.ConfigError: faults.error_rate: expected a probability in [0, 1], \
got 2.0
    """

    latency: float = DEFAULT_LATENCY
    latency_jitter: float = DEFAULT_LATENCY_JITTER
    error_rate: float = DEFAULT_ERROR_RATE
    error_code: grpc.StatusCode = DEFAULT_ERROR_CODE
    hang: bool = DEFAULT_HANG
    health: str = DEFAULT_HEALTH
    load_report: LoadReport | None = None
    fail_next: int = DEFAULT_FAIL_NEXT
    pushback_ms: str = DEFAULT_PUSHBACK_MS
    retry_info_seconds: float = DEFAULT_RETRY_INFO_SECONDS
    stall_rate: float = DEFAULT_STALL_RATE
    stall_seconds: float = DEFAULT_STALL_SECONDS
    fail_after_messages: int = DEFAULT_FAIL_AFTER_MESSAGES

    def __post_init__(self) -> None:
        _check_non_negative("faults.latency", self.latency)
        _check_non_negative("faults.latency_jitter", self.latency_jitter)
        _check_probability("faults.error_rate", self.error_rate)
        _check_count("faults.fail_next", self.fail_next)
        # Any printable ASCII, "-1" and "abc" included: tests send invalid pushbacks on purpose.
        if not isinstance(self.pushback_ms, str) or not (
            self.pushback_ms.isascii() and self.pushback_ms.isprintable()
        ):
            raise ConfigError(
                "faults.pushback_ms",
                f"expected a string of printable ASCII characters, got {self.pushback_ms!r}",
            )
        _check_non_negative("faults.retry_info_seconds", self.retry_info_seconds)
        _check_probability("faults.stall_rate", self.stall_rate)
        _check_non_negative("faults.stall_seconds", self.stall_seconds)
        _check_count("faults.fail_after_messages", self.fail_after_messages)
        if (
            not isinstance(self.error_code, grpc.StatusCode)
            or self.error_code is grpc.StatusCode.OK
        ):
            raise ConfigError(
                "faults.error_code",
                f"expected a grpc.StatusCode other than OK, got {self.error_code!r}",
            )
        if not isinstance(self.hang, bool):
            raise ConfigError("faults.hang", f"expected True or False, got {self.hang!r}")
        if self.health not in HEALTH_STATUSES:
            raise ConfigError(
                "faults.health",
                f"expected one of {', '.join(HEALTH_STATUSES)}, got {self.health!r}",
            )
        if self.load_report is not None and not isinstance(self.load_report, LoadReport):
            raise ConfigError(
                "faults.load_report", f"expected a LoadReport or None, got {self.load_report!r}"
            )
        if self.load_report is not None:
            for name in _LOAD_FIELDS:
                _check_non_negative(f"faults.load_report.{name}", getattr(self.load_report, name))


_FAULT_FIELDS = frozenset(field.name for field in dataclasses.fields(Faults))

PLAIN_FIELDS = (
    "fail_next",
    "pushback_ms",
    "retry_info_seconds",
    "stall_rate",
    "stall_seconds",
    "fail_after_messages",
)
"""Faults fields with the same name and value in ``FaultConfig`` (and on the command line)."""


def replace_faults(faults: Faults, changes: Mapping[str, object]) -> Faults:
    """``faults`` with ``changes`` applied, validated; unknown names raise ConfigError."""
    for name in changes:
        if name not in _FAULT_FIELDS:
            raise ConfigError(
                f"faults.{name}",
                f"unknown field; expected one of {', '.join(sorted(_FAULT_FIELDS))}",
            )
    # Values are checked by Faults.__post_init__; mypy cannot type ** of a plain mapping.
    return dataclasses.replace(faults, **changes)  # type: ignore[arg-type]


def status_code_from_number(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` whose numeric value is ``number``."""
    try:
        return _CODES_BY_NUMBER[number]
    except KeyError:
        raise ConfigError("faults.error_code", f"no grpc status code has number {number}") from None


def fault_config_from_faults(faults: Faults) -> faults_pb2.FaultConfig:
    """The complete ``FaultConfig`` message (every field set) describing ``faults``."""
    report = faults.load_report if faults.load_report is not None else LoadReport()
    config = faults_pb2.FaultConfig(
        latency_seconds=faults.latency,
        latency_jitter_seconds=faults.latency_jitter,
        error_rate=faults.error_rate,
        error_code=faults.error_code.value[0],
        hang=faults.hang,
        health_status=faults.health,
        send_load_report=faults.load_report is not None,
        cpu_utilization=report.cpu_utilization,
        application_utilization=report.application_utilization,
        rps_fractional=report.rps_fractional,
        eps=report.eps,
        mem_utilization=report.mem_utilization,
    )
    for name in PLAIN_FIELDS:
        setattr(config, name, getattr(faults, name))
    return config


def apply_fault_config(faults: Faults, config: faults_pb2.FaultConfig) -> Faults:
    """``faults`` with the fields that ``config`` sets applied; unset fields are kept.

    Load values update the current report (or a zero one). A report is sent afterwards
    when ``send_load_report`` says so or, if that is unset, when one was already sent or
    any load value is set.
    """
    changes: dict[str, object] = {}
    if config.HasField("latency_seconds"):
        changes["latency"] = config.latency_seconds
    if config.HasField("latency_jitter_seconds"):
        changes["latency_jitter"] = config.latency_jitter_seconds
    if config.HasField("error_rate"):
        changes["error_rate"] = config.error_rate
    if config.HasField("error_code"):
        changes["error_code"] = status_code_from_number(config.error_code)
    if config.HasField("hang"):
        changes["hang"] = config.hang
    if config.HasField("health_status"):
        changes["health"] = config.health_status
    for name in PLAIN_FIELDS:
        if config.HasField(name):
            changes[name] = getattr(config, name)
    load_changes = {name: getattr(config, name) for name in _LOAD_FIELDS if config.HasField(name)}
    if config.HasField("send_load_report"):
        send = config.send_load_report
    else:
        send = faults.load_report is not None or bool(load_changes)
    if not send:
        changes["load_report"] = None
    elif load_changes or faults.load_report is None:
        base = faults.load_report if faults.load_report is not None else LoadReport()
        changes["load_report"] = dataclasses.replace(base, **load_changes)
    return replace_faults(faults, changes)


def faults_from_fault_config(config: faults_pb2.FaultConfig) -> Faults:
    """The :class:`Faults` a ``FaultConfig`` describes, unset fields at their defaults."""
    return apply_fault_config(Faults(), config)


def changes_to_fault_config(changes: Mapping[str, object]) -> faults_pb2.FaultConfig:
    """A ``FaultConfig`` that makes exactly ``changes`` (Faults field names) when applied.

    The values are validated first, so a bad one raises ConfigError here rather than
    coming back as an INVALID_ARGUMENT error from the backend.
    """
    wanted = replace_faults(Faults(), changes)
    full = fault_config_from_faults(wanted)
    config = faults_pb2.FaultConfig()
    if "latency" in changes:
        config.latency_seconds = full.latency_seconds
    if "latency_jitter" in changes:
        config.latency_jitter_seconds = full.latency_jitter_seconds
    if "error_rate" in changes:
        config.error_rate = full.error_rate
    if "error_code" in changes:
        config.error_code = full.error_code
    if "hang" in changes:
        config.hang = full.hang
    if "health" in changes:
        config.health_status = full.health_status
    for name in PLAIN_FIELDS:
        if name in changes:
            setattr(config, name, getattr(full, name))
    if "load_report" in changes:
        config.send_load_report = full.send_load_report
        if wanted.load_report is not None:
            for name in _LOAD_FIELDS:
                setattr(config, name, getattr(full, name))
    return config
