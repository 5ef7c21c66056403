"""The service config's retry side (issue 9): retry and hedging policies, the ``retryBudget``
and ``hedgingDelayPercentile`` extensions, the logged ``maxAttempts`` clamp, which method
config a call gets, and the shipped example config.

Word-for-word messages of the older fields are pinned in tests/test_config_errors.py; this
file checks the issue's list of invalid policies end to end and the new fields in full.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest

from resilientrpc.config import (
    MAX_ATTEMPTS_LIMIT,
    HedgingPolicy,
    MethodConfig,
    MethodName,
    RetryBudget,
    RetryPolicy,
    RetryThrottling,
    ServiceConfig,
    parse_service_config,
)
from resilientrpc.errors import ConfigError
from tests.test_config import method, parse_error, retry

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "retry_service_config.json"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def hedging(**fields: Any) -> dict[str, Any]:
    return method({"hedgingPolicy": {"maxAttempts": 3, **fields}})


def budget(**fields: Any) -> dict[str, Any]:
    return {"retryBudget": fields}


# ------------------------------------------------------------- the invalid list


@pytest.mark.parametrize(
    ("source", "path", "message"),
    [
        (
            method({"retryPolicy": retry(maxAttempts=1)}),
            "methodConfig[0].retryPolicy.maxAttempts",
            "expected an integer >= 2, found the number 1",
        ),
        (
            method({"retryPolicy": retry(initialBackoff="0s")}),
            "methodConfig[0].retryPolicy.initialBackoff",
            "expected a duration > 0s",
        ),
        (
            method({"retryPolicy": retry(maxBackoff="0s")}),
            "methodConfig[0].retryPolicy.maxBackoff",
            "expected a duration > 0s",
        ),
        (
            method({"retryPolicy": retry(backoffMultiplier=0)}),
            "methodConfig[0].retryPolicy.backoffMultiplier",
            "expected a finite number > 0",
        ),
        (
            method({"retryPolicy": retry(retryableStatusCodes=[])}),
            "methodConfig[0].retryPolicy.retryableStatusCodes",
            "an empty list is allowed only with 'perAttemptRecvTimeout'",
        ),
        (
            method({"retryPolicy": retry(), "hedgingPolicy": {"maxAttempts": 2}}),
            "methodConfig[0].hedgingPolicy",
            "expected only one of 'retryPolicy' and 'hedgingPolicy', found both",
        ),
        (
            method({"retryPolicy": retry(retryableStatusCodes=["UNAVAILABLE", "NOT_A_CODE"])}),
            "methodConfig[0].retryPolicy.retryableStatusCodes[1]",
            'found the string "NOT_A_CODE"',
        ),
        (
            hedging(maxAttempts=1),
            "methodConfig[0].hedgingPolicy.maxAttempts",
            "expected an integer >= 2, found the number 1",
        ),
        (
            hedging(nonFatalStatusCodes=["unavailabel"]),
            "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]",
            "did you mean 'UNAVAILABLE'?",
        ),
        (
            hedging(nonFatalStatusCodes=[-1]),
            "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]",
            "a number from 0 to 16, found the number -1",
        ),
    ],
)
def test_each_invalid_policy_raises_one_error_naming_its_field(
    source: dict[str, Any], path: str, message: str
) -> None:
    error = parse_error(source)
    assert error.path == path
    assert message in error.message
    assert str(error).startswith(f"{path}: ")


def test_status_codes_are_read_as_grpc_reads_them_any_case_or_by_number() -> None:
    codes = ["unavailable", "Resource_Exhausted", 4, "UNAVAILABLE"]
    config = parse_service_config(method({"retryPolicy": retry(retryableStatusCodes=codes)}))
    policy = config.method_configs[0].retry_policy
    assert policy is not None
    assert policy.retryable_status_codes == {
        UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }


# ------------------------------------------------------------------ maxAttempts clamp


@pytest.mark.parametrize("policy", ["retryPolicy", "hedgingPolicy"])
def test_max_attempts_above_five_is_clamped_with_a_warning_naming_the_field(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = retry(maxAttempts=9) if policy == "retryPolicy" else {"maxAttempts": 9}
    with caplog.at_level(logging.WARNING, logger="resilientrpc.config"):
        config = parse_service_config(method({policy: fields}))
    parsed = config.method_configs[0].retry_policy or config.method_configs[0].hedging_policy
    assert parsed is not None
    assert parsed.max_attempts == MAX_ATTEMPTS_LIMIT == 5
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "resilientrpc.config",
            "WARNING",
            f"methodConfig[0].{policy}.maxAttempts: the number 9 is above the limit; 5 is used",
        )
    ]


def test_max_attempts_at_the_limit_is_kept_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="resilientrpc.config"):
        config = parse_service_config(method({"retryPolicy": retry(maxAttempts=5)}))
    policy = config.method_configs[0].retry_policy
    assert policy is not None
    assert policy.max_attempts == 5
    assert caplog.records == []


# ------------------------------------------------------------------------ retryBudget


def test_a_retry_budget_takes_its_defaults_field_by_field() -> None:
    assert parse_service_config(budget()).retry_budget == RetryBudget(
        retry_ratio=0.2, min_retries_per_second=10, ttl=10.0
    )
    assert parse_service_config(budget(ttl="30s")).retry_budget == RetryBudget(
        retry_ratio=0.2, min_retries_per_second=10, ttl=30.0
    )
    assert parse_service_config({}).retry_budget is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"retryRatio": 0.5, "minRetriesPerSecond": 3, "ttl": "2.5s"},
            RetryBudget(retry_ratio=0.5, min_retries_per_second=3, ttl=2.5),
        ),
        (
            {"retryRatio": 0, "minRetriesPerSecond": 0, "ttl": "1s"},
            RetryBudget(retry_ratio=0.0, min_retries_per_second=0, ttl=1.0),
        ),
        (
            {"retryRatio": 1000, "minRetriesPerSecond": 2.0, "ttl": "60s"},
            RetryBudget(retry_ratio=1000.0, min_retries_per_second=2, ttl=60.0),
        ),
    ],
)
def test_retry_budget_values_at_and_inside_their_bounds(
    fields: dict[str, Any], expected: RetryBudget
) -> None:
    config = parse_service_config(
        {"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}, "retryBudget": fields}
    )
    assert config.retry_budget == expected
    assert config.retry_throttling == RetryThrottling(max_tokens=10, token_ratio=0.1)


@pytest.mark.parametrize(
    ("source", "path", "message"),
    [
        ({"retryBudget": 0.2}, "retryBudget", "expected a retry budget (a JSON object)"),
        (
            budget(retryRatio=-0.1),
            "retryBudget.retryRatio",
            "expected a finite number >= 0 and <= 1000, found the number -0.1",
        ),
        (
            budget(retryRatio=1000.5),
            "retryBudget.retryRatio",
            "expected a finite number >= 0 and <= 1000, found the number 1000.5",
        ),
        (
            budget(retryRatio="0.2"),
            "retryBudget.retryRatio",
            'expected a finite number >= 0 and <= 1000, found the string "0.2"',
        ),
        (
            budget(minRetriesPerSecond=-1),
            "retryBudget.minRetriesPerSecond",
            "expected an integer >= 0, found the number -1",
        ),
        (
            budget(minRetriesPerSecond=1.5),
            "retryBudget.minRetriesPerSecond",
            "expected an integer >= 0, found the number 1.5",
        ),
        (
            budget(minRetriesPerSecond=True),
            "retryBudget.minRetriesPerSecond",
            "expected an integer >= 0, found true (a boolean)",
        ),
        (
            budget(ttl="0.999s"),
            "retryBudget.ttl",
            "expected a duration from 1s to 60s, like '1.5s', found the string \"0.999s\"",
        ),
        (
            budget(ttl="60.001s"),
            "retryBudget.ttl",
            "expected a duration from 1s to 60s, like '1.5s', found the string \"60.001s\"",
        ),
        (budget(ttl=10), "retryBudget.ttl", "expected a duration string"),
        (
            budget(retry_ratio=0.2),
            "retryBudget.retry_ratio",
            "unknown field 'retry_ratio' in a retry budget; allowed fields: 'retryRatio', "
            "'minRetriesPerSecond', 'ttl'. did you mean 'retryRatio'?",
        ),
        (
            method({"retryBudget": {}}),
            "methodConfig[0].retryBudget",
            "unknown field 'retryBudget' in a method config",
        ),
    ],
)
def test_bad_retry_budgets_name_the_field(source: dict[str, Any], path: str, message: str) -> None:
    error = parse_error(source)
    assert (error.path, message in error.message) == (path, True), error.message


# ------------------------------------------------------------- hedgingDelayPercentile


@pytest.mark.parametrize("percentile", [0.001, 50, 95, 99.9])
def test_hedging_delay_percentile_inside_zero_to_a_hundred(percentile: float) -> None:
    config = parse_service_config(hedging(hedgingDelay="0.02s", hedgingDelayPercentile=percentile))
    assert config.method_configs[0].hedging_policy == HedgingPolicy(
        max_attempts=3, hedging_delay=0.02, hedging_delay_percentile=float(percentile)
    )


def test_hedging_delay_percentile_is_optional() -> None:
    policy = parse_service_config(hedging()).method_configs[0].hedging_policy
    assert policy is not None
    assert policy.hedging_delay_percentile is None


@pytest.mark.parametrize(
    ("percentile", "found"),
    [
        (0, "the number 0"),
        (100, "the number 100"),
        (-5, "the number -5"),
        (100.5, "the number 100.5"),
        ("x", 'the string "x"'),
        ("95", 'the string "95"'),
        (True, "true (a boolean)"),
    ],
)
def test_bad_hedging_delay_percentiles_name_the_field(percentile: object, found: str) -> None:
    error = parse_error(hedging(hedgingDelayPercentile=percentile))
    assert error.path == "methodConfig[0].hedgingPolicy.hedgingDelayPercentile"
    assert error.message == f"expected a finite number > 0 and < 100, found {found}"


# ------------------------------------------------------------------- method matching


def test_the_most_specific_entry_wins_whole_never_merged_with_a_broader_one() -> None:
    """gRPC picks one entry per call: an exact entry without a retry policy does not
    inherit its service's, and a service entry does not inherit the default's timeout."""
    config = parse_service_config(
        {
            "methodConfig": [
                {"name": [{}], "timeout": "9s", "hedgingPolicy": {"maxAttempts": 2}},
                {"name": [{"service": "pkg.Svc"}], "retryPolicy": retry()},
                {"name": [{"service": "pkg.Svc", "method": "Write"}], "timeout": "1s"},
            ]
        }
    )
    write = config.method_config("/pkg.Svc/Write")
    read = config.method_config("/pkg.Svc/Read")
    other = config.method_config("/other.Svc/Read")
    assert write == MethodConfig(names=(MethodName(service="pkg.Svc", method="Write"),), timeout=1)
    assert read is not None
    assert (read.timeout, read.hedging_policy, read.retry_policy is not None) == (None, None, True)
    assert other is not None
    assert (other.timeout, other.retry_policy) == (9.0, None)
    assert other.hedging_policy == HedgingPolicy(max_attempts=2)


# -------------------------------------------------------------------- the example file


def test_the_example_config_parses_to_its_documented_policies() -> None:
    config = parse_service_config(EXAMPLE_CONFIG)
    assert parse_service_config(str(EXAMPLE_CONFIG)) == config

    def entry(method_name: str) -> MethodConfig:
        found = config.method_config(f"/resilientrpc.echo.v1.Echo/{method_name}")
        assert found is not None
        return found

    assert entry("ServerStream").retry_policy == RetryPolicy(
        max_attempts=4,
        initial_backoff=0.01,
        max_backoff=0.2,
        backoff_multiplier=2.0,
        retryable_status_codes=frozenset({UNAVAILABLE}),
        per_attempt_recv_timeout=0.5,
    )
    write = entry("ClientStream")
    assert (write.timeout, write.retry_policy, write.hedging_policy) == (1.0, None, None)
    assert entry("Echo").hedging_policy == HedgingPolicy(
        max_attempts=3,
        hedging_delay=0.05,
        non_fatal_status_codes=frozenset({UNAVAILABLE}),
        hedging_delay_percentile=95.0,
    )
    assert config.method_config("/resilientrpc.echo.v1.Echo/BidiStream") is None
    assert config.retry_throttling == RetryThrottling(max_tokens=100, token_ratio=0.5)
    assert config.retry_budget == RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=10)


def test_a_hand_built_config_carries_a_retry_budget() -> None:
    config = ServiceConfig(retry_budget=RetryBudget(ttl=5.0))
    assert config.retry_budget == RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=5.0)
    assert "RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=5.0)" in repr(config)
    with pytest.raises(ConfigError):
        parse_service_config({"retryBudget": {"ttl": "0s"}})
