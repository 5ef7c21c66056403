"""The asyncio retry step against scripted servers that count what reaches them.

Each test runs its own ``asyncio.run``; backends are :class:`tests.retry_servers.ScriptedServer`
on 127.0.0.1. The channel under test is :class:`resilientrpc.aio.ResilientChannel` (the
retry step above balancing, with failover) unless the test is about the standalone
:class:`interceptors.aio.retry.RetryInterceptor` on a plain ``grpc.aio`` channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest

import resilientrpc.aio
from interceptors.aio.retry import RetryInterceptor
from resilientrpc.retry import RetryEvent
from tests.retry_servers import (
    CLIENT_STREAM,
    SERVER_STREAM,
    SERVICE,
    UNARY,
    ScriptedServer,
    Step,
    fail,
    retry_config,
)

T = TypeVar("T")
ROUND_ROBIN: list[dict[str, Any]] = [{"round_robin": {}}]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@contextlib.contextmanager
def serve(*args: Any, **kwargs: Any) -> Iterator[ScriptedServer]:
    """A scripted server, stopped (its worker threads ended) at the end."""
    server = ScriptedServer(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def run(scenario: Coroutine[Any, Any, T], limit: float = 5.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario, limit)

    return asyncio.run(bounded())


async def ready(servers: list[ScriptedServer], config: Any) -> resilientrpc.aio.ResilientChannel:
    channel = resilientrpc.aio.ResilientChannel([s.address for s in servers], config=config)
    await asyncio.wait_for(channel.channel_ready(), 5)
    for _ in range(200):  # every backend connected: round robin reaches them all
        if all(status.state == "READY" for status in channel.endpoints()):  # a name
            break
        await asyncio.sleep(0.01)
    return channel


def config(**kwargs: Any) -> dict[str, Any]:
    return {**retry_config(**kwargs), "loadBalancingConfig": ROUND_ROBIN}


async def failure(call: Any) -> tuple[grpc.StatusCode, str]:
    """The status a call fails with (not the error: its traceback would hold the servers)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    raise AssertionError("the call succeeded")


async def unary(channel: Any, timeout: float | None = 2.0, **kwargs: Any) -> bytes:
    reply: bytes = await channel.unary_unary(UNARY)(b"ping", timeout=timeout, **kwargs)
    return reply


def test_failover_sends_the_retry_to_the_untried_backend() -> None:
    with (
        serve(default=fail()) as bad,
        serve() as good,
    ):

        async def scenario() -> None:
            # pick_first sends every first attempt to the failing backend; only failover
            # (the retry avoids the endpoint it tried) reaches the healthy one.
            first = {**retry_config(max_attempts=2), "loadBalancingConfig": [{"pick_first": {}}]}
            async with await ready([bad, good], first) as channel:
                for _ in range(10):
                    assert await unary(channel) == b"ping"

        run(scenario())
        assert bad.count == 10
        assert good.count == 10


def test_max_attempts_then_the_last_error_says_what_was_tried() -> None:
    with serve(default=fail(details="down")) as bad:

        async def scenario() -> tuple[grpc.StatusCode, str]:
            async with await ready([bad], config(max_attempts=3)) as channel:
                return await failure(unary(channel))

        code, details = run(scenario())
        assert bad.count == 3
        assert code is UNAVAILABLE
        assert details.startswith("down [resilientrpc: 3 attempts: ")
        assert details.count(bad.address) == 3
        assert "maxAttempts (3) reached" in details


def test_a_non_retryable_code_is_not_retried_and_its_error_untouched() -> None:
    with serve(default=fail(grpc.StatusCode.INVALID_ARGUMENT, details="bad")) as server:

        async def scenario() -> tuple[grpc.StatusCode, str]:
            async with await ready([server], config()) as channel:
                return await failure(unary(channel))

        assert run(scenario()) == (grpc.StatusCode.INVALID_ARGUMENT, "bad")
        assert server.count == 1


def test_every_retry_says_how_many_attempts_preceded_it() -> None:
    with serve([fail(), fail()]) as server:

        async def scenario() -> None:
            async with await ready([server], config(max_attempts=3)) as channel:
                assert await unary(channel) == b"ping"

        run(scenario())
        assert server.previous_attempts() == [None, "1", "2"]


