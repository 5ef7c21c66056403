"""gRFC A6 retries, failover and hedging through ``ResilientChannel``, against real servers.

Every backend is a :class:`~tests.retry_servers.ScriptedServer` that counts the executions
it receives, so each rule is checked by what reached the servers, not by what the client
says it did. The channels use ``pick_first`` with the backends in a known order: a retry
that failover did not move would go to the first backend again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from interceptors.retry import RetryInterceptor
from resilientrpc import ResilientChannel
from resilientrpc.retry import RetryEvent
from tests.retry_servers import (
    BIDI,
    CLIENT_STREAM,
    SERVER_STREAM,
    SERVICE,
    UNARY,
    ScriptedServer,
    Step,
    fail,
    retry_config,
    wait_until,
)

Code: TypeAlias = grpc.StatusCode
PICK_FIRST: list[dict[str, Any]] = [{"pick_first": {}}]


@pytest.fixture
def servers() -> Iterator[Callable[..., list[ScriptedServer]]]:
    started: list[ScriptedServer] = []

    def start(*defaults: Step) -> list[ScriptedServer]:
        group = [ScriptedServer(default=default) for default in defaults]
        started.extend(group)
        return group

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def channel() -> Iterator[Callable[..., ResilientChannel]]:
    opened: list[ResilientChannel] = []

    def open_(
        backends: Sequence[ScriptedServer], config: dict[str, Any], **kwargs: Any
    ) -> ResilientChannel:
        config = {"loadBalancingConfig": PICK_FIRST, **config}
        opened.append(ResilientChannel([b.address for b in backends], config=config, **kwargs))
        ready = wait_until(
            lambda: all(e.state == "READY" for e in opened[-1].endpoints()), timeout=5
        )
        assert ready, opened[-1].endpoints()
        return opened[-1]

    yield open_
    for opened_channel in opened:
        opened_channel.close()


def _unary(channel: grpc.Channel, how: str, timeout: float = 5.0) -> Any:
    """One unary call made ``how``: blocking, with_call or future; the response or error."""
    stub = channel.unary_unary(UNARY)
    try:
        if how == "blocking":
            return stub(b"req", timeout=timeout)
        if how == "with_call":
            return stub.with_call(b"req", timeout=timeout)[0]
        return stub.future(b"req", timeout=timeout).result()
    except grpc.RpcError as error:
        return error


HOWS = ["blocking", "with_call", "future"]


@pytest.mark.parametrize("how", HOWS)
def test_a_retry_fails_over_to_the_untried_backend(how: str, servers: Any, channel: Any) -> None:
    bad, good = servers(fail(), Step())
    ch = channel([bad, good], retry_config(max_attempts=2))
    results = [_unary(ch, how) for _ in range(5)]
    assert results == [b"req"] * 5
    assert bad.count == 5 and good.count == 5  # each call: the first backend, then the other
    assert good.previous_attempts() == ["1"] * 5


@pytest.mark.parametrize("how", HOWS)
def test_max_attempts_counts_executions_and_the_error_says_what_was_tried(
    how: str, servers: Any, channel: Any
) -> None:
    a, b, c = servers(fail(), fail(), fail())
    ch = channel([a, b, c], retry_config(max_attempts=3))
    error = _unary(ch, how)
    assert isinstance(error, grpc.RpcError)
    assert error.code() is Code.UNAVAILABLE
    assert [s.count for s in (a, b, c)] == [1, 1, 1]
    assert a.previous_attempts() == [None]
    assert sorted([*b.previous_attempts(), *c.previous_attempts()]) == ["1", "2"]
    details = error.details()
    assert details.startswith("scripted [resilientrpc: 3 attempts: ")
    for server in (a, b, c):
        assert f"{server.address} UNAVAILABLE" in details
    assert "maxAttempts (3) reached" in details


@pytest.mark.parametrize("how", HOWS)
def test_a_non_retryable_code_is_not_retried(how: str, servers: Any, channel: Any) -> None:
    a, b = servers(fail(Code.INTERNAL, details="broken"), Step())
    ch = channel([a, b], retry_config(max_attempts=3))
    error = _unary(ch, how)
    assert error.code() is Code.INTERNAL and error.details() == "broken"
    assert (a.count, b.count) == (1, 0)


def test_pushback_milliseconds_are_honoured(servers: Any, channel: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "300"),)), Step())
    ch = channel([a, b], retry_config(max_attempts=2))
    started = time.monotonic()
    assert _unary(ch, "blocking") == b"req"
    assert time.monotonic() - started >= 0.3
    assert (a.count, b.count) == (1, 1)


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_a_negative_or_invalid_pushback_stops(value: str, servers: Any, channel: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", value),)), Step())
    ch = channel([a, b], retry_config(max_attempts=3))
    error = _unary(ch, "blocking")
    assert error.code() is Code.UNAVAILABLE
    assert "pushback said not to retry" in error.details()
    assert (a.count, b.count) == (1, 0)


def _retry_info(seconds: float) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))
    )
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="slow down")
    status.details.add().Pack(info)
    return tuple(rpc_status.to_status(status).trailing_metadata)


def test_a_retry_info_delay_is_honoured(servers: Any, channel: Any) -> None:
    a, b = servers(fail(details="slow down", trailers=_retry_info(0.3)), Step())
    ch = channel([a, b], retry_config(max_attempts=2))
    started = time.monotonic()
    assert _unary(ch, "blocking") == b"req"
    assert time.monotonic() - started >= 0.3
    # the same delay past the deadline: no retry
    a.script(fail(details="slow down", trailers=_retry_info(0.5)))
    started = time.monotonic()
    error = _unary(ch, "blocking", timeout=0.3)
    assert time.monotonic() - started < 0.25
    assert error.code() is Code.UNAVAILABLE and "deadline would pass" in error.details()
    assert (a.count, b.count) == (2, 1)


@pytest.mark.parametrize("how", HOWS)
def test_no_retry_whose_backoff_ends_past_the_deadline(
    how: str, servers: Any, channel: Any
) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "400"),)), Step())
    ch = channel([a, b], retry_config(max_attempts=3))
    started = time.monotonic()
    error = _unary(ch, how, timeout=0.3)
    assert time.monotonic() - started < 0.25
    assert error.code() is Code.UNAVAILABLE and "deadline would pass" in error.details()
    assert (a.count, b.count) == (1, 0)


@pytest.mark.parametrize("how", HOWS)
def test_a_hung_backend_costs_one_attempt(how: str, servers: Any, channel: Any) -> None:
    hung, good = servers(Step(hang=True), Step())
    config = retry_config(max_attempts=2, extra={"perAttemptRecvTimeout": "0.2s"})
    ch = channel([hung, good], config)
    started = time.monotonic()
    assert _unary(ch, how, timeout=3) == b"req"
    assert time.monotonic() - started < 1.0
    assert (hung.count, good.count) == (1, 1)
    assert wait_until(lambda: hung.executions[0].cancelled, 2)


def test_a_server_stream_is_committed_after_its_first_message(servers: Any, channel: Any) -> None:
    a, b = servers(fail(replies=1), Step(replies=2))
    ch = channel([a, b], retry_config(max_attempts=3))
    stream = ch.unary_stream(SERVER_STREAM)(b"s", timeout=5)
    assert next(stream) == b"s#0"
    with pytest.raises(grpc.RpcError) as raised:
        next(stream)
    assert raised.value.code() is Code.UNAVAILABLE
    assert (a.count, b.count) == (1, 0)
    # failing before the first message: retried
    a.script(fail(replies=0))
    assert list(ch.unary_stream(SERVER_STREAM)(b"t", timeout=5)) == [b"t#0", b"t#1"]
    assert (a.count, b.count) == (2, 1)


def test_client_stream_requests_are_replayed_whole(servers: Any, channel: Any) -> None:
    a, b = servers(fail(), Step())
    ch = channel([a, b], retry_config(max_attempts=2))
    requests = iter([b"one", b"two", b"three"])
    assert ch.stream_unary(CLIENT_STREAM)(requests, timeout=5) == b"one,two,three"
    assert a.executions[0].requests == [b"one", b"two", b"three"]
    assert b.executions[0].requests == [b"one", b"two", b"three"]
    replies = ch.stream_stream(BIDI)(iter([b"x", b"y"]), timeout=5)
    assert list(replies) == [b"0"]
    assert [e.requests for e in b.executions] == [[b"one", b"two", b"three"], [b"x", b"y"]]


def test_requests_beyond_the_buffer_commit_the_call(servers: Any, channel: Any) -> None:
    a, b = servers(fail(), Step())
    ch = channel(
        [a, b], retry_config(max_attempts=2), options=[("grpc.per_rpc_retry_buffer_size", 10)]
    )
    with pytest.raises(grpc.RpcError) as raised:
        ch.stream_unary(CLIENT_STREAM)(iter([b"12345678", b"12345678"]), timeout=5)
    assert raised.value.code() is Code.UNAVAILABLE
    assert (a.count, b.count) == (1, 0)
    # within the buffer: retried
    assert ch.stream_unary(CLIENT_STREAM)(iter([b"12345678"]), timeout=5) == b"12345678"
    assert (a.count, b.count) == (2, 1)


def _hedging(max_attempts: int, delay: str, non_fatal: Sequence[str] = ()) -> dict[str, Any]:
    policy = {
        "maxAttempts": max_attempts,
        "hedgingDelay": delay,
        "nonFatalStatusCodes": list(non_fatal),
    }
    return {"methodConfig": [{"name": [{"service": SERVICE}], "hedgingPolicy": policy}]}


@pytest.mark.parametrize("how", HOWS)
def test_a_hedge_wins_and_the_loser_is_cancelled(how: str, servers: Any, channel: Any) -> None:
    slow, fast = servers(Step(delay=1.5), Step())
    ch = channel([slow, fast], _hedging(2, "0.05s"))
    started = time.monotonic()
    assert _unary(ch, how) == b"req"
    assert time.monotonic() - started < 1.0
    assert (slow.count, fast.count) == (1, 1)
    assert fast.previous_attempts() == ["1"]
    assert wait_until(lambda: slow.executions[0].cancelled, 2)


@pytest.mark.parametrize("how", HOWS)
def test_a_fatal_code_ends_a_hedged_call(how: str, servers: Any, channel: Any) -> None:
    a, b = servers(fail(Code.INTERNAL, delay=0.15), Step(delay=0.6))
    ch = channel([a, b], _hedging(2, "0.02s", ["UNAVAILABLE"]))
    started = time.monotonic()
    error = _unary(ch, how)
    assert error.code() is Code.INTERNAL
    assert time.monotonic() - started < 0.5
    assert (a.count, b.count) == (1, 1)  # the hedge went, and was cancelled at the fatal answer
    assert wait_until(lambda: b.executions[0].cancelled, 2)


def test_hedges_stop_at_max_attempts(servers: Any, channel: Any) -> None:
    group = servers(fail(), fail(), fail())
    ch = channel(group, _hedging(2, "0.01s", ["UNAVAILABLE"]))
    error = _unary(ch, "future")
    assert error.code() is Code.UNAVAILABLE and "2 attempts" in error.details()
    time.sleep(0.1)
    assert sum(s.count for s in group) == 2


def test_throttling_refuses_retries_in_an_outage(servers: Any, channel: Any) -> None:
    group = servers(fail(), fail())
    config = retry_config(max_attempts=5, retryThrottling={"maxTokens": 10, "tokenRatio": 0.1})
    ch = channel(group, config)
    errors = [_unary(ch, "blocking") for _ in range(30)]
    assert all(e.code() is Code.UNAVAILABLE for e in errors)
    assert "retries throttled" in errors[-1].details()
    assert sum(s.count for s in group) <= 1.2 * 30


def test_future_never_blocks_while_a_retry_waits(servers: Any, channel: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "400"),)), Step())
    ch = channel([a, b], retry_config(max_attempts=2))
    started = time.monotonic()
    future = ch.unary_unary(UNARY).future(b"req", timeout=5)
    assert time.monotonic() - started < 0.1
    assert wait_until(lambda: a.count == 1, 2)
    assert not future.done()
    assert future.result() == b"req"
    assert time.monotonic() - started >= 0.4


def test_close_ends_a_future_waiting_to_retry(servers: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "3000"),)), Step())
    config = {"loadBalancingConfig": PICK_FIRST, **retry_config(max_attempts=2)}
    ch = ResilientChannel([a.address, b.address], config=config)
    try:
        assert wait_until(lambda: all(e.state == "READY" for e in ch.endpoints()), 5)
        future = ch.unary_unary(UNARY).future(b"req", timeout=10)
        assert wait_until(lambda: a.count == 1, 2)
    finally:
        started = time.monotonic()
        ch.close()
    error = future.exception(timeout=1)
    assert time.monotonic() - started < 1.0
    assert error is not None and error.code() is Code.CANCELLED
    assert b.count == 0


def test_a_standalone_interceptor_retries_on_a_plain_channel(servers: Any) -> None:
    (server,) = servers(Step())
    server.script(fail(), fail())
    plain = grpc.insecure_channel(server.address)
    try:
        channel = grpc.intercept_channel(plain, RetryInterceptor(retry_config(max_attempts=3)))
        assert channel.unary_unary(UNARY)(b"req", timeout=5) == b"req"
        assert server.previous_attempts() == [None, "1", "2"]
        server.script(fail(), fail(), fail())
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(UNARY).future(b"req", timeout=5).result()
        assert raised.value.code() is Code.UNAVAILABLE
        assert "3 attempts" in raised.value.details()
        assert server.count == 6
    finally:
        plain.close()


# -- transparent retry --------------------------------------------------------------------


def test_an_attempt_that_never_reached_a_server_is_resent_at_once_outside_max_attempts(
    servers: Callable[..., list[ScriptedServer]], channel: Callable[..., ResilientChannel]
) -> None:
    """A backend that went away after the balancer last saw it: its attempt never left the
    client ("failed to connect to all addresses"), so it is resent elsewhere at once even
    though UNAVAILABLE is not retryable here, and it does not count against maxAttempts.

    The balancer must not learn of the loss before the call picks the dead backend, so the
    channel's background loop (where connectivity changes are applied) is held busy while
    the backend stops and the call is made; grpc's own call connection notices meanwhile.
    """
    first, second = servers(Step(), Step())
    resilient = channel([first, second], retry_config(max_attempts=2, codes=["INTERNAL"]))
    second.script(fail(Code.INTERNAL))  # the one counted attempt fails, the retry succeeds
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(5)

    resilient._loop.call_later(0, hold)  # the balancer's loop: no picker change meanwhile
    try:
        assert held.wait(5)
        first.stop()
        time.sleep(0.3)  # grpc's sync channel sees the connection go
        answer = resilient.unary_unary(UNARY)(b"req", timeout=5)
    finally:
        release.set()
    assert answer == b"req"
    assert first.count == 0  # nothing reached the stopped backend
    assert second.count == 2  # INTERNAL, then the retry: maxAttempts 2 were both for it


def test_retry_listeners_hear_each_retry_and_the_budget_refusal(servers: Any, channel: Any) -> None:
    """What the retry step did reaches ``add_retry_listener`` as structured events: the
    retry (attempt, code, endpoint, delay), then the throttle's refusal with its reason."""
    a, b = servers(fail(), fail())
    config = retry_config(max_attempts=3, retryThrottling={"maxTokens": 3, "tokenRatio": 0.1})
    ch = channel([a, b], config)
    heard: list[RetryEvent] = []
    done = threading.Event()

    def listen(event: RetryEvent) -> None:
        heard.append(event)
        if event.kind == "refused":
            done.set()

    ch.add_retry_listener(listen)
    error = _unary(ch, "blocking")  # 3 tokens: the first failure leaves 2 (> 1.5), the second 1
    assert done.wait(2), heard
    kinds = [e.kind for e in heard]
    assert kinds == ["retry", "refused", "stopped"], heard
    retry, refused, _stopped = heard
    assert retry.method == UNARY and retry.attempt == 1 and retry.code is Code.UNAVAILABLE
    assert retry.address == a.address and 0 <= retry.delay <= 0.01
    assert refused.reason.startswith("retries throttled") and refused.reason in error.details()
    ch.remove_retry_listener(listen)
    _unary(ch, "blocking")
    time.sleep(0.1)
    assert len(heard) == 3


