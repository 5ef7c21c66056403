"""Tests of resilientrpc.config: the service config parsed into frozen values."""

from __future__ import annotations

import copy
import dataclasses
import doctest
import json
import pickle
from pathlib import Path
from typing import Any

import grpc
import pytest

import resilientrpc.config as config_module
from resilientrpc.config import (
    DEFAULT_LOAD_BALANCING,
    DEFAULT_MAX_RING_SIZE,
    MAX_ATTEMPTS_LIMIT,
    SUPPORTED_POLICIES,
    HealthCheckConfig,
    HedgingPolicy,
    LeastRequest,
    MethodConfig,
    MethodName,
    PeakEwma,
    PickFirst,
    Random,
    RetryPolicy,
    RetryThrottling,
    RingHash,
    RoundRobin,
    ServiceConfig,
    WeightedRoundRobin,
    _schema,
    balancing,
    methods,
    parse_duration,
    parse_service_config,
    parse_status_code,
    service,
)
from resilientrpc.errors import ConfigError

RETRY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def retry(**changes: Any) -> dict[str, Any]:
    """A valid retryPolicy with ``changes`` applied (a value of None removes the field)."""
    policy = {**RETRY, **changes}
    return {key: value for key, value in policy.items() if value is not None}


def method(entry: dict[str, Any]) -> dict[str, Any]:
    """A service config with one method config for echo.Echo, extended by ``entry``."""
    return {"methodConfig": [{"name": [{"service": "echo.Echo"}], **entry}]}


def lb(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"loadBalancingConfig": list(entries)}


def parse_error(source: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_service_config(source)
    return info.value


# ----------------------------------------------------------------------- public names


def test_every_public_name_imports() -> None:
    for name in config_module.__all__:
        assert hasattr(config_module, name), name


CONFIG_MODULES = [config_module, _schema, balancing, methods, service]


def test_docstring_examples_hold() -> None:
    attempted = 0
    for module in CONFIG_MODULES:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 10


def test_every_config_module_says_what_it_owns() -> None:
    for module in CONFIG_MODULES:
        assert module.__doc__, module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


# -------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("source", [None, {}, "{}", "  \n {} "])
def test_empty_sources_give_the_defaults(source: Any) -> None:
    config = parse_service_config(source)
    assert config == ServiceConfig()
    assert config.load_balancing == RoundRobin()
    assert config.load_balancing is DEFAULT_LOAD_BALANCING
    assert config.method_configs == ()
    assert config.retry_throttling is None
    assert config.health_check is None
    assert config.method_config("/echo.Echo/Say") is None


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"pick_first": {}}, PickFirst(shuffle_address_list=False)),
        ({"round_robin": {}}, RoundRobin()),
        (
            {"weighted_round_robin": {}},
            WeightedRoundRobin(
                weights=None,
                blackout_period=10.0,
                weight_expiration_period=180.0,
                weight_update_period=1.0,
                error_utilization_penalty=1.0,
                enable_oob_load_report=False,
                oob_reporting_period=10.0,
            ),
        ),
        ({"least_request": {}}, LeastRequest(choice_count=2)),
        ({"peak_ewma": {}}, PeakEwma(decay=10.0, choice_count=2)),
        ({"random": {}}, Random()),
        (
            {"ring_hash": {"requestHashHeader": "x-key"}},
            RingHash(request_hash_header="x-key", min_ring_size=1024, max_ring_size=4096),
        ),
    ],
)
def test_policy_defaults(entry: dict[str, Any], expected: object) -> None:
    assert parse_service_config(lb(entry)).load_balancing == expected


def test_method_config_defaults() -> None:
    (only,) = parse_service_config(method({})).method_configs
    assert only == MethodConfig(names=(MethodName(service="echo.Echo"),))
    assert only.timeout is None
    assert only.wait_for_ready is None
    assert only.retry_policy is None
    assert only.hedging_policy is None


def test_hedging_policy_defaults() -> None:
    config = parse_service_config(method({"hedgingPolicy": {"maxAttempts": 2}}))
    assert config.method_configs[0].hedging_policy == HedgingPolicy(
        max_attempts=2, hedging_delay=0.0, non_fatal_status_codes=frozenset()
    )


