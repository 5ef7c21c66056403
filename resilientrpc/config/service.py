"""The whole service config: ``retryThrottling``, the ``retryBudget`` extension,
``healthCheckConfig`` (with the
heartbeat's ``interval`` and ``timeout``), the top-level object (``commonLbConfig``'s
table is in :mod:`resilientrpc.config.outlier`), and reading it from a mapping, JSON
text or a file.

JSON text is read with guards: duplicate field names, ``NaN`` / ``Infinity`` literals,
nesting too deep for the parser and integers too long to convert are all refused (or,
for long integers, left to the field they sit in to refuse with its path), never raised
as anything but :class:`~resilientrpc.errors.ConfigError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Context, Decimal
from pathlib import Path
from typing import Any

from resilientrpc.config._schema import (
    Field,
    LongInteger,
    child,
    duration_kind,
    integer_kind,
    mismatch,
    number_kind,
    object_kind,
    read_fields,
    string_kind,
)
from resilientrpc.config.balancing import (
    DEFAULT_LOAD_BALANCING,
    BalancingChoice,
    LoadBalancingPolicy,
    PeakEwma,
    load_balancing_config_kind,
    load_balancing_policy_kind,
)
from resilientrpc.config.methods import MethodConfig, method_configs_kind, name_key
from resilientrpc.config.outlier import (
    PEAK_EWMA_OUTLIERS,
    CommonLbConfig,
    OutlierDetection,
    common_lb_config_kind,
)
from resilientrpc.errors import ConfigError

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MIN_RETRIES_PER_SECOND",
    "DEFAULT_RETRY_BUDGET_TTL",
    "DEFAULT_RETRY_RATIO",
    "MAX_RETRY_BUDGET_TTL",
    "MAX_RETRY_RATIO",
    "MAX_RETRY_TOKENS",
    "MIN_HEARTBEAT_INTERVAL",
    "MIN_RETRY_BUDGET_TTL",
    "TOKEN_RATIO_DECIMALS",
    "HealthCheckConfig",
    "RetryBudget",
    "RetryThrottling",
    "ServiceConfig",
    "parse_service_config",
]

#: ``retryThrottling.maxTokens`` lies in (0, MAX_RETRY_TOKENS] (A6).
MAX_RETRY_TOKENS = 1000
#: Decimal places of ``retryThrottling.tokenRatio`` that gRPC keeps (A6); the rest is cut.
TOKEN_RATIO_DECIMALS = 3


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


#: ``retryBudget.retryRatio`` default: retries may add 20 % to the calls.
DEFAULT_RETRY_RATIO = 0.2
#: ``retryBudget.retryRatio`` is at most this.
MAX_RETRY_RATIO = 1000.0
#: ``retryBudget.minRetriesPerSecond`` default: retries always allowed at this rate.
DEFAULT_MIN_RETRIES_PER_SECOND = 10
#: ``retryBudget.ttl`` default, seconds: the window calls and retries are counted over.
DEFAULT_RETRY_BUDGET_TTL = 10.0
#: ``retryBudget.ttl`` lies in [MIN_RETRY_BUDGET_TTL, MAX_RETRY_BUDGET_TTL] seconds.
MIN_RETRY_BUDGET_TTL = 1.0
MAX_RETRY_BUDGET_TTL = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryBudget:
    """``retryBudget`` (extension, the ratio budget of Finagle and Linkerd): shared by every
    call of the channel.

    Retries and hedges (every attempt after a call's first) may be sent while the retries
    of the last ``ttl`` seconds number fewer than ``min_retries_per_second * ttl +
    retry_ratio * calls of the last ttl seconds``.

    >>> RetryBudget()
    RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=10.0)
    """

    retry_ratio: float = DEFAULT_RETRY_RATIO
    min_retries_per_second: int = DEFAULT_MIN_RETRIES_PER_SECOND
    ttl: float = DEFAULT_RETRY_BUDGET_TTL


#: ``healthCheckConfig.interval``: seconds of quiet on the Watch stream before a Check.
DEFAULT_HEARTBEAT_INTERVAL = 1.0
#: ``healthCheckConfig.timeout``: the Check's deadline, seconds.
DEFAULT_HEARTBEAT_TIMEOUT = 0.5
#: ``healthCheckConfig.interval`` is at least this: a shorter one is a storm of Checks.
MIN_HEARTBEAT_INTERVAL = 0.01


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthCheckConfig:
    """``healthCheckConfig`` (gRFC A17): the service name sent in ``grpc.health.v1`` Watch,
    and (extensions) the heartbeat's ``interval`` and ``timeout``.

    The empty name asks for the health of the whole server. ``{"healthCheckConfig": {}}``
    without ``serviceName`` leaves health checking off, as in gRPC. An endpoint with no
    sign of life (a Watch message, or an answered Check) for ``interval + timeout``
    seconds is declared dead.

    >>> HealthCheckConfig(service_name="echo.Echo")
    HealthCheckConfig(service_name='echo.Echo', interval=1.0, timeout=0.5)
    >>> HealthCheckConfig(service_name="echo.Echo").deadline
    1.5
    """

    service_name: str = ""
    interval: float = DEFAULT_HEARTBEAT_INTERVAL
    timeout: float = DEFAULT_HEARTBEAT_TIMEOUT

    @property
    def deadline(self) -> float:
        """Seconds without a sign of life after which an endpoint is declared dead."""
        return self.interval + self.timeout


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceConfig:
    """A whole service config. Build it with :func:`parse_service_config`.

    ``load_balancing`` defaults to :data:`DEFAULT_LOAD_BALANCING` (``round_robin``).

    >>> from resilientrpc.config import MethodName
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
    retry_budget: RetryBudget | None = None
    health_check: HealthCheckConfig | None = None
    outlier_detection: OutlierDetection | None = None
    common_lb: CommonLbConfig = field(default_factory=CommonLbConfig)
    _method_index: dict[tuple[str, str], MethodConfig] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_configs", tuple(self.method_configs))
        index: dict[tuple[str, str], MethodConfig] = {}
        for position, method_config in enumerate(self.method_configs):
            for name in method_config.names:
                key = name_key(name)
                if key in index:
                    raise ConfigError(
                        f"method_configs[{position}]",
                        f"name {name!r} already appears in an earlier method config",
                    )
                index[key] = method_config
        object.__setattr__(self, "_method_index", index)

    @property
    def effective_outlier_detection(self) -> OutlierDetection | None:
        """The outlier detection the channel runs: the configured one, or for a bare
        ``peak_ewma`` its default latency ejection (:data:`PEAK_EWMA_OUTLIERS`)."""
        if self.outlier_detection is not None:
            return self.outlier_detection if self.outlier_detection.enabled else None
        if isinstance(self.load_balancing, PeakEwma):
            return PEAK_EWMA_OUTLIERS
        return None

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