def test_close_ends_a_blocking_call_sleeping_its_backoff(servers: Any, channel: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "3000"),)), Step())
    ch = channel([a, b], retry_config(max_attempts=2))
    outcome: list[Any] = []
    caller = threading.Thread(target=lambda: outcome.append(_unary(ch, "blocking", 10)))
    caller.start()
    assert wait_until(lambda: a.count == 1, 2)
    started = time.monotonic()
    ch.close()
    caller.join(2)
    assert time.monotonic() - started < 1.0
    assert outcome[0].code() is Code.CANCELLED
    assert outcome[0].details() == "channel closed"
    assert b.count == 0


def test_cancel_during_a_stream_backoff_sends_no_more_attempts(servers: Any, channel: Any) -> None:
    a, b = servers(fail(trailers=(("grpc-retry-pushback-ms", "3000"),)), Step(hang=True))
    ch = channel([a, b], retry_config(max_attempts=2))
    stream = ch.unary_stream(SERVER_STREAM)(b"req", timeout=5)
    codes: list[Any] = []
    reader = threading.Thread(target=lambda: codes.append(_first_error(stream)))
    reader.start()
    assert wait_until(lambda: a.count == 1, 2)
    time.sleep(0.05)  # the reader sleeps its backoff
    started = time.monotonic()
    stream.cancel()
    reader.join(2)
    assert time.monotonic() - started < 1.0
    assert codes == [Code.CANCELLED]
    time.sleep(0.1)
    assert b.count == 0
    assert [e.outstanding for e in ch.endpoints()] == [0, 0]