def test_policy_names_match_their_json_names() -> None:
    names = {
        PickFirst.name,
        RoundRobin.name,
        WeightedRoundRobin.name,
        LeastRequest.name,
        PeakEwma.name,
        Random.name,
        RingHash.name,
    }
    assert len(names) == 7
    assert names <= set(SUPPORTED_POLICIES)
    assert "least_request_experimental" in SUPPORTED_POLICIES
    assert "ring_hash_experimental" in SUPPORTED_POLICIES


# --------------------------------------------------------------------------- sources

FULL_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [
        {"xds_cluster_manager_experimental": {"children": {}}},
        {
            "weighted_round_robin": {
                "weights": {"127.0.0.1:5001": 3, "127.0.0.1:5002": 1.5, "[::1]:5003": 1},
                "blackoutPeriod": "5s",
                "weightExpirationPeriod": "60s",
                "weightUpdatePeriod": "0.5s",
                "errorUtilizationPenalty": 0.5,
                "enableOobLoadReport": False,
                "oobReportingPeriod": "10s",
            }
        },
        {"round_robin": {}},
    ],
    "methodConfig": [
        {"name": [{}], "timeout": "10s", "waitForReady": False},
        {
            "name": [{"service": "echo.Echo"}, {"service": "echo.Admin", "method": ""}],
            "timeout": "2.5s",
            "waitForReady": True,
            "maxRequestMessageBytes": 4194304,
            "maxResponseMessageBytes": "8388608",
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "resource_exhausted", 10],
                "perAttemptRecvTimeout": "0.5s",
            },
        },
        {
            "name": [{"service": "echo.Echo", "method": "Get"}],
            "hedgingPolicy": {
                "maxAttempts": 3,
                "hedgingDelay": "0.05s",
                "nonFatalStatusCodes": ["UNAVAILABLE", "INTERNAL"],
            },
        },
    ],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    "healthCheckConfig": {"serviceName": "echo.Echo"},
}

FULL_EXPECTED = ServiceConfig(
    load_balancing=WeightedRoundRobin(
        weights={"127.0.0.1:5001": 3.0, "127.0.0.1:5002": 1.5, "[::1]:5003": 1.0},
        blackout_period=5.0,
        weight_expiration_period=60.0,
        weight_update_period=0.5,
        error_utilization_penalty=0.5,
        enable_oob_load_report=False,
        oob_reporting_period=10.0,
    ),
    method_configs=(
        MethodConfig(names=(MethodName(),), timeout=10.0, wait_for_ready=False),
        MethodConfig(
            names=(MethodName(service="echo.Echo"), MethodName(service="echo.Admin")),
            timeout=2.5,
            wait_for_ready=True,
            max_request_message_bytes=4_194_304,
            max_response_message_bytes=8_388_608,
            retry_policy=RetryPolicy(
                max_attempts=4,
                initial_backoff=0.1,
                max_backoff=1.0,
                backoff_multiplier=2.0,
                retryable_status_codes=frozenset(
                    {
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.ABORTED,
                    }
                ),
                per_attempt_recv_timeout=0.5,
            ),
        ),
        MethodConfig(
            names=(MethodName(service="echo.Echo", method="Get"),),
            hedging_policy=HedgingPolicy(
                max_attempts=3,
                hedging_delay=0.05,
                non_fatal_status_codes=frozenset(
                    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}
                ),
            ),
        ),
    ),
    retry_throttling=RetryThrottling(max_tokens=10, token_ratio=0.1),
    health_check=HealthCheckConfig(service_name="echo.Echo"),
)


def test_full_config_from_a_mapping() -> None:
    assert parse_service_config(FULL_CONFIG) == FULL_EXPECTED


def test_full_config_from_json_text() -> None:
    assert parse_service_config(json.dumps(FULL_CONFIG, indent=2)) == FULL_EXPECTED


def test_full_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "service_config.json"
    path.write_text(json.dumps(FULL_CONFIG), encoding="utf-8")
    assert parse_service_config(path) == FULL_EXPECTED
    assert parse_service_config(str(path)) == FULL_EXPECTED


