"""The service config: gRPC's JSON schema, parsed and validated into frozen values.

This package owns the one translation from configuration text to policy values. The input
is a gRPC service config (a mapping, JSON text or a path to a JSON file) and means exactly
what it means in gRPC (gRFC A6 retries, hedging and ``retryThrottling``; A17
``healthCheckConfig``; A58 ``weighted_round_robin``; A48 ``least_request``; A42/A76
``ring_hash``; A50 ``outlier_detection``), plus a few camelCase extensions that gRPC
lacks (the ``peak_ewma`` and ``random`` policies, static ``weights`` for
``weighted_round_robin``, the heartbeat's ``interval`` and ``timeout`` in
``healthCheckConfig``, more ejection algorithms in ``outlier_detection``,
``commonLbConfig``'s panic threshold and slow start, the top-level ``retryBudget``,
``perAttemptRecvTimeout`` in ``retryPolicy`` and ``hedgingDelayPercentile`` in
``hedgingPolicy``).

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
* A setting that would not take effect is an error: ``healthCheckConfig``'s ``interval``
  or ``timeout`` without ``serviceName``, ``outlier_detection`` settings without any
  ejection algorithm. ``outlier_detection``'s ``interval`` must be > 0 and its
  ``maxEjectionTime`` at least ``baseEjectionTime``; every ``requestVolume`` is >= 1.
* Only integers that proto3 writes as 64-bit (``maxRequestMessageBytes``,
  ``maxResponseMessageBytes``, ``choiceCount``, ``minRingSize``, ``maxRingSize``) may be
  given as decimal strings; everywhere else a number must be a JSON number.
* Every number is finite and bounded: durations above :data:`MAX_WAIT_SECONDS` (about 31.7
  years) are treated as it, ``backoffMultiplier`` is at most
  :data:`MAX_BACKOFF_MULTIPLIER`, static weights at most :data:`MAX_STATIC_WEIGHT`.
* Like gRPC, a ``maxAttempts`` above :data:`MAX_ATTEMPTS_LIMIT` is treated as it; unlike
  gRPC, a warning naming the field is logged on the ``resilientrpc.config`` logger.

Modules: ``_schema`` (kinds, field tables, paths, messages, durations, status codes),
``balancing`` (``loadBalancingConfig``), ``outlier`` (``outlier_detection``'s settings and
``commonLbConfig``), ``methods`` (``methodConfig``), ``service`` (``retryThrottling``,
``retryBudget``, ``healthCheckConfig``, the whole config and reading it). Adding a
field is one line in the table of its object plus the attribute on its value class.

>>> config = parse_service_config('{"loadBalancingConfig": [{"least_request": {}}]}')
>>> config.load_balancing
LeastRequest(choice_count=2)
"""

from __future__ import annotations

from resilientrpc.config._schema import (
    MAX_DURATION_SECONDS,
    MAX_WAIT_SECONDS,
    parse_duration,
    parse_status_code,
)
from resilientrpc.config.balancing import (
    DEFAULT_BLACKOUT_PERIOD,
    DEFAULT_CHOICE_COUNT,
    DEFAULT_ERROR_UTILIZATION_PENALTY,
    DEFAULT_LOAD_BALANCING,
    DEFAULT_MAX_RING_SIZE,
    DEFAULT_MIN_RING_SIZE,
    DEFAULT_OOB_REPORTING_PERIOD,
    DEFAULT_PEAK_EWMA_DECAY,
    DEFAULT_WEIGHT_EXPIRATION_PERIOD,
    DEFAULT_WEIGHT_UPDATE_PERIOD,
    MAX_CHOICE_COUNT,
    MAX_STATIC_WEIGHT,
    MIN_CHOICE_COUNT,
    MIN_WEIGHT_UPDATE_PERIOD,
    RING_SIZE_LIMIT,
    SUPPORTED_POLICIES,
    LeastRequest,
    LoadBalancingPolicy,
    PeakEwma,
    PickFirst,
    Random,
    RingHash,
    RoundRobin,
    WeightedRoundRobin,
    check_weights_match_targets,
)
from resilientrpc.config.methods import (
    DEFAULT_HEDGING_DELAY,
    MAX_ATTEMPTS_LIMIT,
    MAX_BACKOFF_MULTIPLIER,
    MIN_ATTEMPTS,
    HedgingPolicy,
    MethodConfig,
    MethodName,
    RetryPolicy,
)
from resilientrpc.config.outlier import (
    PEAK_EWMA_OUTLIERS,
    UINT32_MAX,
    CommonLbConfig,
    ConsecutiveFailures,
    FailurePercentageEjection,
    LatencyEjection,
    OutlierDetection,
    SuccessRateEjection,
)
from resilientrpc.config.service import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MIN_RETRIES_PER_SECOND,
    DEFAULT_RETRY_BUDGET_TTL,
    DEFAULT_RETRY_RATIO,
    MAX_RETRY_BUDGET_TTL,
    MAX_RETRY_RATIO,
    MAX_RETRY_TOKENS,
    MIN_HEARTBEAT_INTERVAL,
    MIN_RETRY_BUDGET_TTL,
    TOKEN_RATIO_DECIMALS,
    HealthCheckConfig,
    RetryBudget,
    RetryThrottling,
    ServiceConfig,
    parse_service_config,
)

__all__ = [
    "DEFAULT_BLACKOUT_PERIOD",
    "DEFAULT_CHOICE_COUNT",
    "DEFAULT_ERROR_UTILIZATION_PENALTY",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_HEDGING_DELAY",
    "DEFAULT_LOAD_BALANCING",
    "DEFAULT_MAX_RING_SIZE",
    "DEFAULT_MIN_RETRIES_PER_SECOND",
    "DEFAULT_MIN_RING_SIZE",
    "DEFAULT_OOB_REPORTING_PERIOD",
    "DEFAULT_PEAK_EWMA_DECAY",
    "DEFAULT_RETRY_BUDGET_TTL",
    "DEFAULT_RETRY_RATIO",
    "DEFAULT_WEIGHT_EXPIRATION_PERIOD",
    "DEFAULT_WEIGHT_UPDATE_PERIOD",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_CHOICE_COUNT",
    "MAX_DURATION_SECONDS",
    "MAX_RETRY_BUDGET_TTL",
    "MAX_RETRY_RATIO",
    "MAX_RETRY_TOKENS",
    "MAX_STATIC_WEIGHT",
    "MAX_WAIT_SECONDS",
    "MIN_ATTEMPTS",
    "MIN_CHOICE_COUNT",
    "MIN_HEARTBEAT_INTERVAL",
    "MIN_RETRY_BUDGET_TTL",
    "MIN_WEIGHT_UPDATE_PERIOD",
    "PEAK_EWMA_OUTLIERS",
    "RING_SIZE_LIMIT",
    "SUPPORTED_POLICIES",
    "TOKEN_RATIO_DECIMALS",
    "UINT32_MAX",
    "CommonLbConfig",
    "ConsecutiveFailures",
    "FailurePercentageEjection",
    "HealthCheckConfig",
    "HedgingPolicy",
    "LatencyEjection",
    "LeastRequest",
    "LoadBalancingPolicy",
    "MethodConfig",
    "MethodName",
    "OutlierDetection",
    "PeakEwma",
    "PickFirst",
    "Random",
    "RetryBudget",
    "RetryPolicy",
    "RetryThrottling",
    "RingHash",
    "RoundRobin",
    "ServiceConfig",
    "SuccessRateEjection",
    "WeightedRoundRobin",
    "check_weights_match_targets",
    "parse_duration",
    "parse_service_config",
    "parse_status_code",
]
