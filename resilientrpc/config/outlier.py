"""Outlier detection (gRFC A50's ``outlier_detection`` policy) and the channel-wide
endpoint-selection settings (``commonLbConfig``): the values and their field tables.

``outlier_detection`` (or ``outlier_detection_experimental``) wraps a child policy in
``loadBalancingConfig``; the parsed :class:`~resilientrpc.config.ServiceConfig` keeps the
child as ``load_balancing`` and the wrapper's settings as ``outlier_detection``.

A50's fields and defaults, plus extensions in the same style:

* ``consecutiveFailures`` (Envoy's ``consecutive_5xx``, Finagle's failure accrual): eject
  at once after that many failures in a row;
* ``latencyEjection``: eject an endpoint whose mean latency over an interval is more than
  ``factor`` times the median of its peers' (and at least ``minimumDifference`` more);
* ``halfOpenTrials``: after its ejection time, an endpoint takes that many trial calls
  that decide readmission or a longer ejection;
* ``failureStatusCodes``: the codes that count as failures (A50 counts every non-OK
  code; the default here is the server-failure set,
  :data:`~resilientrpc.endpoint.FAILURE_CODES`, so a NOT_FOUND answer does not eject).

Limits beyond A50's (durations >= 0, percentages <= 100): ``interval`` is > 0 (a sweep
every 0 s would never rest), ``maxEjectionTime`` is at least ``baseEjectionTime``,
every ``requestVolume`` is >= 1 (an endpoint is never judged on no calls), and the
settings that only act on ejections (``interval``, the ejection times and percent,
``halfOpenTrials``, ``failureStatusCodes``) are refused when no ejection algorithm is
set, since they would not take effect. ``childPolicy`` is read by
:mod:`resilientrpc.config.balancing`, which owns the policy table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import grpc

from resilientrpc.config._schema import (
    Field,
    child,
    codes_kind,
    duration_kind,
    integer_kind,
    number_kind,
    object_kind,
)
from resilientrpc.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_EJECTION_TIME",
    "DEFAULT_HALF_OPEN_TRIALS",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_EJECTION_PERCENT",
    "DEFAULT_MAX_EJECTION_TIME",
    "DEFAULT_PANIC_THRESHOLD",
    "OUTLIER_DETECTION_FIELDS",
    "PEAK_EWMA_OUTLIERS",
    "UINT32_MAX",
    "CommonLbConfig",
    "ConsecutiveFailures",
    "FailurePercentageEjection",
    "LatencyEjection",
    "OutlierDetection",
    "SuccessRateEjection",
    "build_outlier_detection",
    "common_lb_config_kind",
]

# A50's defaults.
DEFAULT_INTERVAL = 10.0
DEFAULT_BASE_EJECTION_TIME = 30.0
DEFAULT_MAX_EJECTION_TIME = 300.0
DEFAULT_MAX_EJECTION_PERCENT = 10
# Extensions.
DEFAULT_HALF_OPEN_TRIALS = 3
#: Envoy's default ``healthy_panic_threshold``, percent.
DEFAULT_PANIC_THRESHOLD = 50.0


@dataclass(frozen=True, kw_only=True, slots=True)
class SuccessRateEjection:
    """A50 ``successRateEjection``: eject below ``mean - stdev * stdev_factor / 1000``.

    >>> SuccessRateEjection().stdev_factor
    1900
    """

    stdev_factor: int = 1900
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class FailurePercentageEjection:
    """A50 ``failurePercentageEjection``: eject at ``threshold`` percent failures or more.

    >>> FailurePercentageEjection().threshold
    85
    """

    threshold: int = 85
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 50


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsecutiveFailures:
    """Extension ``consecutiveFailures``: eject at once after ``count`` failures in a row.

    >>> ConsecutiveFailures().count
    5
    """

    count: int = 5
    enforcement_percentage: int = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class LatencyEjection:
    """Extension ``latencyEjection``: eject an endpoint persistently far slower than its peers.

    At each interval, an endpoint with at least ``request_volume`` successful calls whose
    mean latency is above ``factor`` x the median of the others' means, and above it by
    at least ``minimum_difference`` seconds, is ejected; at least ``minimum_hosts``
    endpoints must have the volume.

    >>> LatencyEjection().factor
    3.0
    """

    factor: float = 3.0
    minimum_difference: float = 0.005
    minimum_hosts: int = 3
    request_volume: int = 10
    enforcement_percentage: int = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class OutlierDetection:
    """``outlier_detection`` (gRFC A50) settings, with this library's extensions.

    No algorithm is on unless its field is set (as in A50).

    >>> OutlierDetection(consecutive_failures=ConsecutiveFailures(count=3)).interval
    10.0
    """

    name: ClassVar[str] = "outlier_detection"
    interval: float = DEFAULT_INTERVAL
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME
    max_ejection_percent: int = DEFAULT_MAX_EJECTION_PERCENT
    success_rate_ejection: SuccessRateEjection | None = None
    failure_percentage_ejection: FailurePercentageEjection | None = None
    consecutive_failures: ConsecutiveFailures | None = None
    latency_ejection: LatencyEjection | None = None
    half_open_trials: int = DEFAULT_HALF_OPEN_TRIALS
    failure_status_codes: frozenset[grpc.StatusCode] | None = None
    """None: :data:`resilientrpc.endpoint.FAILURE_CODES`."""

    @property
    def enabled(self) -> bool:
        """Whether any ejection algorithm is on."""
        return any(
            algorithm is not None
            for algorithm in (
                self.success_rate_ejection,
                self.failure_percentage_ejection,
                self.consecutive_failures,
                self.latency_ejection,
            )
        )


#: What ``peak_ewma`` runs when the config wraps it in no ``outlier_detection``: latency
#: ejection only, checked every second, so a backend persistently far slower than its
#: peers is left out (the p99 goal of peak_ewma "with its defaults").
PEAK_EWMA_OUTLIERS = OutlierDetection(
    interval=1.0,
    base_ejection_time=10.0,
    max_ejection_time=60.0,
    latency_ejection=LatencyEjection(),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CommonLbConfig:
    """``commonLbConfig`` (extension, Envoy's names): panic threshold and slow start.

    ``healthy_panic_threshold`` is a percent (0 turns panic mode off);
    ``slow_start_window`` is in seconds (0, the default, turns slow start off).

    >>> CommonLbConfig()
    CommonLbConfig(healthy_panic_threshold=50.0, slow_start_window=0.0)
    """

    healthy_panic_threshold: float = DEFAULT_PANIC_THRESHOLD
    slow_start_window: float = 0.0


# ---------------------------------------------------------------------------- parsing

#: A50's counts are ``UInt32Value``: at most this.
UINT32_MAX = 2**32 - 1

_PERCENT = integer_kind(minimum=0, maximum=100)
_HOSTS = integer_kind(minimum=0, maximum=UINT32_MAX)
_VOLUME = integer_kind(minimum=1, maximum=UINT32_MAX)


def _enforcement() -> Field:
    return Field("enforcementPercentage", "enforcement_percentage", _PERCENT)


def _a50_fields(first: Field) -> tuple[Field, ...]:
    """An A50 algorithm's fields: its own first, then the three both algorithms share."""
    return (
        first,
        _enforcement(),
        Field("minimumHosts", "minimum_hosts", _HOSTS),
        Field("requestVolume", "request_volume", _VOLUME),
    )


_ALGORITHMS = (
    Field(
        "successRateEjection",
        "success_rate_ejection",
        object_kind(
            "a success rate ejection config",
            _a50_fields(
                Field("stdevFactor", "stdev_factor", integer_kind(minimum=0, maximum=UINT32_MAX))
            ),
            lambda v, _p: SuccessRateEjection(**v),
        ),
    ),
    Field(
        "failurePercentageEjection",
        "failure_percentage_ejection",
        object_kind(
            "a failure percentage ejection config",
            _a50_fields(Field("threshold", "threshold", _PERCENT)),
            lambda v, _p: FailurePercentageEjection(**v),
        ),
    ),
    Field(
        "consecutiveFailures",
        "consecutive_failures",
        object_kind(
            "a consecutive failures config",
            (Field("count", "count", integer_kind(minimum=1, maximum=UINT32_MAX)), _enforcement()),
            lambda v, _p: ConsecutiveFailures(**v),
        ),
    ),
    Field(
        "latencyEjection",
        "latency_ejection",
        object_kind(
            "a latency ejection config",
            (
                Field("factor", "factor", number_kind(above=1)),
                Field("minimumDifference", "minimum_difference", duration_kind()),
                # An endpoint is compared with its peers: two at least.
                Field("minimumHosts", "minimum_hosts", integer_kind(minimum=2, maximum=UINT32_MAX)),
                Field("requestVolume", "request_volume", _VOLUME),
                _enforcement(),
            ),
            lambda v, _p: LatencyEjection(**v),
        ),
    ),
)

#: Settings that act only through ejections.
_SETTINGS = (
    Field("interval", "interval", duration_kind(positive=True)),
    Field("baseEjectionTime", "base_ejection_time", duration_kind()),
    Field("maxEjectionTime", "max_ejection_time", duration_kind()),
    Field("maxEjectionPercent", "max_ejection_percent", _PERCENT),
    Field("halfOpenTrials", "half_open_trials", integer_kind(minimum=1, maximum=UINT32_MAX)),
    Field("failureStatusCodes", "failure_status_codes", codes_kind(role="failure", non_empty=True)),
)

#: The ``outlier_detection`` config's fields but ``childPolicy`` (read by the policy table).
OUTLIER_DETECTION_FIELDS: tuple[Field, ...] = (*_SETTINGS, *_ALGORITHMS)


def build_outlier_detection(values: dict[str, Any], path: str) -> OutlierDetection:
    """The :class:`OutlierDetection` read with :data:`OUTLIER_DETECTION_FIELDS` at ``path``.

    ``maxEjectionTime`` defaults to the larger of 300 s and ``baseEjectionTime`` (A50).
    """
    if not any(row.attr in values for row in _ALGORITHMS):
        for row in _SETTINGS:
            if row.attr in values:
                names = ", ".join(algorithm.json_name for algorithm in _ALGORITHMS)
                raise ConfigError(
                    child(path, row.json_name),
                    f"takes effect only with an ejection algorithm: set one of {names}"
                    f" (without one, outlier detection is off)",
                )
    base = values.get("base_ejection_time", DEFAULT_BASE_EJECTION_TIME)
    longest = values.setdefault("max_ejection_time", max(DEFAULT_MAX_EJECTION_TIME, base))
    if longest < base:
        which = "as set" if "base_ejection_time" in values else "the default"
        raise ConfigError(
            child(path, "maxEjectionTime"),
            f"expected a duration >= baseEjectionTime ({base:g}s, {which}), found {longest:g}s",
        )
    return OutlierDetection(**values)


#: The kind of the service config's ``commonLbConfig`` (extension).
common_lb_config_kind = object_kind(
    "a common load-balancing config",
    (
        Field(
            "healthyPanicThreshold",
            "healthy_panic_threshold",
            number_kind(at_least=0, at_most=100),
        ),
        Field("slowStartWindow", "slow_start_window", duration_kind()),
    ),
    lambda v, _p: CommonLbConfig(**v),
)