def test_pushback_negative_stops_and_positive_waits() -> None:
    stop = fail(trailers=(("grpc-retry-pushback-ms", "-1"),))
    wait = fail(trailers=(("grpc-retry-pushback-ms", "150"),))
    with serve([stop]) as server:

        async def scenario() -> float:
            async with await ready([server], config(max_attempts=3)) as channel:
                _code, details = await failure(unary(channel))
                assert "pushback said not to retry" in details
                assert server.count == 1
                server.script(wait)
                started = time.monotonic()
                assert await unary(channel) == b"ping"
                return time.monotonic() - started

        elapsed = run(scenario())
        assert server.count == 3
        assert elapsed >= 0.15  # the backoff alone is at most 50 ms


def test_a_hung_backend_costs_one_attempt_not_the_deadline() -> None:
    extra = {"perAttemptRecvTimeout": "0.2s"}
    with serve(default=Step(hang=True)) as hung, serve() as good:

        async def scenario() -> float:
            async with await ready([hung, good], config(extra=extra)) as channel:
                started = time.monotonic()
                for _ in range(2):  # round robin: one of them starts on the hung backend
                    assert await unary(channel, timeout=1.5) == b"ping"
                return time.monotonic() - started

        elapsed = run(scenario())
        assert hung.count >= 1  # each cost 0.2 s (retry picks move round robin on)
        assert good.count == 2
        assert elapsed < 1.0


def test_no_retry_is_started_past_the_deadline() -> None:
    slow = fail(trailers=(("grpc-retry-pushback-ms", "500"),))
    with serve(default=slow) as server:

        async def scenario() -> tuple[grpc.StatusCode, str, float]:
            async with await ready([server], config(max_attempts=5)) as channel:
                started = time.monotonic()
                code, details = await failure(unary(channel, timeout=0.3))
                return code, details, time.monotonic() - started

        code, details, elapsed = run(scenario())
        assert server.count == 1
        assert code is UNAVAILABLE
        assert "the deadline would pass" in details
        assert elapsed < 0.3


def test_a_response_stream_is_retried_only_before_its_first_message() -> None:
    with serve([fail(), fail(replies=1)]) as server:

        async def scenario() -> list[bytes]:
            async with await ready([server], config(max_attempts=3)) as channel:
                call = channel.unary_stream(SERVER_STREAM)(b"s", timeout=2)
                got: list[bytes] = []
                code = None
                try:
                    async for message in call:
                        got.append(message)
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                assert code is UNAVAILABLE
                return got

        assert run(scenario()) == [b"s#0"]
        assert server.count == 2  # retried once (no message), then committed


def test_a_client_stream_is_replayed_to_the_retry() -> None:
    with serve([fail()]) as server:

        async def scenario() -> bytes:
            async with await ready([server], config()) as channel:
                reply: bytes = await channel.stream_unary(CLIENT_STREAM)(
                    iter([b"a", b"b"]), timeout=2
                )
                return reply

        assert run(scenario()) == b"a,b"
        assert [e.requests for e in server.executions] == [[b"a", b"b"], [b"a", b"b"]]


def test_a_client_stream_beyond_the_buffer_is_committed() -> None:
    options = [("grpc.per_rpc_retry_buffer_size", 3)]
    with serve([fail()]) as server:

        async def scenario() -> grpc.StatusCode:
            channel = resilientrpc.aio.ResilientChannel(
                [server.address], config=config(), options=options
            )
            async with channel:
                await channel.channel_ready()
                call = channel.stream_unary(CLIENT_STREAM)(iter([b"ab", b"cd"]), timeout=2)
                return (await failure(call))[0]

        assert run(scenario()) is UNAVAILABLE
        assert server.count == 1


def test_hedging_the_fast_answer_wins_and_the_slow_attempt_is_cancelled() -> None:
    hedged = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.05s"},
            }
        ],
        "loadBalancingConfig": ROUND_ROBIN,
    }
    with serve(default=Step(hang=True)) as slow, serve() as fast:

        async def scenario() -> float:
            async with await ready([slow, fast], hedged) as channel:
                started = time.monotonic()
                for _ in range(2):  # round robin: one of them starts on the slow backend
                    assert await unary(channel, timeout=3) == b"ping"
                return time.monotonic() - started

        elapsed = run(scenario())
        assert elapsed < 1.0
        assert slow.count >= 1  # hedge picks move round robin on: maybe both started there
        deadline = time.monotonic() + 2
        while not all(e.cancelled for e in slow.executions) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(e.cancelled for e in slow.executions)


