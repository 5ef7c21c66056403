"""Exact ConfigError paths and messages for every kind of bad service config input.

The documented contract is one ConfigError naming the JSON field path and saying what was
expected and what was found; these tables pin both, word for word, per kind of mistake,
and the exact values parsed from good input.

The field tables of the config package are built once, at import, from kind factories
(``integer_kind``, ``number_kind``, ``_weights_kind``...). Mutation testing swaps a
function only when it is called, so the second half of this file builds each kind inside
the test and checks it directly; the first half goes through ``parse_service_config``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from resilientrpc.config import _schema, balancing, parse_service_config
from resilientrpc.config._schema import Kind, LongInteger
from resilientrpc.errors import ConfigError
from tests.test_config import RETRY


def m(**entry: Any) -> dict[str, Any]:
    """A service config with one method config for echo.Echo holding ``entry``."""
    return {"methodConfig": [{"name": [{"service": "echo.Echo"}], **entry}]}


def r(**changes: Any) -> dict[str, Any]:
    """A method config with a valid retry policy, ``changes`` applied (None removes)."""
    policy = {**RETRY, **changes}
    return m(retryPolicy={key: value for key, value in policy.items() if value is not None})


def h(**policy: Any) -> dict[str, Any]:
    return m(hedgingPolicy={"maxAttempts": 3, **policy})


def lb(name: str, config: Any) -> dict[str, Any]:
    return {"loadBalancingConfig": [{name: config}]}


def w(weights: Any) -> dict[str, Any]:
    return lb("weighted_round_robin", {"weights": weights})


def rt(**fields: Any) -> dict[str, Any]:
    return {"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1, **fields}}


# ------------------------------------------------------- through parse_service_config

BAD_CONFIGS = [
    pytest.param(
        {"methodconfig": []},
        "methodconfig",
        (
            "unknown field 'methodconfig' in the service config; allowed "
            "fields: 'loadBalancingConfig', 'loadBalancingPolicy', "
            "'methodConfig', 'retryThrottling', 'retryBudget', 'healthCheckConfig', "
            "'commonLbConfig'. did you mean 'methodConfig'?"
        ),
        id="top-unknown",
    ),
    pytest.param(
        {"zzz": 1},
        "zzz",
        (
            "unknown field 'zzz' in the service config; allowed fields: "
            "'loadBalancingConfig', 'loadBalancingPolicy', 'methodConfig', "
            "'retryThrottling', 'retryBudget', 'healthCheckConfig', 'commonLbConfig'."
        ),
        id="top-unknown-far",
    ),
    pytest.param(
        {1: 2},
        "config",
        "expected string field names, found 1",
        id="top-nonstr-key",
    ),
    pytest.param(
        [],
        "config",
        ("expected a mapping, JSON text, a path to a JSON file or None, found an empty array"),
        id="top-list",
    ),
    pytest.param(
        {"methodConfig": {}},
        "methodConfig",
        "expected an array of method configs, found an empty object",
        id="mc-not-array",
    ),
    pytest.param(
        {"methodConfig": [3]},
        "methodConfig[0]",
        "expected a method config (a JSON object), found the number 3",
        id="mc-entry-not-obj",
    ),
    pytest.param(
        {"methodConfig": [{}]},
        "methodConfig[0].name",
        (
            'is required: expected a non-empty array of names like {"service": '
            '"pkg.Service", "method": "M"}, found nothing'
        ),
        id="mc-no-name",
    ),
    pytest.param(
        {"methodConfig": [{"name": []}]},
        "methodConfig[0].name",
        (
            'expected a non-empty array of names like {"service": '
            '"pkg.Service", "method": "M"}, found an empty array'
        ),
        id="mc-name-empty",
    ),
    pytest.param(
        {"methodConfig": [{"name": "x"}]},
        "methodConfig[0].name",
        (
            'expected a non-empty array of names like {"service": '
            '"pkg.Service", "method": "M"}, found the string "x"'
        ),
        id="mc-name-not-array",
    ),
    pytest.param(
        {"methodConfig": [{"name": ["echo"]}]},
        "methodConfig[0].name[0]",
        'expected a method name (a JSON object), found the string "echo"',
        id="mc-name-entry-str",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{"servce": "a"}]}]},
        "methodConfig[0].name[0].servce",
        (
            "unknown field 'servce' in a method name; allowed fields: "
            "'service', 'method'. did you mean 'service'?"
        ),
        id="mc-name-unknown",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{"service": 1}]}]},
        "methodConfig[0].name[0].service",
        "expected a string, found the number 1",
        id="mc-name-service-int",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{"service": "a", "method": 2}]}]},
        "methodConfig[0].name[0].method",
        "expected a string, found the number 2",
        id="mc-name-method-int",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{"method": "Say"}]}]},
        "methodConfig[0].name[0].service",
        "expected a service name, since 'method' is set ('Say'), found nothing",
        id="mc-name-method-only",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{"service": "", "method": "Say"}]}]},
        "methodConfig[0].name[0].service",
        "expected a service name, since 'method' is set ('Say'), found nothing",
        id="mc-name-method-only-empty-service",
    ),
    pytest.param(
        {"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]},
        "methodConfig[1].name[0]",
        (
            "expected each name once in the service config, found {} (the "
            "default name) again (first at methodConfig[0].name[0])"
        ),
        id="mc-dup-default",
    ),
    pytest.param(
        {
            "methodConfig": [
                {"name": [{"service": "a"}]},
                {"name": [{"service": "b"}, {"service": "a"}]},
            ]
        },
        "methodConfig[1].name[1]",
        (
            'expected each name once in the service config, found {"service": '
            '"a"} again (first at methodConfig[0].name[0])'
        ),
        id="mc-dup-service",
    ),
    pytest.param(
        {
            "methodConfig": [
                {"name": [{"service": "a", "method": "M"}, {"service": "a", "method": "M"}]}
            ]
        },
        "methodConfig[0].name[1]",
        (
            'expected each name once in the service config, found {"service": '
            '"a", "method": "M"} again (first at methodConfig[0].name[0])'
        ),
        id="mc-dup-method",
    ),
    pytest.param(
        m(timeout=3),
        "methodConfig[0].timeout",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the number 3"
        ),
        id="mc-timeout-num",
    ),
    pytest.param(
        m(timeout="-1s"),
        "methodConfig[0].timeout",
        'expected a duration >= 0s, found the string "-1s"',
        id="mc-timeout-neg",
    ),
    pytest.param(
        m(timeout="315576000001s"),
        "methodConfig[0].timeout",
        ('expected a duration of at most 315576000000s, found the string "315576000001s"'),
        id="mc-timeout-big",
    ),
    pytest.param(
        m(timeout="1234567890123s"),
        "methodConfig[0].timeout",
        ('expected a duration of at most 315576000000s, found the string "1234567890123s"'),
        id="mc-timeout-long",
    ),
    pytest.param(
        m(timeout="1.0000000001s"),
        "methodConfig[0].timeout",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1.0000000001s\""
        ),
        id="mc-timeout-10dec",
    ),
    pytest.param(
        m(timeout="1"),
        "methodConfig[0].timeout",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1\""
        ),
        id="mc-timeout-nos",
    ),
    pytest.param(
        m(timeout="x" * 100),
        "methodConfig[0].timeout",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string "
            '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."'
        ),
        id="mc-timeout-long-string",
    ),
    pytest.param(
        m(waitForReady="yes"),
        "methodConfig[0].waitForReady",
        'expected true or false, found the string "yes"',
        id="mc-wfr",
    ),
    pytest.param(
        m(waitForReady=1),
        "methodConfig[0].waitForReady",
        "expected true or false, found the number 1",
        id="mc-wfr-int",
    ),
    pytest.param(
        m(maxRequestMessageBytes=-1),
        "methodConfig[0].maxRequestMessageBytes",
        ("expected an integer >= 0 (a JSON number or a decimal string), found the number -1"),
        id="mc-reqbytes-neg",
    ),
    pytest.param(
        m(maxRequestMessageBytes=1.5),
        "methodConfig[0].maxRequestMessageBytes",
        ("expected an integer >= 0 (a JSON number or a decimal string), found the number 1.5"),
        id="mc-reqbytes-float",
    ),
    pytest.param(
        m(maxRequestMessageBytes="abc"),
        "methodConfig[0].maxRequestMessageBytes",
        ('expected an integer >= 0 (a JSON number or a decimal string), found the string "abc"'),
        id="mc-reqbytes-str",
    ),
    pytest.param(
        m(maxResponseMessageBytes=True),
        "methodConfig[0].maxResponseMessageBytes",
        ("expected an integer >= 0 (a JSON number or a decimal string), found true (a boolean)"),
        id="mc-respbytes-bool",
    ),
    pytest.param(
        m(retryPolicy=RETRY, hedgingPolicy={"maxAttempts": 2}),
        "methodConfig[0].hedgingPolicy",
        "expected only one of 'retryPolicy' and 'hedgingPolicy', found both",
        id="mc-both",
    ),
    pytest.param(
        m(retrypolicy=RETRY),
        "methodConfig[0].retrypolicy",
        (
            "unknown field 'retrypolicy' in a method config; allowed fields: "
            "'name', 'timeout', 'waitForReady', 'maxRequestMessageBytes', "
            "'maxResponseMessageBytes', 'retryPolicy', 'hedgingPolicy'. did you"
            " mean 'retryPolicy'?"
        ),
        id="mc-unknown",
    ),
    pytest.param(
        m(retryPolicy=[]),
        "methodConfig[0].retryPolicy",
        "expected a retry policy (a JSON object), found an empty array",
        id="rp-not-obj",
    ),
    pytest.param(
        r(maxAttempts=None),
        "methodConfig[0].retryPolicy.maxAttempts",
        "is required: expected an integer >= 2, found nothing",
        id="rp-missing-max",
    ),
    pytest.param(
        r(initialBackoff=None),
        "methodConfig[0].retryPolicy.initialBackoff",
        "is required: expected a duration > 0s, like '1.5s', found nothing",
        id="rp-missing-initial",
    ),
    pytest.param(
        r(maxBackoff=None),
        "methodConfig[0].retryPolicy.maxBackoff",
        "is required: expected a duration > 0s, like '1.5s', found nothing",
        id="rp-missing-maxb",
    ),
    pytest.param(
        r(backoffMultiplier=None),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "is required: expected a finite number > 0 and <= 1e+06, found nothing",
        id="rp-missing-mult",
    ),
    pytest.param(
        r(retryableStatusCodes=None),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        (
            "is required: expected an array of retryable status codes, like "
            '["UNAVAILABLE"], found nothing'
        ),
        id="rp-missing-codes",
    ),
    pytest.param(
        r(maxAttempts=1),
        "methodConfig[0].retryPolicy.maxAttempts",
        "expected an integer >= 2, found the number 1",
        id="rp-max-1",
    ),
    pytest.param(
        r(maxAttempts="3"),
        "methodConfig[0].retryPolicy.maxAttempts",
        'expected an integer >= 2, found the string "3"',
        id="rp-max-str",
    ),
    pytest.param(
        r(maxAttempts=2.5),
        "methodConfig[0].retryPolicy.maxAttempts",
        "expected an integer >= 2, found the number 2.5",
        id="rp-max-float",
    ),
    pytest.param(
        r(initialBackoff="0s"),
        "methodConfig[0].retryPolicy.initialBackoff",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
        id="rp-initial-0",
    ),
    pytest.param(
        r(initialBackoff="-0s"),
        "methodConfig[0].retryPolicy.initialBackoff",
        "expected a duration > 0s, like '1.5s', found the string \"-0s\"",
        id="rp-initial-neg0",
    ),
    pytest.param(
        r(maxBackoff="0.000s"),
        "methodConfig[0].retryPolicy.maxBackoff",
        "expected a duration > 0s, like '1.5s', found the string \"0.000s\"",
        id="rp-maxb-0",
    ),
    pytest.param(
        r(backoffMultiplier=0),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "expected a finite number > 0 and <= 1e+06, found the number 0",
        id="rp-mult-0",
    ),
    pytest.param(
        r(backoffMultiplier=1e7),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        ("expected a finite number > 0 and <= 1e+06, found the number 10000000.0"),
        id="rp-mult-big",
    ),
    pytest.param(
        r(backoffMultiplier="2"),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        'expected a finite number > 0 and <= 1e+06, found the string "2"',
        id="rp-mult-str",
    ),
    pytest.param(
        r(backoffMultiplier=True),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "expected a finite number > 0 and <= 1e+06, found true (a boolean)",
        id="rp-mult-bool",
    ),
    pytest.param(
        r(backoffMultiplier=10**400),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        ("expected a finite number > 0 and <= 1e+06, found an integer of about 400 digits"),
        id="rp-mult-huge-int",
    ),
    pytest.param(
        r(backoffMultiplier=float("nan")),
        "methodConfig[0].retryPolicy.backoffMultiplier",
        "expected a finite number > 0 and <= 1e+06, found the number nan",
        id="rp-mult-nan",
    ),
    pytest.param(
        r(retryableStatusCodes=[]),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        (
            "expected at least one status code (an empty list is allowed only "
            "with 'perAttemptRecvTimeout'), found an empty array"
        ),
        id="rp-codes-empty",
    ),
    pytest.param(
        r(retryableStatusCodes="UNAVAILABLE"),
        "methodConfig[0].retryPolicy.retryableStatusCodes",
        (
            'expected an array of retryable status codes, like ["UNAVAILABLE"],'
            ' found the string "UNAVAILABLE"'
        ),
        id="rp-codes-str",
    ),
    pytest.param(
        r(retryableStatusCodes=["UNAVAILABLE", "OK"]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[1]",
        "OK is not a failure, so it cannot be retryable",
        id="rp-codes-ok",
    ),
    pytest.param(
        r(retryableStatusCodes=[0]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        "OK is not a failure, so it cannot be retryable",
        id="rp-codes-ok-num",
    ),
    pytest.param(
        r(retryableStatusCodes=["UNAVAILABE"]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found the string \"UNAVAILABE\"; did you mean 'UNAVAILABLE'?"
        ),
        id="rp-codes-typo",
    ),
    pytest.param(
        r(retryableStatusCodes=["deadline_exceded"]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            'to 16, found the string "deadline_exceded"; did you mean '
            "'DEADLINE_EXCEEDED'?"
        ),
        id="rp-codes-lower-typo",
    ),
    pytest.param(
        r(retryableStatusCodes=[17]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found the number 17"
        ),
        id="rp-codes-17",
    ),
    pytest.param(
        r(retryableStatusCodes=[-1]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found the number -1"
        ),
        id="rp-codes-neg",
    ),
    pytest.param(
        r(retryableStatusCodes=[14.5]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found the number 14.5"
        ),
        id="rp-codes-float",
    ),
    pytest.param(
        r(retryableStatusCodes=[True]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found true (a boolean)"
        ),
        id="rp-codes-bool",
    ),
    pytest.param(
        r(retryableStatusCodes=[None]),
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        ("expected a status code name like 'UNAVAILABLE' or a number from 0 to 16, found null"),
        id="rp-codes-null",
    ),
    pytest.param(
        r(perAttemptRecvTimeout="0s"),
        "methodConfig[0].retryPolicy.perAttemptRecvTimeout",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
        id="rp-perattempt-0",
    ),
    pytest.param(
        r(maxattempts=3),
        "methodConfig[0].retryPolicy.maxattempts",
        (
            "unknown field 'maxattempts' in a retry policy; allowed fields: "
            "'maxAttempts', 'initialBackoff', 'maxBackoff', "
            "'backoffMultiplier', 'retryableStatusCodes', "
            "'perAttemptRecvTimeout'. did you mean 'maxAttempts'?"
        ),
        id="rp-unknown",
    ),
    pytest.param(
        m(hedgingPolicy={}),
        "methodConfig[0].hedgingPolicy.maxAttempts",
        "is required: expected an integer >= 2, found nothing",
        id="hp-missing-max",
    ),
    pytest.param(
        h(maxAttempts=1),
        "methodConfig[0].hedgingPolicy.maxAttempts",
        "expected an integer >= 2, found the number 1",
        id="hp-max-1",
    ),
    pytest.param(
        h(hedgingDelay=1),
        "methodConfig[0].hedgingPolicy.hedgingDelay",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the number 1"
        ),
        id="hp-delay",
    ),
    pytest.param(
        h(nonFatalStatusCodes=["OK"]),
        "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]",
        "OK is not a failure, so it cannot be non-fatal",
        id="hp-codes-ok",
    ),
    pytest.param(
        h(nonFatalStatusCodes={}),
        "methodConfig[0].hedgingPolicy.nonFatalStatusCodes",
        (
            'expected an array of non-fatal status codes, like ["UNAVAILABLE"],'
            " found an empty object"
        ),
        id="hp-codes-obj",
    ),
    pytest.param(
        h(hedging_delay="1s"),
        "methodConfig[0].hedgingPolicy.hedging_delay",
        (
            "unknown field 'hedging_delay' in a hedging policy; allowed fields:"
            " 'maxAttempts', 'hedgingDelay', 'nonFatalStatusCodes', "
            "'hedgingDelayPercentile'. did you mean 'hedgingDelay'?"
        ),
        id="hp-unknown",
    ),
    pytest.param(
        {"retryThrottling": 1},
        "retryThrottling",
        ("expected a retry throttling policy (a JSON object), found the number 1"),
        id="rt-not-obj",
    ),
    pytest.param(
        {"retryThrottling": {"tokenRatio": 0.1}},
        "retryThrottling.maxTokens",
        "is required: expected an integer from 1 to 1000, found nothing",
        id="rt-missing-tokens",
    ),
    pytest.param(
        {"retryThrottling": {"maxTokens": 10}},
        "retryThrottling.tokenRatio",
        "is required: expected a finite number > 0, found nothing",
        id="rt-missing-ratio",
    ),
    pytest.param(
        rt(maxTokens=0),
        "retryThrottling.maxTokens",
        "expected an integer from 1 to 1000, found the number 0",
        id="rt-tokens-0",
    ),
    pytest.param(
        rt(maxTokens=1001),
        "retryThrottling.maxTokens",
        "expected an integer from 1 to 1000, found the number 1001",
        id="rt-tokens-1001",
    ),
    pytest.param(
        rt(maxTokens=1.5),
        "retryThrottling.maxTokens",
        "expected an integer from 1 to 1000, found the number 1.5",
        id="rt-tokens-float",
    ),
    pytest.param(
        rt(tokenRatio=0),
        "retryThrottling.tokenRatio",
        "expected a finite number > 0, found the number 0",
        id="rt-ratio-0",
    ),
    pytest.param(
        rt(tokenRatio=0.0009),
        "retryThrottling.tokenRatio",
        ("expected a number >= 0.001 (gRPC keeps 3 decimal places), found the number 0.0009"),
        id="rt-ratio-tiny",
    ),
    pytest.param(
        rt(tokenRatio=-1),
        "retryThrottling.tokenRatio",
        "expected a finite number > 0, found the number -1",
        id="rt-ratio-neg",
    ),
    pytest.param(
        rt(max_tokens=1),
        "retryThrottling.max_tokens",
        (
            "unknown field 'max_tokens' in a retry throttling policy; allowed "
            "fields: 'maxTokens', 'tokenRatio'. did you mean 'maxTokens'?"
        ),
        id="rt-unknown",
    ),
    pytest.param(
        {"healthCheckConfig": "x"},
        "healthCheckConfig",
        'expected a health check config (a JSON object), found the string "x"',
        id="hc-not-obj",
    ),
    pytest.param(
        {"healthCheckConfig": {"serviceName": 1}},
        "healthCheckConfig.serviceName",
        "expected a string, found the number 1",
        id="hc-name-int",
    ),
    pytest.param(
        {"healthCheckConfig": {"service": "x"}},
        "healthCheckConfig.service",
        (
            "unknown field 'service' in a health check config; allowed fields: "
            "'serviceName', 'interval', 'timeout'. did you mean 'serviceName'?"
        ),
        id="hc-unknown",
    ),
    pytest.param(
        {"loadBalancingConfig": {}},
        "loadBalancingConfig",
        ('expected an array of {"policy_name": {config}} objects, found an empty object'),
        id="lbc-not-array",
    ),
    pytest.param(
        {"loadBalancingConfig": []},
        "loadBalancingConfig",
        (
            "expected at least one supported policy (pick_first, round_robin, "
            "weighted_round_robin, least_request, least_request_experimental, "
            "peak_ewma, random, ring_hash, ring_hash_experimental, "
            "outlier_detection, outlier_detection_experimental), found an "
            "empty array."
        ),
        id="lbc-empty",
    ),
    pytest.param(
        {"loadBalancingConfig": ["round_robin"]},
        "loadBalancingConfig[0]",
        ('expected an object with one policy name as its key, found the string "round_robin"'),
        id="lbc-entry-not-obj",
    ),
    pytest.param(
        {"loadBalancingConfig": [{"round_robin": {}, "random": {}}]},
        "loadBalancingConfig[0]",
        ("expected an object with exactly one policy name, found 'round_robin', 'random'"),
        id="lbc-entry-two",
    ),
    pytest.param(
        {"loadBalancingConfig": [{}]},
        "loadBalancingConfig[0]",
        "expected an object with exactly one policy name, found no keys",
        id="lbc-entry-none",
    ),
    pytest.param(
        {"loadBalancingConfig": [{"round_robn": {}}, {"xds": {}}]},
        "loadBalancingConfig",
        (
            "expected at least one supported policy (pick_first, round_robin, "
            "weighted_round_robin, least_request, least_request_experimental, "
            "peak_ewma, random, ring_hash, ring_hash_experimental, "
            "outlier_detection, outlier_detection_experimental), found "
            "'round_robn', 'xds'. did you mean 'round_robin'?"
        ),
        id="lbc-unknown-names",
    ),
    pytest.param(
        lb("round_robin", []),
        "loadBalancingConfig[0].round_robin",
        "expected the round_robin config (a JSON object), found an empty array",
        id="lbc-config-not-obj",
    ),
    pytest.param(
        lb("round_robin", {"x": 1}),
        "loadBalancingConfig[0].round_robin.x",
        "unknown field 'x' in the round_robin config; allowed fields: none.",
        id="lbc-rr-unknown",
    ),
    pytest.param(
        lb("pick_first", {"shuffleAddressList": "true"}),
        "loadBalancingConfig[0].pick_first.shuffleAddressList",
        'expected true or false, found the string "true"',
        id="pf-shuffle",
    ),
    pytest.param(
        lb("pick_first", {"shuffle_address_list": True}),
        "loadBalancingConfig[0].pick_first.shuffle_address_list",
        (
            "unknown field 'shuffle_address_list' in the pick_first config; "
            "allowed fields: 'shuffleAddressList'. did you mean "
            "'shuffleAddressList'?"
        ),
        id="pf-unknown",
    ),
    pytest.param(
        lb("least_request", {"choiceCount": 1}),
        "loadBalancingConfig[0].least_request.choiceCount",
        ("expected an integer >= 2 (a JSON number or a decimal string), found the number 1"),
        id="lr-choice-1",
    ),
    pytest.param(
        lb("least_request", {"choiceCount": 2.5}),
        "loadBalancingConfig[0].least_request.choiceCount",
        ("expected an integer >= 2 (a JSON number or a decimal string), found the number 2.5"),
        id="lr-choice-float",
    ),
    pytest.param(
        lb("least_request", {"choiceCount": "x"}),
        "loadBalancingConfig[0].least_request.choiceCount",
        ('expected an integer >= 2 (a JSON number or a decimal string), found the string "x"'),
        id="lr-choice-str-bad",
    ),
    pytest.param(
        lb("least_request_experimental", {"choice": 2}),
        "loadBalancingConfig[0].least_request_experimental.choice",
        (
            "unknown field 'choice' in the least_request_experimental config; "
            "allowed fields: 'choiceCount'. did you mean 'choiceCount'?"
        ),
        id="lr-unknown",
    ),
    pytest.param(
        lb("peak_ewma", {"decay": "0s"}),
        "loadBalancingConfig[0].peak_ewma.decay",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
        id="pe-decay-0",
    ),
    pytest.param(
        lb("peak_ewma", {"decay": 10}),
        "loadBalancingConfig[0].peak_ewma.decay",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the number 10"
        ),
        id="pe-decay-num",
    ),
    pytest.param(
        lb("peak_ewma", {"choiceCount": 1}),
        "loadBalancingConfig[0].peak_ewma.choiceCount",
        ("expected an integer >= 2 (a JSON number or a decimal string), found the number 1"),
        id="pe-choice-1",
    ),
    pytest.param(
        lb("ring_hash", {}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        (
            "is required: expected a metadata key such as 'x-user-id' (letters,"
            " digits, '-', '_', '.'; not -bin), found nothing"
        ),
        id="rh-no-header",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": 1}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the number 1"
        ),
        id="rh-header-int",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": "x-id-bin"}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"x-id-bin\""
        ),
        id="rh-header-bin",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": "x id"}),
        "loadBalancingConfig[0].ring_hash.requestHashHeader",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"x id\""
        ),
        id="rh-header-space",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": "x", "minRingSize": 0}),
        "loadBalancingConfig[0].ring_hash.minRingSize",
        (
            "expected an integer from 1 to 8388608 (a JSON number or a decimal "
            "string), found the number 0"
        ),
        id="rh-min-0",
    ),
    pytest.param(
        lb("ring_hash_experimental", {"requestHashHeader": "x", "maxRingSize": 8388609}),
        "loadBalancingConfig[0].ring_hash_experimental.maxRingSize",
        (
            "expected an integer from 1 to 8388608 (a JSON number or a decimal "
            "string), found the number 8388609"
        ),
        id="rh-max-big",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": "x", "minRingSize": 100, "maxRingSize": 10}),
        "loadBalancingConfig[0].ring_hash.minRingSize",
        "expected at most maxRingSize (10), found the number 100",
        id="rh-min-gt-max",
    ),
    pytest.param(
        lb("ring_hash", {"requestHashHeader": "x", "minRingSize": 5000}),
        "loadBalancingConfig[0].ring_hash.minRingSize",
        ("expected at most the default maxRingSize (4096), found the number 5000"),
        id="rh-min-gt-default",
    ),
    pytest.param(
        lb("weighted_round_robin", {"blackoutPeriod": 1}),
        "loadBalancingConfig[0].weighted_round_robin.blackoutPeriod",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the number 1"
        ),
        id="wrr-blackout",
    ),
    pytest.param(
        lb("weighted_round_robin", {"weightExpirationPeriod": "-1s"}),
        "loadBalancingConfig[0].weighted_round_robin.weightExpirationPeriod",
        'expected a duration >= 0s, found the string "-1s"',
        id="wrr-exp",
    ),
    pytest.param(
        lb("weighted_round_robin", {"weightUpdatePeriod": "x"}),
        "loadBalancingConfig[0].weighted_round_robin.weightUpdatePeriod",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"x\""
        ),
        id="wrr-upd",
    ),
    pytest.param(
        lb("weighted_round_robin", {"errorUtilizationPenalty": -0.5}),
        "loadBalancingConfig[0].weighted_round_robin.errorUtilizationPenalty",
        "expected a finite number >= 0, found the number -0.5",
        id="wrr-penalty",
    ),
    pytest.param(
        lb("weighted_round_robin", {"enableOobLoadReport": True}),
        "loadBalancingConfig[0].weighted_round_robin.enableOobLoadReport",
        (
            "expected false (out-of-band load reports are not supported; "
            "per-call reports are used), found true (a boolean)"
        ),
        id="wrr-oob-true",
    ),
    pytest.param(
        lb("weighted_round_robin", {"enableOobLoadReport": 0}),
        "loadBalancingConfig[0].weighted_round_robin.enableOobLoadReport",
        (
            "expected false (out-of-band load reports are not supported; "
            "per-call reports are used), found the number 0"
        ),
        id="wrr-oob-0",
    ),
    pytest.param(
        lb("weighted_round_robin", {"oobReportingPeriod": "1m"}),
        "loadBalancingConfig[0].weighted_round_robin.oobReportingPeriod",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1m\""
        ),
        id="wrr-oobp",
    ),
    pytest.param(
        lb("weighted_round_robin", {"weight": {}}),
        "loadBalancingConfig[0].weighted_round_robin.weight",
        (
            "unknown field 'weight' in the weighted_round_robin config; allowed"
            " fields: 'weights', 'blackoutPeriod', 'weightExpirationPeriod', "
            "'weightUpdatePeriod', 'errorUtilizationPenalty', "
            "'enableOobLoadReport', 'oobReportingPeriod'. did you mean "
            "'weights'?"
        ),
        id="wrr-unknown",
    ),
    pytest.param(
        w([]),
        "loadBalancingConfig[0].weighted_round_robin.weights",
        (
            'expected an object of "host:port" to weight, like '
            '{"10.0.0.1:50051": 2}, found an empty array'
        ),
        id="w-not-obj",
    ),
    pytest.param(
        w({}),
        "loadBalancingConfig[0].weighted_round_robin.weights",
        (
            'expected at least one address in an object of "host:port" to '
            'weight, like {"10.0.0.1:50051": 2}, found {}'
        ),
        id="w-empty",
    ),
    pytest.param(
        w({"nohost": 1}),
        'loadBalancingConfig[0].weighted_round_robin.weights["nohost"]',
        (
            "expected an address 'host:port' as the key, found \"nohost\" "
            "('nohost' has no port; expected 'host:port')"
        ),
        id="w-bad-key",
    ),
    pytest.param(
        w({"127.0.0.1:80": 1, "127.0.0.1:080": 2}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:080"]',
        "expected each address once, found '127.0.0.1:80' again",
        id="w-dup",
    ),
    pytest.param(
        w({"127.0.0.1:80": 0}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:80"]',
        "expected a finite number > 0 and <= 1e+09, found the number 0",
        id="w-zero",
    ),
    pytest.param(
        w({"127.0.0.1:80": 1e10}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:80"]',
        ("expected a finite number > 0 and <= 1e+09, found the number 10000000000.0"),
        id="w-big",
    ),
    pytest.param(
        w({"127.0.0.1:80": "1"}),
        'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:80"]',
        'expected a finite number > 0 and <= 1e+09, found the string "1"',
        id="w-str",
    ),
    pytest.param(
        w({"[::1]:80": -1}),
        'loadBalancingConfig[0].weighted_round_robin.weights["[::1]:80"]',
        "expected a finite number > 0 and <= 1e+09, found the number -1",
        id="w-ipv6",
    ),
    pytest.param(
        {"loadBalancingPolicy": 1},
        "loadBalancingPolicy",
        (
            "expected a policy name, one of pick_first, round_robin, "
            "weighted_round_robin, least_request, least_request_experimental, "
            "peak_ewma, random, found the number 1"
        ),
        id="lbp-int",
    ),
    pytest.param(
        {"loadBalancingPolicy": "round_robn"},
        "loadBalancingPolicy",
        (
            "expected one of pick_first, round_robin, weighted_round_robin, "
            "least_request, least_request_experimental, peak_ewma, random, "
            "found the string \"round_robn\". did you mean 'round_robin'?"
        ),
        id="lbp-unknown",
    ),
    pytest.param(
        {"loadBalancingPolicy": "RING_HASH"},
        "loadBalancingPolicy",
        (
            "expected one of pick_first, round_robin, weighted_round_robin, "
            "least_request, least_request_experimental, peak_ewma, random, "
            'found the string "RING_HASH"; ring_hash needs a config, so give it'
            ' in loadBalancingConfig: [{"ring_hash": {...}}]'
        ),
        id="lbp-ring",
    ),
    pytest.param(
        {"loadBalancingPolicy": "qqq"},
        "loadBalancingPolicy",
        (
            "expected one of pick_first, round_robin, weighted_round_robin, "
            "least_request, least_request_experimental, peak_ewma, random, "
            'found the string "qqq".'
        ),
        id="lbp-nohint",
    ),
]


@pytest.mark.parametrize(("source", "path", "message"), BAD_CONFIGS)
def test_bad_config_names_the_path_and_says_what_was_expected(
    source: Any, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_service_config(source)
    assert (info.value.path, info.value.message) == (path, message)
    assert str(info.value) == f"{path}: {message}"


# ------------------------------------------------------------ kinds built in the test

KINDS: dict[str, Callable[[], Kind]] = {
    "int2_5": lambda: _schema.integer_kind(minimum=2, clamp_above=5),
    "int2_10s": lambda: _schema.integer_kind(
        minimum=2, clamp_above=10, warn_clamp=True, allow_string=True
    ),
    "int1_1000": lambda: _schema.integer_kind(minimum=1, maximum=1000),
    "int0s": lambda: _schema.integer_kind(minimum=0, allow_string=True),
    "num": _schema.number_kind,
    "num_pos_max": lambda: _schema.number_kind(above=0, at_most=1e6),
    "num_ge0": lambda: _schema.number_kind(at_least=0.5),
    "dur": _schema.duration_kind,
    "dur_pos": lambda: _schema.duration_kind(positive=True),
    "dur_clamp": lambda: _schema.duration_kind(clamp_below=0.1),
    "bool": _schema.bool_kind,
    "str": _schema.string_kind,
    "codes": lambda: _schema.codes_kind(role="retryable"),
    "arr": lambda: _schema.array_kind("an array of strings", _schema.string_kind()),
    "arr_ne": lambda: _schema.array_kind(
        "a non-empty array of strings", _schema.string_kind(), non_empty=True
    ),
    "weights": balancing._weights_kind,
    "header": balancing._hash_header_kind,
    "oob": balancing._per_call_reports_only,
}

GOOD_VALUES = [
    ("int2_5", 2, 2),
    ("int2_5", 5, 5),
    ("int2_5", 6, 5),
    ("int2_5", 2.0, 2),
    ("int2_5", LongInteger(digits=500, negative=False), 5),
    ("int2_5", 1000000000000000000000000000000, 5),
    ("int2_10s", "2", 2),
    ("int2_10s", "11", 10),
    ("int2_10s", "0003", 3),
    ("int2_10s", "9" * 30, 10),
    ("int2_10s", 11, 10),
    ("int2_10s", LongInteger(digits=500, negative=False), 10),
    ("int2_10s", "9223372036854775808", 10),
    ("int2_10s", "9223372036854775807", 10),
    ("int1_1000", 1, 1),
    ("int1_1000", 1000, 1000),
    ("int1_1000", 9.0, 9),
    ("int0s", 0, 0),
    ("int0s", "0", 0),
    ("int0s", "9223372036854775807", 9223372036854775807),
    ("int0s", 9223372036854775807, 9223372036854775807),
    ("num", 1, 1.0),
    ("num", 0, 0.0),
    ("num", -1.5, -1.5),
    ("num", 10**308, 1e308),
    ("num_pos_max", 1e-300, 1e-300),
    ("num_pos_max", 1000000.0, 1000000.0),
    ("num_pos_max", 5, 5.0),
    ("num_ge0", 0.5, 0.5),
    ("num_ge0", 2, 2.0),
    ("dur", "0s", 0.0),
    ("dur", "1.5s", 1.5),
    ("dur", "-0s", 0.0),
    ("dur", "-0.000s", 0.0),
    ("dur", "315576000000s", 1000000000.0),
    ("dur", "0315576000000s", 1000000000.0),
    ("dur", "1000000001s", 1000000000.0),
    ("dur", "999999999s", 999999999.0),
    ("dur", "00001.50s", 1.5),
    ("dur_pos", "0.000000001s", 1e-09),
    ("dur_pos", "2s", 2.0),
    ("dur_clamp", "0s", 0.1),
    ("dur_clamp", "0.05s", 0.1),
    ("dur_clamp", "0.1s", 0.1),
    ("dur_clamp", "0.2s", 0.2),
    ("dur_clamp", "2000000000s", 1000000000.0),
    ("bool", True, True),
    ("bool", False, False),
    ("str", "", ""),
    ("str", "a", "a"),
    ("codes", [], frozenset()),
    ("codes", ["UNAVAILABLE", "unavailable", 14], frozenset({grpc.StatusCode.UNAVAILABLE})),
    (
        "codes",
        ["UNAVAILABLE", "ABORTED"],
        frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}),
    ),
    ("arr", [], ()),
    ("arr", ["a"], ("a",)),
    ("arr", (), ()),
    ("arr_ne", ["a"], ("a",)),
    ("weights", {"127.0.0.1:80": 1}, {"127.0.0.1:80": 1.0}),
    (
        "weights",
        {"localhost:80": 2.5, "[::1]:81": 1000000000.0},
        {"localhost:80": 2.5, "[::1]:81": 1000000000.0},
    ),
    ("header", "X-User", "x-user"),
    ("header", "x_id.v-2", "x_id.v-2"),
    ("oob", False, False),
]


@pytest.mark.parametrize(("kind", "value", "expected"), GOOD_VALUES)
def test_kind_converts_good_values_exactly(kind: str, value: object, expected: object) -> None:
    result = KINDS[kind]().convert(value, "p")
    assert result == expected
    assert type(result) is type(expected) or kind == "weights"


BAD_VALUES = [
    pytest.param(
        "int2_5",
        1,
        "p",
        "expected an integer >= 2, found the number 1",
    ),
    pytest.param(
        "int2_5",
        2.5,
        "p",
        "expected an integer >= 2, found the number 2.5",
    ),
    pytest.param(
        "int2_5",
        "3",
        "p",
        'expected an integer >= 2, found the string "3"',
    ),
    pytest.param(
        "int2_5",
        True,
        "p",
        "expected an integer >= 2, found true (a boolean)",
    ),
    pytest.param(
        "int2_5",
        None,
        "p",
        "expected an integer >= 2, found null",
    ),
    pytest.param(
        "int2_5",
        LongInteger(digits=500, negative=True),
        "p",
        "expected an integer >= 2, found an integer of 500 digits",
    ),
    pytest.param(
        "int2_10s",
        1,
        "p",
        ("expected an integer >= 2 (a JSON number or a decimal string), found the number 1"),
    ),
    pytest.param(
        "int2_10s",
        "-3",
        "p",
        ('expected an integer >= 2 (a JSON number or a decimal string), found the string "-3"'),
    ),
    pytest.param(
        "int2_10s",
        "-" + "9" * 30,
        "p",
        (
            "expected an integer >= 2 (a JSON number or a decimal string), "
            'found the string "-999999999999999999999999999999"'
        ),
    ),
    pytest.param(
        "int2_10s",
        "x",
        "p",
        ('expected an integer >= 2 (a JSON number or a decimal string), found the string "x"'),
    ),
    pytest.param(
        "int2_10s",
        "3.0",
        "p",
        ('expected an integer >= 2 (a JSON number or a decimal string), found the string "3.0"'),
    ),
    pytest.param(
        "int2_10s",
        3.5,
        "p",
        ("expected an integer >= 2 (a JSON number or a decimal string), found the number 3.5"),
    ),
    pytest.param(
        "int2_10s",
        LongInteger(digits=500, negative=True),
        "p",
        (
            "expected an integer >= 2 (a JSON number or a decimal string), "
            "found an integer of 500 digits"
        ),
    ),
    pytest.param(
        "int1_1000",
        0,
        "p",
        "expected an integer from 1 to 1000, found the number 0",
    ),
    pytest.param(
        "int1_1000",
        1001,
        "p",
        "expected an integer from 1 to 1000, found the number 1001",
    ),
    pytest.param(
        "int1_1000",
        "5",
        "p",
        'expected an integer from 1 to 1000, found the string "5"',
    ),
    pytest.param(
        "int0s",
        -1,
        "p",
        ("expected an integer >= 0 (a JSON number or a decimal string), found the number -1"),
    ),
    pytest.param(
        "int0s",
        "9223372036854775808",
        "p",
        (
            "expected an integer >= 0 (a JSON number or a decimal string), "
            'found the string "9223372036854775808"'
        ),
    ),
    pytest.param(
        "int0s",
        "-9223372036854775809",
        "p",
        (
            "expected an integer >= 0 (a JSON number or a decimal string), "
            'found the string "-9223372036854775809"'
        ),
    ),
    pytest.param(
        "int0s",
        9223372036854775808,
        "p",
        (
            "expected an integer >= 0 (a JSON number or a decimal string), "
            "found the number 9223372036854775808"
        ),
    ),
    pytest.param(
        "num",
        "1",
        "p",
        'expected a finite number, found the string "1"',
    ),
    pytest.param(
        "num",
        True,
        "p",
        "expected a finite number, found true (a boolean)",
    ),
    pytest.param(
        "num",
        False,
        "p",
        "expected a finite number, found false (a boolean)",
    ),
    pytest.param(
        "num",
        None,
        "p",
        "expected a finite number, found null",
    ),
    pytest.param(
        "num",
        math.nan,
        "p",
        "expected a finite number, found the number nan",
    ),
    pytest.param(
        "num",
        math.inf,
        "p",
        "expected a finite number, found the number inf",
    ),
    pytest.param(
        "num",
        -math.inf,
        "p",
        "expected a finite number, found the number -inf",
    ),
    pytest.param(
        "num",
        10**400,
        "p",
        "expected a finite number, found an integer of about 400 digits",
    ),
    pytest.param(
        "num_pos_max",
        0,
        "p",
        "expected a finite number > 0 and <= 1e+06, found the number 0",
    ),
    pytest.param(
        "num_pos_max",
        1000001.0,
        "p",
        "expected a finite number > 0 and <= 1e+06, found the number 1000001.0",
    ),
    pytest.param(
        "num_pos_max",
        -1,
        "p",
        "expected a finite number > 0 and <= 1e+06, found the number -1",
    ),
    pytest.param(
        "num_ge0",
        0.49,
        "p",
        "expected a finite number >= 0.5, found the number 0.49",
    ),
    pytest.param(
        "num_ge0",
        0,
        "p",
        "expected a finite number >= 0.5, found the number 0",
    ),
    pytest.param(
        "dur",
        "-0.1s",
        "p",
        'expected a duration >= 0s, found the string "-0.1s"',
    ),
    pytest.param(
        "dur",
        "1",
        "p",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1\""
        ),
    ),
    pytest.param(
        "dur",
        1,
        "p",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the number 1"
        ),
    ),
    pytest.param(
        "dur",
        "1.s",
        "p",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1.s\""
        ),
    ),
    pytest.param(
        "dur",
        ".5s",
        "p",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \".5s\""
        ),
    ),
    pytest.param(
        "dur",
        "1.1234567891s",
        "p",
        (
            "expected a duration string: seconds with up to 9 decimal places "
            "and an 's' suffix, like '1.5s', found the string \"1.1234567891s\""
        ),
    ),
    pytest.param(
        "dur",
        "315576000001s",
        "p",
        ('expected a duration of at most 315576000000s, found the string "315576000001s"'),
    ),
    pytest.param(
        "dur_pos",
        "0s",
        "p",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
    ),
    pytest.param(
        "dur_pos",
        "-0s",
        "p",
        "expected a duration > 0s, like '1.5s', found the string \"-0s\"",
    ),
    pytest.param(
        "bool",
        0,
        "p",
        "expected true or false, found the number 0",
    ),
    pytest.param(
        "bool",
        1,
        "p",
        "expected true or false, found the number 1",
    ),
    pytest.param(
        "bool",
        "true",
        "p",
        'expected true or false, found the string "true"',
    ),
    pytest.param(
        "bool",
        None,
        "p",
        "expected true or false, found null",
    ),
    pytest.param(
        "str",
        1,
        "p",
        "expected a string, found the number 1",
    ),
    pytest.param(
        "str",
        None,
        "p",
        "expected a string, found null",
    ),
    pytest.param(
        "str",
        [],
        "p",
        "expected a string, found an empty array",
    ),
    pytest.param(
        "str",
        {},
        "p",
        "expected a string, found an empty object",
    ),
    pytest.param(
        "codes",
        "x",
        "p",
        ('expected an array of retryable status codes, like ["UNAVAILABLE"], found the string "x"'),
    ),
    pytest.param(
        "codes",
        ["OK"],
        "p[0]",
        "OK is not a failure, so it cannot be retryable",
    ),
    pytest.param(
        "codes",
        [0],
        "p[0]",
        "OK is not a failure, so it cannot be retryable",
    ),
    pytest.param(
        "codes",
        [{}],
        "p[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found an empty object"
        ),
    ),
    pytest.param(
        "codes",
        [True],
        "p[0]",
        (
            "expected a status code name like 'UNAVAILABLE' or a number from 0 "
            "to 16, found true (a boolean)"
        ),
    ),
    pytest.param(
        "arr",
        "a",
        "p",
        'expected an array of strings, found the string "a"',
    ),
    pytest.param(
        "arr",
        ["a", 1],
        "p[1]",
        "expected a string, found the number 1",
    ),
    pytest.param(
        "arr",
        {},
        "p",
        "expected an array of strings, found an empty object",
    ),
    pytest.param(
        "arr_ne",
        [],
        "p",
        "expected a non-empty array of strings, found an empty array",
    ),
    pytest.param(
        "arr_ne",
        None,
        "p",
        "expected a non-empty array of strings, found null",
    ),
    pytest.param(
        "weights",
        {},
        "p",
        (
            'expected at least one address in an object of "host:port" to '
            'weight, like {"10.0.0.1:50051": 2}, found {}'
        ),
    ),
    pytest.param(
        "weights",
        [],
        "p",
        (
            'expected an object of "host:port" to weight, like '
            '{"10.0.0.1:50051": 2}, found an empty array'
        ),
    ),
    pytest.param(
        "weights",
        {"x": 1},
        'p["x"]',
        (
            "expected an address 'host:port' as the key, found \"x\" ('x' has no "
            "port; expected 'host:port')"
        ),
    ),
    pytest.param(
        "weights",
        {"a:80": 0},
        'p["a:80"]',
        "expected a finite number > 0 and <= 1e+09, found the number 0",
    ),
    pytest.param(
        "weights",
        {"a:80": 1, "a:0080": 2},
        'p["a:0080"]',
        "expected each address once, found 'a:80' again",
    ),
    pytest.param(
        "weights",
        {"a:80": "1"},
        'p["a:80"]',
        'expected a finite number > 0 and <= 1e+09, found the string "1"',
    ),
    pytest.param(
        "weights",
        {1: 1},
        "p",
        "expected string field names, found 1",
    ),
    pytest.param(
        "weights",
        {"a:80": 1000000001.0},
        'p["a:80"]',
        ("expected a finite number > 0 and <= 1e+09, found the number 1000000001.0"),
    ),
    pytest.param(
        "header",
        "x-bin",
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"x-bin\""
        ),
    ),
    pytest.param(
        "header",
        "X-ID-BIN",
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"X-ID-BIN\""
        ),
    ),
    pytest.param(
        "header",
        "",
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"\""
        ),
    ),
    pytest.param(
        "header",
        "x id",
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"x id\""
        ),
    ),
    pytest.param(
        "header",
        1,
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the number 1"
        ),
    ),
    pytest.param(
        "header",
        "é",
        "p",
        (
            "expected a metadata key such as 'x-user-id' (letters, digits, '-',"
            " '_', '.'; not -bin), found the string \"\\u00e9\""
        ),
    ),
    pytest.param(
        "oob",
        True,
        "p",
        (
            "expected false (out-of-band load reports are not supported; "
            "per-call reports are used), found true (a boolean)"
        ),
    ),
    pytest.param(
        "oob",
        0,
        "p",
        (
            "expected false (out-of-band load reports are not supported; "
            "per-call reports are used), found the number 0"
        ),
    ),
    pytest.param(
        "oob",
        None,
        "p",
        (
            "expected false (out-of-band load reports are not supported; "
            "per-call reports are used), found null"
        ),
    ),
    pytest.param(
        "oob",
        "false",
        "p",
        (
            "expected false (out-of-band load reports are not supported; "
            'per-call reports are used), found the string "false"'
        ),
    ),
]


@pytest.mark.parametrize(("kind", "value", "path", "message"), BAD_VALUES)
def test_kind_refuses_bad_values_exactly(kind: str, value: object, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        KINDS[kind]().convert(value, "p")
    assert (info.value.path, info.value.message) == (path, message)


def test_a_clamped_value_is_reported_with_its_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="resilientrpc.config"):
        assert KINDS["int2_10s"]().convert("11", "a.b") == 10
        assert KINDS["int2_5"]().convert(6, "a.c") == 5
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("resilientrpc.config", "WARNING", 'a.b: the string "11" is above the limit; 10 is used')
    ]


def test_the_long_integer_hook_keeps_short_digit_strings() -> None:
    assert LongInteger.read("-" + "0" * 500 + "7") == -7
    assert LongInteger.read("9" * 400) == int("9" * 400)
    assert LongInteger.read("9" * 401) == LongInteger(401)
    assert LongInteger.read("-" + "9" * 401) == LongInteger(401, negative=True)