def _first_error(stream: Any) -> Any:
    try:
        next(stream)
    except grpc.RpcError as error:
        return error.code()
    return None


def test_a_request_iterator_that_raises_is_not_replayed_cut_short(
    servers: Any, channel: Any
) -> None:
    a, b = servers(Step(delay=0.2), Step())
    retryable = ("UNAVAILABLE", "UNKNOWN", "CANCELLED")
    ch = channel([a, b], retry_config(max_attempts=2, codes=retryable))

    def requests() -> Iterator[bytes]:
        yield b"r0"
        yield b"r1"
        raise RuntimeError("the caller's iterator failed")

    with pytest.raises(grpc.RpcError) as raised:
        ch.stream_unary(CLIENT_STREAM)(requests(), timeout=3)
    assert raised.value.code() is Code.UNKNOWN
    assert b.count == 0


def test_a_retry_replays_while_the_request_iterator_blocks(servers: Any, channel: Any) -> None:
    a, b = servers(Step(hang=True), Step())
    per_attempt = {"perAttemptRecvTimeout": "0.2s"}
    ch = channel([a, b], retry_config(max_attempts=2, extra=per_attempt))
    more: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:  # the next request only once a response arrived
        yield b"r0"
        while (item := more.get(timeout=3)) is not None:
            yield item

    stream = ch.stream_stream(BIDI)(requests(), timeout=3)
    reader = threading.Thread(target=lambda: next(stream, None))
    reader.start()
    try:
        assert wait_until(lambda: b.count == 1 and b.executions[0].requests == [b"r0"], 1.0)
    finally:
        more.put(None)
        reader.join(3)