def test_a_budget_refusal_is_visible_in_the_details() -> None:
    throttled = config(retryThrottling={"maxTokens": 1, "tokenRatio": 0.1})
    with serve(default=fail()) as server:

        async def scenario() -> str:
            async with await ready([server], throttled) as channel:
                return (await failure(unary(channel)))[1]

        details = run(scenario())
        assert server.count == 1
        assert "retries throttled" in details


@pytest.mark.grpc_aio_poller_may_outlive(
    "grpcio 1.68.1 (not 1.85.3; not bisected): after a grpc.aio interceptor has raised an "
    "AioRpcError - here the final, annotated error - grpc.aio's poller thread outlives the "
    "closed channel; a bare interceptor that only raises does the same"
)
def test_the_standalone_interceptor_retries_on_a_plain_aio_channel() -> None:
    with serve([fail()]) as server:

        async def scenario() -> tuple[bytes, tuple[grpc.StatusCode, str]]:
            step = RetryInterceptor(retry_config(max_attempts=2))
            async with grpc.aio.insecure_channel(server.address, interceptors=[step]) as plain:
                call = plain.unary_unary(UNARY)(b"ping", timeout=2)
                reply: bytes = await call
                assert await call.code() is grpc.StatusCode.OK
                server.script(fail(details="x"), fail(details="y"))
                return reply, await failure(plain.unary_unary(UNARY)(b"ping", timeout=2))

        reply, (code, details) = run(scenario())
        assert reply == b"ping"
        assert server.previous_attempts() == [None, "1", None, "1"]
        assert code is UNAVAILABLE
        assert details.startswith("y [resilientrpc: 2 attempts: UNAVAILABLE")


def test_close_ends_a_call_waiting_to_retry_with_cancelled() -> None:
    later = fail(trailers=(("grpc-retry-pushback-ms", "3000"),))
    with serve(default=later) as server:

        async def scenario() -> tuple[grpc.StatusCode, str, float]:
            channel = await ready([server], config())
            call = channel.unary_unary(UNARY)(b"ping", timeout=5)
            while server.count < 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await channel.close()
            code, details = await call.code(), await call.details()
            return code, details, time.monotonic() - started

        code, details, elapsed = run(scenario())
        assert code is grpc.StatusCode.CANCELLED
        assert details == "channel closed"
        assert elapsed < 1.0


def test_retry_listeners_hear_each_retry_and_the_budget_refusal() -> None:
    throttled = config(retryThrottling={"maxTokens": 3, "tokenRatio": 0.1})
    with serve(default=fail()) as a, serve(default=fail()) as b:

        async def scenario() -> tuple[list[RetryEvent], str]:
            heard: list[RetryEvent] = []
            async with await ready([a, b], throttled) as channel:
                channel.add_retry_listener(heard.append)
                details = (await failure(unary(channel)))[1]
                for _ in range(100):  # delivered with call_soon: let the loop run them
                    if len(heard) >= 3:
                        break
                    await asyncio.sleep(0.01)
                return heard, details

        heard, details = run(scenario())
        assert [e.kind for e in heard] == ["retry", "refused", "stopped"], heard
        assert heard[0].method == UNARY and heard[0].code is UNAVAILABLE
        assert heard[0].address in (a.address, b.address)
        assert heard[1].reason.startswith("retries throttled") and heard[1].reason in details


def test_a_request_iterator_that_raises_is_not_replayed_cut_short() -> None:
    with serve() as server:

        async def requests() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"
            await asyncio.sleep(0.05)  # the attempt reaches the server first
            raise RuntimeError("the caller's iterator failed")

        async def scenario() -> grpc.StatusCode:
            retryable = ("UNAVAILABLE", "UNKNOWN", "CANCELLED")
            async with await ready([server], config(codes=retryable)) as channel:
                call = channel.stream_unary(CLIENT_STREAM)(requests(), timeout=2)
                return (await failure(call))[0]

        assert run(scenario()) is grpc.StatusCode.CANCELLED
        assert server.count == 1
