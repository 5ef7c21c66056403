"""Parsing of the fault-detection config: ``healthCheckConfig``'s heartbeat, the
``outlier_detection`` policy (gRFC A50 and this library's extensions) and
``commonLbConfig``.

Good input parses to exact values, defaults included; every bad value raises one
ConfigError naming its JSON path, word for word; and what is parsed reaches the engine
(the balancer's panic threshold and slow start, the child policy as the strategy).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import StatusCode

from resilientrpc import ConfigError
from resilientrpc._core import ChannelCore
from resilientrpc.config import (
    PEAK_EWMA_OUTLIERS,
    CommonLbConfig,
    ConsecutiveFailures,
    FailurePercentageEjection,
    HealthCheckConfig,
    LatencyEjection,
    LeastRequest,
    OutlierDetection,
    PeakEwma,
    RoundRobin,
    ServiceConfig,
    SuccessRateEjection,
    WeightedRoundRobin,
    _schema,
    outlier,
    parse_service_config,
)
from resilientrpc.config._schema import Field, Kind
from tests.fakes import Clock
from tests.test_config_errors import (
    test_bad_config_names_the_path_and_says_what_was_expected as check_bad_config,
)
from tests.twins import Twin

C = grpc.ChannelConnectivity
OD = "loadBalancingConfig[0].outlier_detection"
ROUND_ROBIN: list[dict[str, Any]] = [{"round_robin": {}}]
ALGORITHMS = "successRateEjection, failurePercentageEjection, consecutiveFailures, latencyEjection"


def od(child: Any = None, **fields: Any) -> dict[str, Any]:
    """A config of one outlier_detection entry with ``fields``; round_robin child."""
    config = {**fields, "childPolicy": ROUND_ROBIN if child is None else child}
    return {"loadBalancingConfig": [{"outlier_detection": config}]}


def odc(**fields: Any) -> dict[str, Any]:
    """An outlier_detection config with consecutive failures on, plus ``fields``."""
    return od(consecutiveFailures={}, **fields)


def hc(**fields: Any) -> dict[str, Any]:
    return {"healthCheckConfig": fields}


# ----------------------------------------------------------------------- good input

GOOD = [
    pytest.param(
        hc(serviceName=""),
        "health_check",
        HealthCheckConfig(service_name="", interval=1.0, timeout=0.5),
        id="hc-defaults",
    ),
    pytest.param(
        hc(serviceName="echo.Echo", interval="0.2s", timeout="0.1s"),
        "health_check",
        HealthCheckConfig(service_name="echo.Echo", interval=0.2, timeout=0.1),
        id="hc-set",
    ),
    pytest.param(
        hc(serviceName="", interval="0.01s", timeout="0.000000001s"),
        "health_check",
        HealthCheckConfig(service_name="", interval=0.01, timeout=1e-9),
        id="hc-smallest",
    ),
    pytest.param(hc(), "health_check", None, id="hc-empty-is-off"),
    pytest.param(
        hc(serviceName=None, interval=None), "health_check", None, id="hc-nulls-are-absent"
    ),
    pytest.param(od(), "outlier_detection", OutlierDetection(), id="od-bare"),
    pytest.param(
        odc(),
        "outlier_detection",
        OutlierDetection(consecutive_failures=ConsecutiveFailures()),
        id="od-consecutive-defaults",
    ),
    pytest.param(
        od(successRateEjection={}, failurePercentageEjection={}, latencyEjection={}),
        "outlier_detection",
        OutlierDetection(
            success_rate_ejection=SuccessRateEjection(),
            failure_percentage_ejection=FailurePercentageEjection(),
            latency_ejection=LatencyEjection(),
        ),
        id="od-algorithm-defaults",
    ),
    pytest.param(
        od(
            interval="0.5s",
            baseEjectionTime="2s",
            maxEjectionTime="20s",
            maxEjectionPercent=100,
            halfOpenTrials=1,
            failureStatusCodes=["unavailable", 13, "UNAVAILABLE"],
            successRateEjection={
                "stdevFactor": 0,
                "enforcementPercentage": 0,
                "minimumHosts": 0,
                "requestVolume": 1,
            },
            failurePercentageEjection={
                "threshold": 0,
                "enforcementPercentage": 100,
                "minimumHosts": 4294967295,
                "requestVolume": 4294967295,
            },
            consecutiveFailures={"count": 1, "enforcementPercentage": 50},
            latencyEjection={
                "factor": 1.5,
                "minimumDifference": "0s",
                "minimumHosts": 2,
                "requestVolume": 1,
                "enforcementPercentage": 100,
            },
        ),
        "outlier_detection",
        OutlierDetection(
            interval=0.5,
            base_ejection_time=2.0,
            max_ejection_time=20.0,
            max_ejection_percent=100,
            half_open_trials=1,
            failure_status_codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}),
            success_rate_ejection=SuccessRateEjection(
                stdev_factor=0, enforcement_percentage=0, minimum_hosts=0, request_volume=1
            ),
            failure_percentage_ejection=FailurePercentageEjection(
                threshold=0,
                enforcement_percentage=100,
                minimum_hosts=4294967295,
                request_volume=4294967295,
            ),
            consecutive_failures=ConsecutiveFailures(count=1, enforcement_percentage=50),
            latency_ejection=LatencyEjection(
                factor=1.5, minimum_difference=0.0, minimum_hosts=2, request_volume=1
            ),
        ),
        id="od-every-field-at-its-limit",
    ),
    pytest.param(
        odc(baseEjectionTime="600s"),
        "outlier_detection",
        OutlierDetection(
            base_ejection_time=600.0,
            max_ejection_time=600.0,
            consecutive_failures=ConsecutiveFailures(),
        ),
        id="od-max-ejection-follows-a-longer-base",
    ),
    pytest.param(
        odc(baseEjectionTime="299s"),
        "outlier_detection",
        OutlierDetection(
            base_ejection_time=299.0,
            max_ejection_time=300.0,
            consecutive_failures=ConsecutiveFailures(),
        ),
        id="od-max-ejection-300s-over-a-shorter-base",
    ),
    pytest.param(
        odc(baseEjectionTime="0s", maxEjectionTime="0s"),
        "outlier_detection",
        OutlierDetection(
            base_ejection_time=0.0,
            max_ejection_time=0.0,
            consecutive_failures=ConsecutiveFailures(),
        ),
        id="od-zero-ejection-times",
    ),
    pytest.param(
        odc(baseEjectionTime="5s", maxEjectionTime="5s"),
        "outlier_detection",
        OutlierDetection(
            base_ejection_time=5.0,
            max_ejection_time=5.0,
            consecutive_failures=ConsecutiveFailures(),
        ),
        id="od-max-equal-to-base",
    ),
    pytest.param(
        odc(),
        "load_balancing",
        RoundRobin(),
        id="od-child-is-the-policy",
    ),
    pytest.param(
        od([{"xds_wrr": {}}, {"least_request": {"choiceCount": 3}}, {"bogus": 1}]),
        "load_balancing",
        LeastRequest(choice_count=3),
        id="od-child-first-supported",
    ),
    pytest.param(
        {
            "loadBalancingConfig": [
                {"outlier_detection_experimental": {"childPolicy": [{"peak_ewma": {}}]}}
            ]
        },
        "load_balancing",
        PeakEwma(),
        id="od-experimental-spelling",
    ),
    pytest.param(
        {"loadBalancingConfig": [{"peak_ewma": {}}]},
        "outlier_detection",
        None,
        id="no-wrapper-no-outlier-detection",
    ),
    pytest.param({}, "common_lb", CommonLbConfig(), id="common-absent"),
    pytest.param(
        {"commonLbConfig": {}},
        "common_lb",
        CommonLbConfig(healthy_panic_threshold=50.0, slow_start_window=0.0),
        id="common-defaults",
    ),
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": 0, "slowStartWindow": "30s"}},
        "common_lb",
        CommonLbConfig(healthy_panic_threshold=0.0, slow_start_window=30.0),
        id="common-zero-panic-and-a-window",
    ),
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": 100, "slowStartWindow": "0s"}},
        "common_lb",
        CommonLbConfig(healthy_panic_threshold=100.0),
        id="common-panic-100",
    ),
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": 12.5}},
        "common_lb",
        CommonLbConfig(healthy_panic_threshold=12.5),
        id="common-fractional-panic",
    ),
]


@pytest.mark.parametrize(("source", "attribute", "expected"), GOOD)
def test_good_config_parses_to_exact_values(source: Any, attribute: str, expected: Any) -> None:
    parsed = getattr(parse_service_config(source), attribute)
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_the_default_max_ejection_time_is_300s_whatever_the_base() -> None:
    parsed = parse_service_config(odc()).outlier_detection
    assert parsed is not None
    assert (parsed.base_ejection_time, parsed.max_ejection_time) == (30.0, 300.0)


def test_the_outlier_settings_sit_next_to_the_child_policy() -> None:
    config = parse_service_config(
        {
            **od([{"least_request": {}}], latencyEjection={"factor": 2}),
            "commonLbConfig": {"healthyPanicThreshold": 30},
            "healthCheckConfig": {"serviceName": ""},
        }
    )
    assert config == ServiceConfig(
        load_balancing=LeastRequest(),
        outlier_detection=OutlierDetection(latency_ejection=LatencyEjection(factor=2.0)),
        common_lb=CommonLbConfig(healthy_panic_threshold=30.0),
        health_check=HealthCheckConfig(service_name=""),
    )
    assert config.effective_outlier_detection == config.outlier_detection


def test_a_bare_outlier_detection_turns_peak_ewmas_default_ejection_off() -> None:
    bare = parse_service_config(od([{"peak_ewma": {}}]))
    assert bare.outlier_detection == OutlierDetection()
    assert bare.effective_outlier_detection is None
    alone = parse_service_config({"loadBalancingConfig": [{"peak_ewma": {}}]})
    assert alone.effective_outlier_detection is PEAK_EWMA_OUTLIERS


def test_load_balancing_config_still_wins_over_the_deprecated_field() -> None:
    config = parse_service_config({**odc(), "loadBalancingPolicy": "pick_first"})
    assert config.load_balancing == RoundRobin()
    assert config.outlier_detection == OutlierDetection(consecutive_failures=ConsecutiveFailures())


def test_a_weighted_child_keeps_its_weights_and_their_path() -> None:
    config = parse_service_config(
        od([{"weighted_round_robin": {"weights": {"127.0.0.1:1": 2}}}], consecutiveFailures={})
    )
    policy = config.load_balancing
    assert isinstance(policy, WeightedRoundRobin)
    assert policy.weights == {"127.0.0.1:1": 2.0}
    assert policy.weights_path == f"{OD}.childPolicy[0].weighted_round_robin.weights"


# ------------------------------------------------------------------------ bad input

BAD = [
    # healthCheckConfig
    pytest.param(
        hc(interval="1s"),
        "healthCheckConfig.interval",
        'set serviceName ("" for the whole server) to turn health checking on; '
        "without it health checking is off and this has no effect",
        id="hc-interval-without-name",
    ),
    pytest.param(
        hc(timeout="1s"),
        "healthCheckConfig.timeout",
        'set serviceName ("" for the whole server) to turn health checking on; '
        "without it health checking is off and this has no effect",
        id="hc-timeout-without-name",
    ),
    pytest.param(
        hc(serviceName="", interval="0.009s"),
        "healthCheckConfig.interval",
        "expected a duration >= 0.01s, like '1.5s', found the string \"0.009s\"",
        id="hc-interval-too-short",
    ),
    pytest.param(
        hc(serviceName="", interval="0s"),
        "healthCheckConfig.interval",
        "expected a duration >= 0.01s, like '1.5s', found the string \"0s\"",
        id="hc-interval-zero",
    ),
    pytest.param(
        hc(serviceName="", interval=1),
        "healthCheckConfig.interval",
        "expected a duration string: seconds with up to 9 decimal places and an 's' "
        "suffix, like '1.5s', found the number 1",
        id="hc-interval-number",
    ),
    pytest.param(
        hc(serviceName="", timeout="0s"),
        "healthCheckConfig.timeout",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
        id="hc-timeout-zero",
    ),
    pytest.param(
        hc(serviceName="", timeout="-1s"),
        "healthCheckConfig.timeout",
        'expected a duration >= 0s, found the string "-1s"',
        id="hc-timeout-negative",
    ),
    pytest.param(
        hc(serviceName="", intervall="1s"),
        "healthCheckConfig.intervall",
        "unknown field 'intervall' in a health check config; allowed fields: "
        "'serviceName', 'interval', 'timeout'. did you mean 'interval'?",
        id="hc-typo",
    ),
    # outlier_detection: the wrapper and its child
    pytest.param(
        {"loadBalancingConfig": [{"outlier_detection": {"consecutiveFailures": {}}}]},
        f"{OD}.childPolicy",
        'is required: expected an array of child policies, like [{"round_robin": {}}], '
        "found nothing",
        id="od-no-child",
    ),
    pytest.param(
        od([]),
        f"{OD}.childPolicy",
        "expected at least one supported policy (pick_first, round_robin, "
        "weighted_round_robin, least_request, least_request_experimental, peak_ewma, "
        "random, ring_hash, ring_hash_experimental), found an empty array.",
        id="od-child-empty",
    ),
    pytest.param(
        od([{"round_robbin": {}}]),
        f"{OD}.childPolicy",
        "expected at least one supported policy (pick_first, round_robin, "
        "weighted_round_robin, least_request, least_request_experimental, peak_ewma, "
        "random, ring_hash, ring_hash_experimental), found 'round_robbin'. "
        "did you mean 'round_robin'?",
        id="od-child-unknown",
    ),
    pytest.param(
        od({"round_robin": {}}),
        f"{OD}.childPolicy",
        'expected an array of {"policy_name": {config}} objects, found an object',
        id="od-child-not-array",
    ),
    pytest.param(
        od([{"outlier_detection": {"childPolicy": ROUND_ROBIN}}]),
        f"{OD}.childPolicy[0].outlier_detection",
        "expected a child policy for outlier_detection, found outlier_detection: one "
        "outlier_detection cannot wrap another; give all its settings in one",
        id="od-nested",
    ),
    pytest.param(
        od([{"unknown": {}}, {"outlier_detection_experimental": {}}]),
        f"{OD}.childPolicy[1].outlier_detection_experimental",
        "expected a child policy for outlier_detection, found "
        "outlier_detection_experimental: one outlier_detection cannot wrap another; "
        "give all its settings in one",
        id="od-nested-experimental",
    ),
    pytest.param(
        od([{"least_request": {"choiceCount": 1}}]),
        f"{OD}.childPolicy[0].least_request.choiceCount",
        "expected an integer >= 2 (a JSON number or a decimal string), found the number 1",
        id="od-child-invalid",
    ),
    pytest.param(
        {"loadBalancingPolicy": "outlier_detection"},
        "loadBalancingPolicy",
        "expected one of pick_first, round_robin, weighted_round_robin, least_request, "
        "least_request_experimental, peak_ewma, random, found the string "
        '"outlier_detection"; outlier_detection needs a config, so give it in '
        'loadBalancingConfig: [{"outlier_detection": {...}}]',
        id="od-deprecated-form",
    ),
    pytest.param(
        {"loadBalancingPolicy": "OUTLIER_DETECTION_EXPERIMENTAL"},
        "loadBalancingPolicy",
        "expected one of pick_first, round_robin, weighted_round_robin, least_request, "
        "least_request_experimental, peak_ewma, random, found the string "
        '"OUTLIER_DETECTION_EXPERIMENTAL"; outlier_detection_experimental needs a config, '
        'so give it in loadBalancingConfig: [{"outlier_detection_experimental": {...}}]',
        id="od-deprecated-form-experimental",
    ),
    pytest.param(
        od(intervalSeconds=1),
        f"{OD}.intervalSeconds",
        "unknown field 'intervalSeconds' in the outlier_detection config; allowed fields: "
        "'interval', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent', "
        "'halfOpenTrials', 'failureStatusCodes', 'successRateEjection', "
        "'failurePercentageEjection', 'consecutiveFailures', 'latencyEjection', "
        "'childPolicy'. did you mean 'interval'?",
        id="od-unknown-field",
    ),
    # outlier_detection: A50's validation
    pytest.param(
        odc(interval="-1s"),
        f"{OD}.interval",
        'expected a duration >= 0s, found the string "-1s"',
        id="od-interval-negative",
    ),
    pytest.param(
        odc(interval="0s"),
        f"{OD}.interval",
        "expected a duration > 0s, like '1.5s', found the string \"0s\"",
        id="od-interval-zero",
    ),
    pytest.param(
        odc(interval=10),
        f"{OD}.interval",
        "expected a duration string: seconds with up to 9 decimal places and an 's' "
        "suffix, like '1.5s', found the number 10",
        id="od-interval-number",
    ),
    pytest.param(
        odc(baseEjectionTime="-0.5s"),
        f"{OD}.baseEjectionTime",
        'expected a duration >= 0s, found the string "-0.5s"',
        id="od-base-negative",
    ),
    pytest.param(
        odc(maxEjectionTime="-3s"),
        f"{OD}.maxEjectionTime",
        'expected a duration >= 0s, found the string "-3s"',
        id="od-max-negative",
    ),
    pytest.param(
        odc(maxEjectionTime="10s"),
        f"{OD}.maxEjectionTime",
        "expected a duration >= baseEjectionTime (30s, the default), found 10s",
        id="od-max-below-default-base",
    ),
    pytest.param(
        odc(baseEjectionTime="5s", maxEjectionTime="4.5s"),
        f"{OD}.maxEjectionTime",
        "expected a duration >= baseEjectionTime (5s, as set), found 4.5s",
        id="od-max-below-base",
    ),
    pytest.param(
        odc(maxEjectionPercent=101),
        f"{OD}.maxEjectionPercent",
        "expected an integer from 0 to 100, found the number 101",
        id="od-max-percent-above-100",
    ),
    pytest.param(
        odc(maxEjectionPercent=-1),
        f"{OD}.maxEjectionPercent",
        "expected an integer from 0 to 100, found the number -1",
        id="od-max-percent-negative",
    ),
    pytest.param(
        odc(maxEjectionPercent=10.5),
        f"{OD}.maxEjectionPercent",
        "expected an integer from 0 to 100, found the number 10.5",
        id="od-max-percent-fraction",
    ),
    pytest.param(
        od(successRateEjection={"enforcementPercentage": 101}),
        f"{OD}.successRateEjection.enforcementPercentage",
        "expected an integer from 0 to 100, found the number 101",
        id="sr-enforcement",
    ),
    pytest.param(
        od(successRateEjection={"stdevFactor": -1}),
        f"{OD}.successRateEjection.stdevFactor",
        "expected an integer from 0 to 4294967295, found the number -1",
        id="sr-stdev-negative",
    ),
    pytest.param(
        od(successRateEjection={"stdevFactor": 4294967296}),
        f"{OD}.successRateEjection.stdevFactor",
        "expected an integer from 0 to 4294967295, found the number 4294967296",
        id="sr-stdev-past-uint32",
    ),
    pytest.param(
        od(successRateEjection={"stdevFactor": 1.9}),
        f"{OD}.successRateEjection.stdevFactor",
        "expected an integer from 0 to 4294967295, found the number 1.9",
        id="sr-stdev-fraction",
    ),
    pytest.param(
        od(successRateEjection={"minimumHosts": -1}),
        f"{OD}.successRateEjection.minimumHosts",
        "expected an integer from 0 to 4294967295, found the number -1",
        id="sr-hosts-negative",
    ),
    pytest.param(
        od(successRateEjection={"requestVolume": 0}),
        f"{OD}.successRateEjection.requestVolume",
        "expected an integer from 1 to 4294967295, found the number 0",
        id="sr-volume-zero",
    ),
    pytest.param(
        od(successRateEjection={"requestVolume": "100"}),
        f"{OD}.successRateEjection.requestVolume",
        'expected an integer from 1 to 4294967295, found the string "100"',
        id="sr-volume-string",
    ),
    pytest.param(
        od(successRateEjection=[]),
        f"{OD}.successRateEjection",
        "expected a success rate ejection config (a JSON object), found an empty array",
        id="sr-not-object",
    ),
    pytest.param(
        od(successRateEjection={"stdev_factor": 1}),
        f"{OD}.successRateEjection.stdev_factor",
        "unknown field 'stdev_factor' in a success rate ejection config; allowed fields: "
        "'stdevFactor', 'enforcementPercentage', 'minimumHosts', 'requestVolume'. "
        "did you mean 'stdevFactor'?",
        id="sr-snake-case",
    ),
    pytest.param(
        od(failurePercentageEjection={"threshold": 101}),
        f"{OD}.failurePercentageEjection.threshold",
        "expected an integer from 0 to 100, found the number 101",
        id="fp-threshold",
    ),
    pytest.param(
        od(failurePercentageEjection={"enforcementPercentage": 101}),
        f"{OD}.failurePercentageEjection.enforcementPercentage",
        "expected an integer from 0 to 100, found the number 101",
        id="fp-enforcement",
    ),
    pytest.param(
        od(failurePercentageEjection={"minimumHosts": 4294967296}),
        f"{OD}.failurePercentageEjection.minimumHosts",
        "expected an integer from 0 to 4294967295, found the number 4294967296",
        id="fp-hosts",
    ),
    pytest.param(
        od(failurePercentageEjection={"requestVolume": 0}),
        f"{OD}.failurePercentageEjection.requestVolume",
        "expected an integer from 1 to 4294967295, found the number 0",
        id="fp-volume",
    ),
    # outlier_detection: extensions
    pytest.param(
        od(consecutiveFailures={"count": 0}),
        f"{OD}.consecutiveFailures.count",
        "expected an integer from 1 to 4294967295, found the number 0",
        id="cf-count-zero",
    ),
    pytest.param(
        od(consecutiveFailures={"enforcementPercentage": 101}),
        f"{OD}.consecutiveFailures.enforcementPercentage",
        "expected an integer from 0 to 100, found the number 101",
        id="cf-enforcement",
    ),
    pytest.param(
        od(consecutiveFailures=5),
        f"{OD}.consecutiveFailures",
        "expected a consecutive failures config (a JSON object), found the number 5",
        id="cf-not-object",
    ),
    pytest.param(
        od(latencyEjection={"factor": 1}),
        f"{OD}.latencyEjection.factor",
        "expected a finite number > 1, found the number 1",
        id="le-factor-one",
    ),
    pytest.param(
        od(latencyEjection={"factor": "3"}),
        f"{OD}.latencyEjection.factor",
        'expected a finite number > 1, found the string "3"',
        id="le-factor-string",
    ),
    pytest.param(
        od(latencyEjection={"minimumDifference": "-0.005s"}),
        f"{OD}.latencyEjection.minimumDifference",
        'expected a duration >= 0s, found the string "-0.005s"',
        id="le-difference-negative",
    ),
    pytest.param(
        od(latencyEjection={"minimumDifference": 0.005}),
        f"{OD}.latencyEjection.minimumDifference",
        "expected a duration string: seconds with up to 9 decimal places and an 's' "
        "suffix, like '1.5s', found the number 0.005",
        id="le-difference-number",
    ),
    pytest.param(
        od(latencyEjection={"minimumHosts": 1}),
        f"{OD}.latencyEjection.minimumHosts",
        "expected an integer from 2 to 4294967295, found the number 1",
        id="le-hosts-one",
    ),
    pytest.param(
        od(latencyEjection={"requestVolume": 0}),
        f"{OD}.latencyEjection.requestVolume",
        "expected an integer from 1 to 4294967295, found the number 0",
        id="le-volume",
    ),
    pytest.param(
        od(latencyEjection={"enforcementPercentage": 101}),
        f"{OD}.latencyEjection.enforcementPercentage",
        "expected an integer from 0 to 100, found the number 101",
        id="le-enforcement",
    ),
    pytest.param(
        odc(halfOpenTrials=0),
        f"{OD}.halfOpenTrials",
        "expected an integer from 1 to 4294967295, found the number 0",
        id="half-open-zero",
    ),
    pytest.param(
        odc(failureStatusCodes=[]),
        f"{OD}.failureStatusCodes",
        'expected a non-empty array of failure status codes, like ["UNAVAILABLE"], '
        "found an empty array",
        id="codes-empty",
    ),
    pytest.param(
        odc(failureStatusCodes="UNAVAILABLE"),
        f"{OD}.failureStatusCodes",
        'expected a non-empty array of failure status codes, like ["UNAVAILABLE"], '
        'found the string "UNAVAILABLE"',
        id="codes-not-array",
    ),
    pytest.param(
        odc(failureStatusCodes=["UNAVAILABLE", "OK"]),
        f"{OD}.failureStatusCodes[1]",
        "OK is not a failure",
        id="codes-ok",
    ),
    pytest.param(
        odc(failureStatusCodes=[0]),
        f"{OD}.failureStatusCodes[0]",
        "OK is not a failure",
        id="codes-ok-number",
    ),
    pytest.param(
        odc(failureStatusCodes=[17]),
        f"{OD}.failureStatusCodes[0]",
        "expected a status code name like 'UNAVAILABLE' or a number from 0 to 16, "
        "found the number 17",
        id="codes-unknown-number",
    ),
    pytest.param(
        odc(failureStatusCodes=["UNAVAILIBLE"]),
        f"{OD}.failureStatusCodes[0]",
        "expected a status code name like 'UNAVAILABLE' or a number from 0 to 16, "
        "found the string \"UNAVAILIBLE\"; did you mean 'UNAVAILABLE'?",
        id="codes-typo",
    ),
    # settings that would not take effect
    *(
        pytest.param(
            od(**{name: value}),
            f"{OD}.{name}",
            f"takes effect only with an ejection algorithm: set one of {ALGORITHMS} "
            "(without one, outlier detection is off)",
            id=f"no-algorithm-{name}",
        )
        for name, value in (
            ("interval", "1s"),
            ("baseEjectionTime", "1s"),
            ("maxEjectionTime", "400s"),
            ("maxEjectionPercent", 50),
            ("halfOpenTrials", 2),
            ("failureStatusCodes", ["INTERNAL"]),
        )
    ),
    # commonLbConfig
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": 100.5}},
        "commonLbConfig.healthyPanicThreshold",
        "expected a finite number >= 0 and <= 100, found the number 100.5",
        id="common-panic-above-100",
    ),
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": -1}},
        "commonLbConfig.healthyPanicThreshold",
        "expected a finite number >= 0 and <= 100, found the number -1",
        id="common-panic-negative",
    ),
    pytest.param(
        {"commonLbConfig": {"healthyPanicThreshold": "50"}},
        "commonLbConfig.healthyPanicThreshold",
        'expected a finite number >= 0 and <= 100, found the string "50"',
        id="common-panic-string",
    ),
    pytest.param(
        {"commonLbConfig": {"slowStartWindow": "-1s"}},
        "commonLbConfig.slowStartWindow",
        'expected a duration >= 0s, found the string "-1s"',
        id="common-window-negative",
    ),
    pytest.param(
        {"commonLbConfig": {"slowStartWindow": 30}},
        "commonLbConfig.slowStartWindow",
        "expected a duration string: seconds with up to 9 decimal places and an 's' "
        "suffix, like '1.5s', found the number 30",
        id="common-window-number",
    ),
    pytest.param(
        {"commonLbConfig": {"panicThreshold": 10}},
        "commonLbConfig.panicThreshold",
        "unknown field 'panicThreshold' in a common load-balancing config; allowed "
        "fields: 'healthyPanicThreshold', 'slowStartWindow'. did you mean "
        "'healthyPanicThreshold'?",
        id="common-unknown",
    ),
    pytest.param(
        {"commonLbConfig": []},
        "commonLbConfig",
        "expected a common load-balancing config (a JSON object), found an empty array",
        id="common-not-object",
    ),
]


@pytest.mark.parametrize(("source", "path", "message"), BAD)
def test_bad_config_names_the_path_and_says_what_was_expected(
    source: Any, path: str, message: str
) -> None:
    check_bad_config(source, path, message)


@pytest.mark.parametrize(
    ("source", "path"),
    [
        (
            od([{"outlier_detection": {"childPolicy": ROUND_ROBIN}}]),
            f"{OD}.childPolicy[0].outlier_detection",
        ),
        (
            od(successRateEjection={"enforcementPercentage": 101}),
            f"{OD}.successRateEjection.enforcementPercentage",
        ),
        (
            {"commonLbConfig": {"healthyPanicThreshold": 101}},
            "commonLbConfig.healthyPanicThreshold",
        ),
        (hc(interval="1s"), "healthCheckConfig.interval"),
    ],
)
def test_both_twins_refuse_bad_values_before_anything_starts(
    twin: Twin, source: dict[str, Any], path: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(ConfigError) as info:
        twin.open(["127.0.0.1:1", "127.0.0.1:2"], config=source)
    assert threading.active_count() == threads
    assert info.value.path == path


def test_weights_of_a_wrapped_child_are_checked_against_the_targets(twin: Twin) -> None:
    config = od([{"weighted_round_robin": {"weights": {"127.0.0.1:9": 2}}}], consecutiveFailures={})
    with pytest.raises(ConfigError) as info:
        twin.open(["127.0.0.1:1"], config=config)
    assert info.value.path == f'{OD}.childPolicy[0].weighted_round_robin.weights["127.0.0.1:9"]'


# ------------------------------------------------------------ what is parsed is used

ADDRESSES = ["127.0.0.1:10000", "127.0.0.1:10001", "127.0.0.1:10002", "127.0.0.1:10003"]


def core_of(config: dict[str, Any], clock: Clock | None = None) -> ChannelCore:
    return ChannelCore.build(
        ADDRESSES, config=config, credentials=None, options=None, clock=clock or Clock()
    )


def picked(core: ChannelCore, count: int) -> dict[str, int]:
    tally: dict[str, int] = {}
    for _ in range(count):
        pick = core.balancer.picker.pick()
        assert pick is not None
        tally[pick.endpoint.address] = tally.get(pick.endpoint.address, 0) + 1
    return tally


@pytest.mark.parametrize(
    ("common", "spread"),
    [
        ({}, 4),  # default 50 %: 1 of 4 available is below it, so calls go to all four
        ({"healthyPanicThreshold": 50}, 4),
        ({"healthyPanicThreshold": 25}, 1),  # 25 % available is not below 25 %
        ({"healthyPanicThreshold": 0}, 1),  # panic off
    ],
)
def test_the_panic_threshold_reaches_the_balancer(common: dict[str, Any], spread: int) -> None:
    core = core_of({"commonLbConfig": common})
    balancer = core.balancer
    balancer.set_addresses(ADDRESSES)
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, C.READY)
    for endpoint in balancer.endpoints[1:]:
        assert balancer.eject(endpoint, "test")
    assert len(picked(core, 40)) == spread
    assert balancer.panic is (spread == 4)


@pytest.mark.parametrize(("window", "newcomer_share"), [("0s", 0.25), ("10s", 0.03)])
def test_the_slow_start_window_reaches_the_balancer(window: str, newcomer_share: float) -> None:
    clock = Clock()
    core = core_of({"commonLbConfig": {"slowStartWindow": window}}, clock)
    balancer = core.balancer
    balancer._rng = random.Random(7)  # the ramp's draws, seeded
    balancer.set_addresses(ADDRESSES)
    for endpoint in balancer.endpoints[:3]:
        balancer.set_state(endpoint, C.READY)
    clock.now += 100.0
    balancer.set_state(balancer.endpoints[3], C.READY)
    share = picked(core, 4000).get(ADDRESSES[3], 0) / 4000
    assert share == pytest.approx(newcomer_share, abs=0.02)


@pytest.mark.parametrize(
    ("child", "strategy"),
    [
        ([{"least_request": {}}], "least_request"),
        ([{"peak_ewma": {}}], "peak_ewma"),
        ([{"nope": {}}, {"pick_first": {}}], "pick_first"),
    ],
)
def test_the_child_policy_is_the_strategy_and_the_settings_run(
    child: list[dict[str, Any]], strategy: str
) -> None:
    core = core_of(od(child, consecutiveFailures={"count": 2}, failureStatusCodes=["NOT_FOUND"]))
    assert core.balancer.strategy.name == strategy
    assert core.config.effective_outlier_detection == OutlierDetection(
        consecutive_failures=ConsecutiveFailures(count=2),
        failure_status_codes=frozenset({grpc.StatusCode.NOT_FOUND}),
    )
    core.balancer.set_addresses(ADDRESSES[:1])
    assert core.balancer.endpoints[0].failure_codes == frozenset({grpc.StatusCode.NOT_FOUND})


# ------------------------------------------------------------ kinds built in the test
# (mutation testing swaps a function only when it is called; the field tables above
# are built at import, so the new kind options are also checked on kinds built here)

KINDS: dict[str, Callable[[], Kind]] = {
    "dur": _schema.duration_kind,
    "dur_min": lambda: _schema.duration_kind(at_least=0.01),
    "dur_min_pos": lambda: _schema.duration_kind(positive=True, at_least=0.5),
    "dur_pos": lambda: _schema.duration_kind(positive=True),
    "codes_ne": lambda: _schema.codes_kind(role="failure", non_empty=True),
    "codes": lambda: _schema.codes_kind(role="retryable"),
}


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("dur_min", "0.01s", 0.01),
        ("dur_min", "2000000000s", 1e9),
        ("dur_min_pos", "0.5s", 0.5),
        ("dur_pos", "0.000000001s", 1e-9),
        ("codes_ne", ["internal", 14], frozenset({StatusCode.INTERNAL, StatusCode.UNAVAILABLE})),
        ("codes", [], frozenset()),
    ],
)
def test_new_kind_options_accept(kind: str, value: object, expected: object) -> None:
    assert KINDS[kind]().convert(value, "p") == expected


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("dur_min", "0.009999999s", "expected a duration >= 0.01s, like '1.5s', found "),
        ("dur_min", "0s", "expected a duration >= 0.01s, like '1.5s', found "),
        ("dur_min_pos", "0.4s", "expected a duration >= 0.5s, like '1.5s', found "),
        ("dur_pos", "0s", "expected a duration > 0s, like '1.5s', found "),
        (
            "codes_ne",
            [],
            'expected a non-empty array of failure status codes, like ["UNAVAILABLE"], found ',
        ),
        (
            "codes_ne",
            "x",
            'expected a non-empty array of failure status codes, like ["UNAVAILABLE"], found ',
        ),
    ],
)
def test_new_kind_options_refuse(kind: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        KINDS[kind]().convert(value, "p")
    assert info.value.path == "p"
    assert info.value.message == message + _schema.describe(value)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("codes_ne", "OK is not a failure"),
        ("codes", "OK is not a failure, so it cannot be retryable"),
    ],
)
def test_ok_is_refused_in_words_that_fit_the_role(kind: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        KINDS[kind]().convert(["UNAVAILABLE", "OK"], "p")
    assert (info.value.path, info.value.message) == ("p[1]", message)


def test_the_fields_both_a50_algorithms_share_are_read_by_name() -> None:
    first = Field("threshold", "threshold", _schema.integer_kind(minimum=0))
    table = outlier._a50_fields(first)
    assert table[0] is first
    assert not any(row.required for row in table)
    raw = {"threshold": 1, "enforcementPercentage": 2, "minimumHosts": 0, "requestVolume": 1}
    assert _schema.read_fields(raw, "p", table, "x") == {
        "threshold": 1,
        "enforcement_percentage": 2,
        "minimum_hosts": 0,
        "request_volume": 1,
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("enforcementPercentage", 101, "an integer from 0 to 100"),
        ("enforcementPercentage", -1, "an integer from 0 to 100"),
        ("minimumHosts", 4294967296, "an integer from 0 to 4294967295"),
        ("requestVolume", 0, "an integer from 1 to 4294967295"),
    ],
)
def test_the_shared_a50_fields_keep_their_limits(field: str, value: int, expected: str) -> None:
    table = outlier._a50_fields(Field("threshold", "threshold", _schema.integer_kind(minimum=0)))
    with pytest.raises(ConfigError) as info:
        _schema.read_fields({field: value}, "p", table, "x")
    assert (info.value.path, info.value.message) == (
        f"p.{field}",
        f"expected {expected}, found the number {value}",
    )


def test_the_readme_example_of_these_settings_parses_to_its_defaults() -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("### Fault-detection settings") :]
    start = section.index("```json\n") + len("```json\n")
    block = section[start : section.index("\n```", start)]
    config = parse_service_config(block)
    assert config.health_check == HealthCheckConfig(service_name="")
    assert config.load_balancing == LeastRequest()
    assert config.outlier_detection == OutlierDetection(consecutive_failures=ConsecutiveFailures())
    assert config.common_lb == CommonLbConfig()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("dur", "a duration, like '1.5s'"),
        ("dur_pos", "a duration > 0s, like '1.5s'"),
        ("dur_min", "a duration >= 0.01s, like '1.5s'"),
        ("dur_min_pos", "a duration >= 0.5s, like '1.5s'"),
        ("codes_ne", 'a non-empty array of failure status codes, like ["UNAVAILABLE"]'),
        ("codes", 'an array of retryable status codes, like ["UNAVAILABLE"]'),
    ],
)
def test_each_kind_says_what_it_expects(kind: str, expected: str) -> None:
    """What a "field is required" message says it expected."""
    assert KINDS[kind]().expected == expected