# ---------------------------------------------------------------------------- parsing


def _build_retry_throttling(values: dict[str, Any], path: str) -> RetryThrottling:
    # gRPC keeps three decimal places of tokenRatio and drops the rest (0.5466 -> 0.546).
    exact = Decimal(repr(values["token_ratio"]))
    kept = exact.quantize(Decimal(1).scaleb(-TOKEN_RATIO_DECIMALS), ROUND_DOWN, Context(prec=400))
    if kept <= 0:
        raise ConfigError(
            child(path, "tokenRatio"),
            f"expected a number >= 0.001 (gRPC keeps {TOKEN_RATIO_DECIMALS} decimal places), "
            f"found the number {values['token_ratio']!r}",
        )
    return RetryThrottling(max_tokens=float(values["max_tokens"]), token_ratio=float(kept))


_HEALTH_CHECK_FIELDS = (
    Field("serviceName", "service_name", string_kind()),
    Field("interval", "interval", duration_kind(at_least=MIN_HEARTBEAT_INTERVAL)),
    Field("timeout", "timeout", duration_kind(positive=True)),
)


def _build_health_check(values: dict[str, Any], path: str) -> HealthCheckConfig | None:
    # A17: without a service name, health checking stays off, and so would the heartbeat.
    if "service_name" not in values:
        for row in _HEALTH_CHECK_FIELDS:
            if row.attr in values:
                raise ConfigError(
                    child(path, row.json_name),
                    'set serviceName ("" for the whole server) to turn health checking on; '
                    "without it health checking is off and this has no effect",
                )
        return None
    return HealthCheckConfig(**values)


_SERVICE_CONFIG_FIELDS = (
    Field("loadBalancingConfig", "load_balancing_config", load_balancing_config_kind),
    Field("loadBalancingPolicy", "load_balancing_policy", load_balancing_policy_kind),
    Field("methodConfig", "method_configs", method_configs_kind),
    Field(
        "retryThrottling",
        "retry_throttling",
        object_kind(
            "a retry throttling policy",
            (
                Field(
                    "maxTokens",
                    "max_tokens",
                    integer_kind(minimum=1, maximum=MAX_RETRY_TOKENS),
                    required=True,
                ),
                Field("tokenRatio", "token_ratio", number_kind(above=0), required=True),
            ),
            _build_retry_throttling,
        ),
    ),
    Field(
        "retryBudget",
        "retry_budget",
        object_kind(
            "a retry budget",
            (
                Field(
                    "retryRatio", "retry_ratio", number_kind(at_least=0, at_most=MAX_RETRY_RATIO)
                ),
                Field("minRetriesPerSecond", "min_retries_per_second", integer_kind(minimum=0)),
                Field(
                    "ttl",
                    "ttl",
                    duration_kind(at_least=MIN_RETRY_BUDGET_TTL, at_most=MAX_RETRY_BUDGET_TTL),
                ),
            ),
            lambda values, _path: RetryBudget(**values),
        ),
    ),
    Field(
        "healthCheckConfig",
        "health_check",
        object_kind("a health check config", _HEALTH_CHECK_FIELDS, _build_health_check),
    ),
    Field("commonLbConfig", "common_lb", common_lb_config_kind),
)


def _build_service_config(values: dict[str, Any]) -> ServiceConfig:
    # loadBalancingConfig wins; the deprecated loadBalancingPolicy is used only without it.
    # An outlier_detection entry becomes its child policy plus its settings.
    chosen: BalancingChoice | None = values.pop("load_balancing_config", None)
    deprecated: BalancingChoice | None = values.pop("load_balancing_policy", None)
    if chosen is None:
        chosen = deprecated
    if chosen is not None:
        values["load_balancing"] = chosen.policy
        if chosen.outlier_detection is not None:
            values["outlier_detection"] = chosen.outlier_detection
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
        return json.loads(
            text,
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
            parse_int=LongInteger.read,
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "config", f"invalid JSON in {origin}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError:
        raise ConfigError(
            "config", f"nested too deeply for the JSON parser (arrays or objects) in {origin}"
        ) from None


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
        raise mismatch("config", "a mapping, JSON text, a path to a JSON file or None", source)
    values = read_fields(raw, "", _SERVICE_CONFIG_FIELDS, "the service config")
    return _build_service_config(values)
