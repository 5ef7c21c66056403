"""Hostile and extreme config input: nesting, long integers, non-finite and huge numbers,
weights for addresses that are not targets, clamped values. Every case ends in one
ConfigError naming the field path (or a documented clamp), never another exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resilientrpc import ConfigError
from resilientrpc.config import LeastRequest, WeightedRoundRobin, parse_service_config
from resilientrpc.testing import Backends
from tests.twins import ChannelHandle, Twin

LONG = "1" * 5000
WEIGHTS_PATH = "loadBalancingConfig[0].weighted_round_robin.weights"


def parse_error(source: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_service_config(source)
    return info.value


def weights(mapping: dict[str, Any]) -> dict[str, Any]:
    return {"loadBalancingConfig": [{"weighted_round_robin": {"weights": mapping}}]}


def method(entry: dict[str, Any]) -> dict[str, Any]:
    return {"methodConfig": [{"name": [{"service": "echo.Echo"}], **entry}]}


RETRY = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


# ---------------------------------------------------------------------------- nesting


def test_deeply_nested_json_text_is_a_config_error() -> None:
    error = parse_error('{"methodConfig": ' + "[" * 100_000)
    assert error.path == "config"
    assert "nested too deeply" in error.message
    assert "the service config text" in error.message


def test_deeply_nested_json_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"loadBalancingConfig": ' + '{"a": ' * 100_000)
    error = parse_error(path)
    assert error.path == "config"
    assert "nested too deeply" in error.message
    assert str(path) in error.message


def test_a_deeply_nested_mapping_is_not_walked_past_its_schema() -> None:
    nested: Any = 1
    for _ in range(100_000):
        nested = {"a": [nested]}
    for source, path in [
        ({"methodConfig": [nested]}, "methodConfig[0].a"),
        ({"retryThrottling": {"maxTokens": nested, "tokenRatio": 1}}, "retryThrottling.maxTokens"),
        (weights({"127.0.0.1:1": nested}), f'{WEIGHTS_PATH}["127.0.0.1:1"]'),
    ]:
        assert parse_error(source).path == path


# ---------------------------------------------------------------------- long integers


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            '{"methodConfig": [{"name": [{}], "maxRequestMessageBytes": ' + LONG + "}]}",
            "methodConfig[0].maxRequestMessageBytes",
        ),
        (
            '{"methodConfig": [{"name": [{}], "maxResponseMessageBytes": "' + LONG + '"}]}',
            "methodConfig[0].maxResponseMessageBytes",
        ),
        (
            json.dumps(weights({"127.0.0.1:1": 1})).replace(": 1}", ": " + LONG + "}"),
            f'{WEIGHTS_PATH}["127.0.0.1:1"]',
        ),
        (
            '{"retryThrottling": {"maxTokens": 10, "tokenRatio": -' + LONG + "}}",
            "retryThrottling.tokenRatio",
        ),
        (
            '{"methodConfig": [{"name": [{}], "timeout": "' + LONG + 's"}]}',
            "methodConfig[0].timeout",
        ),
    ],
)
def test_a_5000_digit_integer_in_json_text_names_its_field(text: str, path: str) -> None:
    error = parse_error(text)
    assert error.path == path
    assert "expected" in error.message


@pytest.mark.parametrize(
    ("source", "path"),
    [
        (method({"maxRequestMessageBytes": 10**5000}), "methodConfig[0].maxRequestMessageBytes"),
        (
            {"retryThrottling": {"maxTokens": 10, "tokenRatio": 10**5000}},
            "retryThrottling.tokenRatio",
        ),
        (
            method({"retryPolicy": {**RETRY, "retryableStatusCodes": [10**400]}}),
            "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        ),
        (weights({"127.0.0.1:1": 10**400}), f'{WEIGHTS_PATH}["127.0.0.1:1"]'),
    ],
)
def test_a_huge_python_int_names_its_field(source: dict[str, Any], path: str) -> None:
    error = parse_error(source)
    assert error.path == path
    assert "digits" in error.message or "expected" in error.message


def test_a_long_choice_count_is_clamped_like_a_large_one() -> None:
    text = '{"loadBalancingConfig": [{"least_request": {"choiceCount": ' + LONG + "}}]}"
    assert (
        parse_service_config(text).load_balancing
        == parse_service_config(
            {"loadBalancingConfig": [{"least_request": {"choiceCount": 11}}]}
        ).load_balancing
    )


# -------------------------------------------------------------------- number bounds


@pytest.mark.parametrize("value", [1e308, 1e10, float("nan"), float("inf"), -1.0, 0])
def test_static_weights_are_finite_positive_and_bounded(value: float) -> None:
    error = parse_error(weights({"127.0.0.1:1": 2, "127.0.0.1:2": value}))
    assert error.path == f'{WEIGHTS_PATH}["127.0.0.1:2"]'
    assert "<= 1e+09" in error.message


def test_the_largest_static_weight_is_accepted() -> None:
    policy = parse_service_config(weights({"127.0.0.1:1": 1e9})).load_balancing
    assert isinstance(policy, WeightedRoundRobin)
    assert policy.weights == {"127.0.0.1:1": 1e9}


def test_json_1e999_weight_is_refused() -> None:
    error = parse_error(
        '{"loadBalancingConfig": [{"weighted_round_robin": {"weights": {"127.0.0.1:1": 1e999}}}]}'
    )
    assert error.path == f'{WEIGHTS_PATH}["127.0.0.1:1"]'


def test_a_huge_backoff_multiplier_is_refused() -> None:
    error = parse_error(method({"retryPolicy": {**RETRY, "backoffMultiplier": 1e300}}))
    assert error.path == "methodConfig[0].retryPolicy.backoffMultiplier"


def test_durations_are_capped_where_timers_and_deadlines_still_work() -> None:
    config = parse_service_config(method({"timeout": "315576000000s"}))
    timeout = config.method_configs[0].timeout
    assert timeout is not None and timeout <= 1e9


def test_the_longest_config_timeout_still_lets_calls_through(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(1)
    config = {"methodConfig": [{"name": [{}], "timeout": "315576000000s"}]}
    handle = open_channel(group.addresses, config=config)
    handle.wait_ready(5.0)
    assert handle.echo("far", timeout=None).message == "far"


def test_a_clamped_choice_count_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="resilientrpc.config")
    config = parse_service_config({"loadBalancingConfig": [{"least_request": {"choiceCount": 50}}]})
    assert isinstance(config.load_balancing, LeastRequest)
    assert config.load_balancing.choice_count == 10
    records = [r for r in caplog.records if r.name == "resilientrpc.config"]
    assert len(records) == 1
    assert "loadBalancingConfig[0].least_request.choiceCount" in records[0].getMessage()
    assert "50" in records[0].getMessage()


def test_a_choice_count_within_limits_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilientrpc.config")
    parse_service_config({"loadBalancingConfig": [{"peak_ewma": {"choiceCount": 10}}]})
    assert [r for r in caplog.records if r.name == "resilientrpc.config"] == []


# ----------------------------------------------------------- weights against targets


def test_both_twins_refuse_weights_for_an_address_that_is_not_a_target(twin: Twin) -> None:
    config = weights({"127.0.0.1:1": 2, "127.0.0.1:9": 5})
    with pytest.raises(ConfigError) as info:
        twin.open(["127.0.0.1:1", "127.0.0.1:2"], config=config)
    assert info.value.path == f'{WEIGHTS_PATH}["127.0.0.1:9"]'
    assert "127.0.0.1:1, 127.0.0.1:2" in info.value.message
    assert "'127.0.0.1:9'" in info.value.message


def test_weight_keys_are_compared_in_the_targets_spelling(
    open_channel: Callable[..., ChannelHandle], backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    first, second = group.addresses
    host, port = first.rsplit(":", 1)
    config = weights({f" {host}:0{port}": 4, second: 1})  # leading zero, stray space
    handle = open_channel(group.addresses, config=config)
    handle.wait_ready(5.0)
    assert {s.address: s.weight for s in handle.endpoints()} == {first: 4.0, second: 1.0}


def test_ipv6_weight_keys_match_bracketed_targets(twin: Twin) -> None:
    handle = twin.open(["[::1]:5"], config=weights({"[::1]:05": 2}))
    handle.close()


def test_dns_targets_take_weights_for_the_addresses_they_resolve_to(twin: Twin) -> None:
    handle = twin.open("dns:///localhost:5", config=weights({"127.0.0.1:5": 2}))
    handle.close()


def test_one_ipv6_address_spelled_twice_in_weights_is_refused() -> None:
    weights = {"[::1]:80": 1, "[0::1]:80": 2}
    with pytest.raises(ConfigError, match=r"expected each address once, found .\[::1\]:80. again"):
        parse_service_config(
            {"loadBalancingConfig": [{"weighted_round_robin": {"weights": weights}}]}
        )


def test_an_unknown_status_code_without_a_near_miss_ends_cleanly() -> None:
    config = {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 2,
                    "initialBackoff": "1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["zzzz"],
                },
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_service_config(config)
    assert str(caught.value).endswith('found the string "zzzz"')