def test_full_config_round_trip_through_its_own_values() -> None:
    config = parse_service_config(FULL_CONFIG)
    assert parse_service_config(config) is config
    assert dataclasses.replace(config) == config
    assert hash(config) == hash(FULL_EXPECTED)
    assert config.method_config("/echo.Echo/Get") is config.method_configs[2]
    assert config.method_config("/echo.Echo/Say") is config.method_configs[1]
    assert config.method_config("/echo.Admin/Reset") is config.method_configs[1]
    assert config.method_config("/other.Svc/Do") is config.method_configs[0]
    assert "StatusCode.RESOURCE_EXHAUSTED, StatusCode.ABORTED, StatusCode.UNAVAILABLE" in repr(
        config
    )


def test_values_survive_pickle_and_copy() -> None:
    config = parse_service_config(FULL_CONFIG)
    for clone in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert clone == config
        assert clone.method_config("/echo.Echo/Get") == config.method_configs[2]


def test_values_are_frozen_and_hashable() -> None:
    config = parse_service_config(FULL_CONFIG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.load_balancing = RoundRobin()  # type: ignore[misc]  # the point: frozen
    policy = config.load_balancing
    assert isinstance(policy, WeightedRoundRobin)
    assert policy.weights is not None
    with pytest.raises(TypeError):
        policy.weights["127.0.0.1:5001"] = 9.0  # type: ignore[index]  # the point: read-only
    assert {policy: 1}[policy] == 1
    assert WeightedRoundRobin(weights={"a:1": 1.0}) == WeightedRoundRobin(weights={"a:1": 1.0})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad json", "invalid JSON"),
        ('{"methodConfig": [], "methodConfig": []}', "appears twice"),
        ('{"retryThrottling": {"maxTokens": NaN, "tokenRatio": 1}}', "NaN"),
    ],
)
def test_bad_json_text_is_reported_at_config(text: str, message: str) -> None:
    error = parse_error(text)
    assert error.path == "config"
    assert message in error.message


def test_unreadable_files_are_reported_at_config(tmp_path: Path) -> None:
    missing = parse_error(tmp_path / "missing.json")
    assert missing.path == "config"
    assert "missing.json" in missing.message
    assert parse_error(str(tmp_path / "missing.json")).path == "config"

    broken = tmp_path / "broken.json"
    broken.write_text('{"methodConfig": [', encoding="utf-8")
    assert parse_error(broken).path == "config"

    array = tmp_path / "array.json"
    array.write_text("[]", encoding="utf-8")
    error = parse_error(array)
    assert (error.path, "found an empty array" in error.message) == ("config", True)


def test_a_source_of_another_type_is_an_error() -> None:
    error = parse_error(42)
    assert error.path == "config"
    assert "found the number 42" in error.message


# ------------------------------------------------------------------ method matching


def test_method_matching_most_specific_first() -> None:
    config = parse_service_config(
        {
            "methodConfig": [
                {"name": [{"service": ""}], "timeout": "9s"},
                {"name": [{"service": "pkg.Svc"}], "timeout": "2s"},
                {"name": [{"service": "pkg.Svc", "method": "Exact"}], "timeout": "1s"},
            ]
        }
    )

    def timeout(path: str) -> float | None:
        found = config.method_config(path)
        assert found is not None
        return found.timeout

    assert timeout("/pkg.Svc/Exact") == 1.0
    assert timeout("/pkg.Svc/Other") == 2.0
    assert timeout("/other.Svc/Exact") == 9.0
    assert timeout("pkg.Svc/Exact") == 1.0


def test_without_a_default_entry_unmatched_methods_get_none() -> None:
    config = parse_service_config(
        {"methodConfig": [{"name": [{"service": "pkg.Svc", "method": "M"}]}]}
    )
    assert config.method_config("/pkg.Svc/M") is not None
    assert config.method_config("/pkg.Svc/N") is None
    assert config.method_config("/other.Svc/M") is None


@pytest.mark.parametrize(
    "default_name", [{}, {"service": ""}, {"service": None}, {"service": "", "method": ""}]
)
def test_default_entry_spellings(default_name: dict[str, Any]) -> None:
    config = parse_service_config({"methodConfig": [{"name": [default_name], "timeout": "3s"}]})
    assert config.method_configs[0].names == (MethodName(),)
    found = config.method_config("/any.Svc/Any")
    assert found is not None
    assert found.timeout == 3.0


