"""One retry scenario suite, both twins: the same A6 behaviour from the sync and asyncio
channels, against the Echo backends of :mod:`resilientrpc.testing` that count the calls
they receive and inject the failures (``fail_next``, pushback, RetryInfo, stalls, hangs,
streams failing after N replies).

The channels use ``pick_first`` with the backends in a known order, so a retry that
failover did not move would go to the first backend again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from resilientrpc.testing import Backends
from tests.twins import ChannelHandle

ECHO = "resilientrpc.echo.v1.Echo"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
PICK_FIRST: list[dict[str, Any]] = [{"pick_first": {}}]
OpenChannel = Callable[..., ChannelHandle]


def retry_policy(max_attempts: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "maxAttempts": max_attempts,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.02s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
        **extra,
    }


def config(policy: dict[str, Any], kind: str = "retryPolicy", **top: Any) -> dict[str, Any]:
    return {
        "loadBalancingConfig": PICK_FIRST,
        "methodConfig": [{"name": [{"service": ECHO}], kind: policy}],
        **top,
    }


def opened(open_channel: OpenChannel, group: Backends, service_config: Any) -> ChannelHandle:
    handle = open_channel(group.addresses, config=service_config)
    handle.wait_ready(5)
    deadline = time.monotonic() + 5
    while any(e.state != "READY" for e in handle.endpoints()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return handle


def failure(call: Callable[[], object]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def test_each_retry_fails_over_to_the_untried_backend(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    group[0].configure(error_rate=1.0)
    handle = opened(open_channel, group, config(retry_policy(2)))
    replies = [handle.echo(f"m{i}") for i in range(10)]
    assert all(reply.backend == group[1].name for reply in replies)
    assert group[0].calls == 10
    assert group[1].previous_attempts() == [1] * 10


def test_max_attempts_then_the_last_error_says_what_was_tried(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    for backend in group:
        backend.configure(error_rate=1.0)
    handle = opened(open_channel, group, config(retry_policy(3)))
    error = failure(lambda: handle.echo("x"))
    assert error.code() is UNAVAILABLE
    details = error.details()
    assert f"3 attempts: {group[0].address} UNAVAILABLE, {group[1].address} UNAVAILABLE" in details
    assert details.endswith("maxAttempts (3) reached]")
    assert group.calls() == {group[0].name: 2, group[1].name: 1}
    assert group[0].previous_attempts() == [None, 2] and group[1].previous_attempts() == [1]


def test_a_non_retryable_code_is_not_retried_and_its_error_untouched(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    group[0].configure(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL)
    handle = opened(open_channel, group, config(retry_policy(3)))
    error = failure(lambda: handle.echo("x"))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "[resilientrpc" not in error.details()
    assert group[0].calls == 1 and group[1].calls == 0


@pytest.mark.parametrize("pushback", ["-1", "abc"])
def test_a_do_not_retry_pushback_stops(
    open_channel: OpenChannel, backends: Callable[..., Backends], pushback: str
) -> None:
    group = backends(2)
    group[0].configure(error_rate=1.0, pushback_ms=pushback)
    handle = opened(open_channel, group, config(retry_policy(3)))
    error = failure(lambda: handle.echo("x"))
    assert "pushback said not to retry" in error.details()
    assert group[0].calls == 1 and group[1].calls == 0


def test_a_pushback_delay_and_a_retry_info_delay_are_waited(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    handle = opened(open_channel, group, config(retry_policy(2)))
    for faults in ({"pushback_ms": "300"}, {"retry_info_seconds": 0.3}):
        group[0].configure(fail_next=1, **faults)
        started = time.monotonic()
        assert handle.echo("x").backend == group[1].name
        assert 0.3 <= time.monotonic() - started < 2.0, faults
        group[0].configure(pushback_ms="", retry_info_seconds=0.0)


def test_a_response_stream_is_retried_only_before_its_first_message(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    handle = opened(open_channel, group, config(retry_policy(3)))
    group[0].configure(fail_next=1)  # fails before any reply: retried on the other one
    replies = handle.server_stream("s", 3)
    assert [r.backend for r in replies] == [group[1].name] * 3
    group[0].configure(fail_after_messages=1)  # a reply, then the failure
    error = failure(lambda: handle.server_stream("s", 3))
    assert error.code() is UNAVAILABLE
    assert group[0].calls == 2 and group[1].calls == 1  # committed: no retry


def test_a_client_stream_is_replayed_whole_to_the_retry(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    handle = opened(open_channel, group, config(retry_policy(2)))
    group[0].configure(fail_next=1)
    reply = handle.client_stream(["a", "b", "c"])
    assert reply.backend == group[1].name and reply.message == "a,b,c"


def test_a_hung_backend_costs_one_attempt_not_the_deadline(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    group[0].configure(hang=True)
    handle = opened(open_channel, group, config(retry_policy(2, perAttemptRecvTimeout="0.2s")))
    started = time.monotonic()
    assert handle.echo("x", timeout=3).backend == group[1].name
    assert 0.2 <= time.monotonic() - started < 1.5


def test_a_hedge_beats_a_stalled_attempt(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    group[0].configure(stall_rate=1.0, stall_seconds=2.0)
    hedging = {"maxAttempts": 2, "hedgingDelay": "0.05s"}
    handle = opened(open_channel, group, config(hedging, "hedgingPolicy"))
    started = time.monotonic()
    assert handle.echo("x", timeout=5).backend == group[1].name
    assert time.monotonic() - started < 1.0
    assert group[1].previous_attempts() == [1]
    deadline = time.monotonic() + 3  # the stalled loser was cancelled: its slot is freed
    while any(e.outstanding for e in handle.endpoints()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.outstanding for e in handle.endpoints()] == [0, 0]


def test_throttling_refuses_retries_and_says_so(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(2)
    for backend in group:
        backend.configure(error_rate=1.0)
    throttled = config(retry_policy(5), retryThrottling={"maxTokens": 4, "tokenRatio": 0.1})
    handle = opened(open_channel, group, throttled)
    errors = [failure(lambda: handle.echo("x")) for _ in range(5)]
    assert "retries throttled" in errors[-1].details()
    assert sum(group.calls().values()) <= 5 + 2  # 4 tokens: 2 retries before the threshold
