"""Second review of issue 10's newest code, under attack: what a file of spans, a caller's
bad arguments or an odd meter set-up can do to the fault report and the telemetry.

Each test here failed before the fix it names; attacks that found nothing are listed in
the review's report, not here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

import resilientrpc.aio
from resilientrpc.errors import ConfigError
from resilientrpc.faults_report import parse_spans
from resilientrpc.testing import Backends, echo_pb2, echo_pb2_grpc

ECHO = "resilientrpc.echo.v1.Echo"
RETRY = {
    "maxAttempts": 2,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.02s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

_ATTEMPT = {
    "traceId": "0af7651916cd43dd8448eb211c80319c",
    "spanId": "b7ad6b7169203331",
    "parentSpanId": "a7ad6b7169203331",
    "name": "Attempt.echo.Echo/Echo",
    "startTimeUnixNano": "1000",
    "endTimeUnixNano": "2000",
    "attributes": [{"key": "server.address", "value": {"stringValue": "127.0.0.1"}}],
}


def _otlp(span: dict[str, Any]) -> str:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def _jaeger(span: dict[str, Any]) -> str:
    return json.dumps({"data": [{"traceID": "ab", "spans": [span], "processes": {}}]})


@pytest.mark.parametrize(
    "text",
    [
        # Python's json reads Infinity, which no int() takes (OverflowError).
        _otlp({**_ATTEMPT, "startTimeUnixNano": "INF"}).replace('"INF"', "Infinity"),
        _otlp({**_ATTEMPT, "endTimeUnixNano": "INF"}).replace('"INF"', "-Infinity"),
        _jaeger(
            {"traceID": "ab", "spanID": "cd", "operationName": "Attempt.x/y", "duration": "INF"}
        ).replace('"INF"', "Infinity"),
        # Nesting deeper than the interpreter's recursion limit (RecursionError).
        "[" * 100_000 + "]" * 100_000,
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": '
        + '{"arrayValue": ' * 50_000
        + "{}"
        + "}" * 50_000
        + "}]}]}]}]}",
    ],
    ids=["otlp-infinity", "otlp-minus-infinity", "jaeger-infinity", "deep-array", "deep-value"],
)
def test_a_file_of_extreme_json_is_one_config_error(text: str) -> None:
    """Fixed: these raised OverflowError / RecursionError - a traceback from
    ``resilientrpc faults`` - instead of the ConfigError every other bad file gets."""
    with pytest.raises(ConfigError):
        parse_spans(text)


#: Request metadata grpc.aio cannot send, and what the sync twin's grpc raises for it.
BAD_METADATA = {
    "int-value": ((("k", 1),), TypeError),
    "str-for-bin": ((("k-bin", "text"),), TypeError),
    "dict": ({"k": "v"}, ValueError),
    "uppercase-key": ((("Bad-Key", "v"),), grpc.RpcError),
    "newline-value": ((("k", "a\nb"),), grpc.RpcError),
}


@pytest.mark.parametrize("retried", [False, True], ids=["plain", "retried"])
@pytest.mark.parametrize("bad", list(BAD_METADATA), ids=list(BAD_METADATA))
def test_aio_metadata_grpc_cannot_send_fails_the_call_and_leaks_nothing(
    backends: Callable[..., Backends], bad: str, retried: bool
) -> None:
    """grpc.aio raises on such metadata only when the call is awaited, and the call then
    never ends: its done callbacks never run. Fixed: the aio channel refuses it when the
    call is made, as the sync twin's grpc does - before, a retried call hung past its
    deadline for ever, and any other left its call span running and its endpoint's
    outstanding count raised until the garbage collector came by."""
    metadata, raised = BAD_METADATA[bad]
    group = backends(1)
    tracing = TracerProvider()
    config = {"methodConfig": [{"name": [{"service": ECHO}], "retryPolicy": RETRY}]}

    async def run() -> None:
        async with resilientrpc.aio.ResilientChannel(
            group.addresses, config=config if retried else None, tracer_provider=tracing
        ) as channel:
            await asyncio.wait_for(channel.channel_ready(), 5)
            stub = echo_pb2_grpc.EchoStub(channel)
            with pytest.raises(raised):
                await asyncio.wait_for(
                    stub.Echo(echo_pb2.EchoRequest(message="x"), timeout=1, metadata=metadata),
                    3,  # past the call's own deadline: a hang shows as TimeoutError
                )
            await asyncio.sleep(0.05)
            assert [endpoint.outstanding for endpoint in channel.endpoints()] == [0]
            assert channel._tracing is not None and not channel._tracing._running
            sendable = ((b"k", "v"), ("k2", b"v"), ("k-bin", b"\x00\xff"), ("k3", "a b"))
            ok = await stub.Echo(echo_pb2.EchoRequest(message="ok"), timeout=5, metadata=sendable)
            assert ok.message == "ok"

    try:
        asyncio.run(run())
    finally:
        tracing.shutdown()