def test_hand_built_configs_index_their_names_too() -> None:
    exact = MethodConfig(names=(MethodName(service="s", method="m"),))
    config = ServiceConfig(method_configs=(exact,))
    assert config.method_config("/s/m") is exact
    with pytest.raises(ConfigError):
        ServiceConfig(method_configs=(exact, exact))


# ------------------------------------------------------------------- load balancing


def test_first_supported_policy_wins_and_unknown_names_are_skipped() -> None:
    config = parse_service_config(
        lb({"grpclb": {}}, {"some_future_policy": {"x": 1}}, {"random": {}}, {"round_robin": {}})
    )
    assert config.load_balancing == Random()


def test_entries_after_the_chosen_policy_are_not_validated() -> None:
    config = parse_service_config(lb({"pick_first": {}}, {"ring_hash": {"bogus": 1}}))
    assert config.load_balancing == PickFirst()


def test_a_bad_supported_entry_is_an_error_even_after_unknown_ones() -> None:
    error = parse_error(lb({"unknown": {}}, {"least_request": {"choiceCount": 1}}))
    assert error.path == "loadBalancingConfig[1].least_request.choiceCount"


def test_no_supported_policy_lists_what_was_seen_and_what_is_supported() -> None:
    error = parse_error(lb({"grpclb": {}}, {"round_robbin": {}}))
    assert error.path == "loadBalancingConfig"
    assert "'grpclb'" in error.message
    assert "'round_robbin'" in error.message
    assert "weighted_round_robin" in error.message
    assert "did you mean 'round_robin'?" in error.message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"least_request_experimental": {"choiceCount": 3}}, LeastRequest(choice_count=3)),
        (
            {"ring_hash_experimental": {"requestHashHeader": "x-key", "maxRingSize": 8388608}},
            RingHash(request_hash_header="x-key", max_ring_size=8_388_608),
        ),
    ],
)
def test_policy_aliases(entry: dict[str, Any], expected: object) -> None:
    assert parse_service_config(lb(entry)).load_balancing == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("round_robin", RoundRobin()),
        ("ROUND_ROBIN", RoundRobin()),
        ("Pick_First", PickFirst()),
        ("least_request", LeastRequest()),
    ],
)
def test_deprecated_load_balancing_policy(value: str, expected: object) -> None:
    assert parse_service_config({"loadBalancingPolicy": value}).load_balancing == expected


def test_load_balancing_config_wins_over_the_deprecated_field() -> None:
    config = parse_service_config({"loadBalancingPolicy": "round_robin", **lb({"random": {}})})
    assert config.load_balancing == Random()


def test_peak_ewma_and_pick_first_options() -> None:
    assert parse_service_config(
        lb({"peak_ewma": {"decay": "2.5s", "choiceCount": 4}})
    ).load_balancing == PeakEwma(decay=2.5, choice_count=4)
    assert parse_service_config(
        lb({"pick_first": {"shuffleAddressList": True}})
    ).load_balancing == PickFirst(shuffle_address_list=True)


def test_ring_hash_header_is_lower_cased() -> None:
    policy = parse_service_config(lb({"ring_hash": {"requestHashHeader": "X-User-Id"}}))
    assert policy.load_balancing == RingHash(request_hash_header="x-user-id")


@pytest.mark.parametrize(
    ("entry", "attribute", "expected"),
    [
        ({"least_request": {"choiceCount": 50}}, "choice_count", 10),
        ({"least_request": {"choiceCount": "11"}}, "choice_count", 10),
        ({"peak_ewma": {"choiceCount": 1000}}, "choice_count", 10),
        ({"weighted_round_robin": {"weightUpdatePeriod": "0.01s"}}, "weight_update_period", 0.1),
        ({"weighted_round_robin": {"weightUpdatePeriod": "0s"}}, "weight_update_period", 0.1),
    ],
)
def test_policy_clamping(entry: dict[str, Any], attribute: str, expected: float) -> None:
    assert getattr(parse_service_config(lb(entry)).load_balancing, attribute) == expected


# ------------------------------------------------------------------ retry and hedging


