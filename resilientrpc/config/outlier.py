"""Outlier detection (gRFC A50's ``outlier_detection`` policy) and the channel-wide
endpoint-selection settings (``commonLbConfig``): the values.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import grpc

__all__ = [
    "DEFAULT_BASE_EJECTION_TIME",
    "DEFAULT_HALF_OPEN_TRIALS",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_EJECTION_PERCENT",
    "DEFAULT_MAX_EJECTION_TIME",
    "DEFAULT_PANIC_THRESHOLD",
    "PEAK_EWMA_OUTLIERS",
    "CommonLbConfig",
    "ConsecutiveFailures",
    "FailurePercentageEjection",
    "LatencyEjection",
    "OutlierDetection",
    "SuccessRateEjection",
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