@pytest.mark.parametrize("attempts", [6, 9, 1000])
def test_max_attempts_above_the_limit_are_clamped(attempts: int) -> None:
    retrying = parse_service_config(method({"retryPolicy": retry(maxAttempts=attempts)}))
    hedging = parse_service_config(method({"hedgingPolicy": {"maxAttempts": attempts}}))
    retry_policy = retrying.method_configs[0].retry_policy
    hedging_policy = hedging.method_configs[0].hedging_policy
    assert retry_policy is not None
    assert hedging_policy is not None
    assert retry_policy.max_attempts == MAX_ATTEMPTS_LIMIT
    assert hedging_policy.max_attempts == MAX_ATTEMPTS_LIMIT


def test_empty_retryable_codes_are_allowed_with_a_per_attempt_timeout() -> None:
    config = parse_service_config(
        method({"retryPolicy": retry(retryableStatusCodes=[], perAttemptRecvTimeout="1s")})
    )
    policy = config.method_configs[0].retry_policy
    assert policy is not None
    assert policy.retryable_status_codes == frozenset()
    assert policy.per_attempt_recv_timeout == 1.0


@pytest.mark.parametrize(
    ("ratio", "kept"), [(0.1, 0.1), (0.5466, 0.546), (1, 1.0), (0.0019, 0.001), (2.9999, 2.999)]
)
def test_token_ratio_keeps_three_decimals(ratio: float, kept: float) -> None:
    config = parse_service_config({"retryThrottling": {"maxTokens": 100, "tokenRatio": ratio}})
    assert config.retry_throttling == RetryThrottling(max_tokens=100.0, token_ratio=kept)


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({}, None),
        ({"serviceName": None}, None),
        ({"serviceName": ""}, HealthCheckConfig(service_name="")),
        ({"serviceName": "echo.Echo"}, HealthCheckConfig(service_name="echo.Echo")),
    ],
)
def test_health_check_config(health: dict[str, Any], expected: HealthCheckConfig | None) -> None:
    assert parse_service_config({"healthCheckConfig": health}).health_check == expected


def test_message_sizes_accept_decimal_strings() -> None:
    config = parse_service_config(
        method({"maxRequestMessageBytes": "0", "maxResponseMessageBytes": 1024.0})
    )
    assert config.method_configs[0].max_request_message_bytes == 0
    assert config.method_configs[0].max_response_message_bytes == 1024


def test_null_counts_as_absent() -> None:
    config = parse_service_config(
        {"methodConfig": [{"name": [{"service": "s", "method": None}], "timeout": None}]}
    )
    assert config.method_configs[0] == MethodConfig(names=(MethodName(service="s"),))


# -------------------------------------------------------------------------- errors

BAD_INPUTS: list[tuple[dict[Any, Any], str, str]] = [
    # (config, path of the error, words the message contains)
    ({"methodConfg": []}, "methodConfg", "did you mean 'methodConfig'?"),
    ({"methodConfig": {}}, "methodConfig", "found an empty object"),
    ({"methodConfig": [{}]}, "methodConfig[0].name", "is required"),
    ({"methodConfig": [{"name": []}]}, "methodConfig[0].name", "found an empty array"),
    ({"methodConfig": [{"name": ["echo.Echo"]}]}, "methodConfig[0].name[0]", "found the string"),
    (
        {"methodConfig": [{"name": [{"method": "Say"}]}]},
        "methodConfig[0].name[0].service",
        "'method' is set",
    ),
    (
        {"methodConfig": [{"name": [{"service": "s", "methd": "M"}]}]},
        "methodConfig[0].name[0].methd",
        "did you mean 'method'?",
    ),
    (
        {"methodConfig": [{"name": [{"service": 7}]}]},
        "methodConfig[0].name[0].service",
        "expected a string, found the number 7",
    ),
    (
        {"methodConfig": [{"name": [{"service": "a"}]}, {"name": [{"service": "a"}]}]},
        "methodConfig[1].name[0]",
        "first at methodConfig[0].name[0]",
    ),
    (
        {"methodConfig": [{"name": [{"service": "a"}, {"service": "a", "method": ""}]}]},
        "methodConfig[0].name[1]",
        "again",
    ),
    (
        {"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]},
        "methodConfig[1].name[0]",
        "the default name",
    ),
    (method({"timeout": 1}), "methodConfig[0].timeout", "found the number 1"),
    (method({"timeout": "1"}), "methodConfig[0].timeout", "'s' suffix"),
    (method({"timeout": "-1s"}), "methodConfig[0].timeout", ">= 0s"),
    (method({"timeout": "0.1234567891s"}), "methodConfig[0].timeout", "9 decimal places"),
    (method({"waitForReady": "true"}), "methodConfig[0].waitForReady", "true or false"),
    (method({"waitForReady": 1}), "methodConfig[0].waitForReady", "true or false"),
    (
        method({"maxRequestMessageBytes": -1}),
        "methodConfig[0].maxRequestMessageBytes",
        "integer >= 0",
    ),
    (
        method({"maxResponseMessageBytes": "1e3"}),
        "methodConfig[0].maxResponseMessageBytes",
        "decimal string",
    ),
    (
        method({"retryPolicy": retry(), "hedgingPolicy": {"maxAttempts": 2}}),
        "methodConfig[0].hedgingPolicy",
        "only one of",
    ),
    (
        method({"retryPolicy": retry(maxAttemps=3)}),
        "methodConfig[0].retryPolicy.maxAttemps",
        "did you mean 'maxAttempts'?",
    ),
    (
        method({"retryPolicy": retry(maxAttempts=None)}),
        "methodConfig[0].retryPolicy.maxAttempts",
        "is required",
    ),
    (
        method({"retryPolicy": retry(maxAttempts=1)}),
        "methodConfig[0].retryPolicy.maxAttempts",
        "expected an integer >= 2, found the number 1",
    ),
    (
        method({"retryPolicy": retry(maxAttempts=True)}),
        "methodConfig[0].retryPolicy.maxAttempts",
        "found true (a boolean)",
    ),
    (
        method({"retryPolicy": retry(maxAttempts="3")}),
        "methodConfig[0].retryPolicy.maxAttempts",
        'found the string "3"',
    ),
    (
        method({"retryPolicy": retry(maxAttempts=2.5)}),
        "methodConfig[0].retryPolicy.maxAttempts",
        "found the number 2.5",
    ),
    (
        method({"retryPolicy": retry(initialBackoff="0s")}),
        "methodConfig[0].retryPolicy.initialBackoff",
        "> 0s",
    ),
    (
        method({"retryPolicy": retry(maxBackoff=None)}),
        "methodConfig[0].retryPolicy.maxBackoff",
        "is required",
    ),
    (
        method({"retryPolicy": retry(backoffMultiplier=0)}),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "number > 0",
    ),
    (
        method({"retryPolicy": retry(backoffMultiplier="2")}),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "found the string",
    ),
    (
        method({"retryPolicy": retry(backoffMultiplier=float("inf"))}),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "found the number inf",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes=None)}),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        "is required",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes=[])}),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        "perAttemptRecvTimeout",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes="UNAVAILABLE")}),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        "an array",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes=["UNAVAILABLE", "UNAVAILBLE"])}),
        "methodConfig[0].retryPolicy.retryableStatusCodes[1]",
        "did you mean 'UNAVAILABLE'?",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes=["OK"])}),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        "OK",
    ),
    (
        method({"retryPolicy": retry(retryableStatusCodes=[17])}),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        "0 to 16",
    ),
    (
        method({"retryPolicy": retry(perAttemptRecvTimeout="0s")}),
        "methodConfig[0].retryPolicy.perAttemptRecvTimeout",
        "> 0s",
    ),
    (
        method({"retryPolicy": retry(retryBudget={})}),
        "methodConfig[0].retryPolicy.retryBudget",
        "unknown field",
    ),
    (
        method({"hedgingPolicy": {"hedgingDelay": "1s"}}),
        "methodConfig[0].hedgingPolicy.maxAttempts",
        "is required",
    ),
    (
        method({"hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "fast"}}),
        "methodConfig[0].hedgingPolicy.hedgingDelay",
        "duration",
    ),
    (
        method({"hedgingPolicy": {"maxAttempts": 3, "nonFatalStatusCodes": [0]}}),
        "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]",
        "non-fatal",
    ),
    (method({"retryPolicy": []}), "methodConfig[0].retryPolicy", "a retry policy"),
    ({"retryThrottling": {"tokenRatio": 0.1}}, "retryThrottling.maxTokens", "is required"),
    (
        {"retryThrottling": {"maxTokens": 0, "tokenRatio": 0.1}},
        "retryThrottling.maxTokens",
        "from 1 to 1000",
    ),
    (
        {"retryThrottling": {"maxTokens": 1001, "tokenRatio": 0.1}},
        "retryThrottling.maxTokens",
        "from 1 to 1000",
    ),
    (
        {"retryThrottling": {"maxTokens": 10, "tokenRatio": -1}},
        "retryThrottling.tokenRatio",
        "number > 0",
    ),
    (
        {"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.0004}},
        "retryThrottling.tokenRatio",
        "3 decimal places",
    ),
    (
        {"healthCheckConfig": {"serviceName": 1}},
        "healthCheckConfig.serviceName",
        "a string",
    ),
    (
        {"healthCheckConfig": {"service_name": "x"}},
        "healthCheckConfig.service_name",
        "did you mean 'serviceName'?",
    ),
    ({"healthCheckConfig": "echo"}, "healthCheckConfig", "a health check config"),
    ({"loadBalancingConfig": {"round_robin": {}}}, "loadBalancingConfig", "an array"),
    (lb(), "loadBalancingConfig", "found an empty array"),
    (lb({"unknown": {}}), "loadBalancingConfig", "'unknown'"),
    (lb({"round_robin": {}, "random": {}}), "loadBalancingConfig[0]", "exactly one"),
    (lb({}), "loadBalancingConfig[0]", "exactly one"),
    ({"loadBalancingConfig": ["round_robin"]}, "loadBalancingConfig[0]", "found the string"),
    (lb({"round_robin": None}), "loadBalancingConfig[0].round_robin", "found null"),
    (lb({"round_robin": {"x": 1}}), "loadBalancingConfig[0].round_robin.x", "allowed fields: none"),
    (
        lb({"pick_first": {"shuffleAddressList": "yes"}}),
        "loadBalancingConfig[0].pick_first.shuffleAddressList",
        "true or false",
    ),
    (
        lb({"weighted_round_robin": {"weights": {"127.0.0.1:5001": 0}}}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:5001"]',
        "number > 0",
    ),
    (
        lb({"weighted_round_robin": {"weights": {"127.0.0.1:5001": True}}}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:5001"]',
        "found true",
    ),
    (
        lb({"weighted_round_robin": {"weights": {"127.0.0.1": 1}}}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1"]',
        "host:port",
    ),
    (
        lb({"weighted_round_robin": {"weights": {"h:70000": 1}}}),
        'loadBalancingConfig[0].weighted_round_robin.weights["h:70000"]',
        "host:port",
    ),
    (
        lb({"weighted_round_robin": {"weights": {}}}),
        "loadBalancingConfig[0].weighted_round_robin.weights",
        "at least one address",
    ),
    (
        lb({"weighted_round_robin": {"enableOobLoadReport": True}}),
        "loadBalancingConfig[0].weighted_round_robin.enableOobLoadReport",
        "out-of-band load reports are not supported",
    ),
    (
        lb({"weighted_round_robin": {"errorUtilizationPenalty": -0.5}}),
        "loadBalancingConfig[0].weighted_round_robin.errorUtilizationPenalty",
        ">= 0",
    ),
    (
        lb({"weighted_round_robin": {"blackoutPeriod": 10}}),
        "loadBalancingConfig[0].weighted_round_robin.blackoutPeriod",
        "duration",
    ),
    (
        lb({"least_request": {"choiceCount": 1}}),
        "loadBalancingConfig[0].least_request.choiceCount",
        "integer >= 2",
    ),
    (
        lb({"least_request": {"choiceCount": False}}),
        "loadBalancingConfig[0].least_request.choiceCount",
        "found false",
    ),
    (
        lb({"peak_ewma": {"decay": "0s"}}),
        "loadBalancingConfig[0].peak_ewma.decay",
        "> 0s",
    ),
    (lb({"ring_hash": {}}), "loadBalancingConfig[0].ring_hash.requestHashHeader", "is required"),
    (
        lb({"unknown": {}}, {"ring_hash": {}}),
        "loadBalancingConfig[1].ring_hash.requestHashHeader",
        "is required",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "x-token-bin"}}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        "not -bin",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "bad header"}}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        "metadata key",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": ""}}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        "metadata key",
    ),
    (
        lb({"ring_hash_experimental": {"requestHashHeader": "k", "minRingSize": 0}}),
        "loadBalancingConfig[0].ring_hash_experimental.minRingSize",
        "from 1 to 8388608",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "k", "maxRingSize": 8388609}}),
        "loadBalancingConfig[0].ring_hash.maxRingSize",
        "from 1 to 8388608",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "k", "minRingSize": 100, "maxRingSize": 10}}),
        "loadBalancingConfig[0].ring_hash.minRingSize",
        "at most maxRingSize (10)",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "k", "minRingSize": 5000}}),
        "loadBalancingConfig[0].ring_hash.minRingSize",
        f"default maxRingSize ({DEFAULT_MAX_RING_SIZE})",
    ),
    (
        lb({"ring_hash": {"requestHashHeader": "k", "min_ring_size": 10}}),
        "loadBalancingConfig[0].ring_hash.min_ring_size",
        "did you mean 'minRingSize'?",
    ),
    ({"loadBalancingPolicy": "round_robbin"}, "loadBalancingPolicy", "did you mean 'round_robin'?"),
    ({"loadBalancingPolicy": "ring_hash"}, "loadBalancingPolicy", "needs a config"),
    ({"loadBalancingPolicy": {"round_robin": {}}}, "loadBalancingPolicy", "a policy name"),
    ({"load balancing": 1}, '["load balancing"]', "unknown field"),
    ({1: "x"}, "config", "string field names"),
]


@pytest.mark.parametrize(
    ("source", "path", "words"),
    [pytest.param(*case, id=f"{i}-{case[1]}") for i, case in enumerate(BAD_INPUTS)],
)
def test_every_bad_value_names_its_path(source: dict[Any, Any], path: str, words: str) -> None:
    error = parse_error(source)
    assert error.path == path
    assert words in error.message
    assert str(error) == f"{path}: {error.message}"


def test_there_are_plenty_of_distinct_bad_inputs() -> None:
    assert len({path for _, path, _ in BAD_INPUTS}) >= 25


def test_errors_say_what_was_expected_and_what_was_found() -> None:
    error = parse_error(method({"retryPolicy": retry(initialBackoff=0.1)}))
    assert error.path == "methodConfig[0].retryPolicy.initialBackoff"
    assert error.message.startswith("expected a duration")
    assert error.message.endswith("found the number 0.1")


def test_misspelled_field_lists_allowed_names_and_suggests_one() -> None:
    error = parse_error(method({"retryPolicy": retry(maxAttemps=3)}))
    assert error.path == "methodConfig[0].retryPolicy.maxAttemps"
    for allowed in ("maxAttempts", "initialBackoff", "retryableStatusCodes"):
        assert f"'{allowed}'" in error.message
    assert "did you mean 'maxAttempts'?" in error.message


def test_a_json_text_error_has_the_same_path_as_a_mapping_error() -> None:
    source = method({"retryPolicy": retry(maxAttempts=0)})
    assert parse_error(json.dumps(source)).path == parse_error(source).path


# ------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("1s", 1.0),
        ("0.1s", 0.1),
        ("10.5s", 10.5),
        ("0.000340s", 0.00034),
        ("1.000000001s", 1.000000001),
        ("315576000000s", 315_576_000_000.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "p") == seconds


@pytest.mark.parametrize(
    "value",
    [
        1,
        1.5,
        None,
        True,
        "1",
        "s",
        "1.s",
        ".5s",
        "1.5 s",
        " 1s",
        "1m",
        "-2s",
        "1e3s",
        "315576000001s",
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "methodConfig[3].timeout")
    assert info.value.path == "methodConfig[3].timeout"
    assert "expected" in info.value.message


# ---------------------------------------------------------------------- status codes


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("Deadline_Exceeded", grpc.StatusCode.DEADLINE_EXCEEDED),
        (14, grpc.StatusCode.UNAVAILABLE),
        (0, grpc.StatusCode.OK),
        (16, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_parse_status_code(value: object, code: grpc.StatusCode) -> None:
    assert parse_status_code(value, "p") is code


@pytest.mark.parametrize("value", [-1, 17, 1.5, True, None, "UNAVAILABLE ", "14", "NOT_A_CODE"])
def test_parse_status_code_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_status_code(value, "codes[2]")
    assert info.value.path == "codes[2]"
