"""Second review of issue 10's newest code, under attack: what a file of spans, a caller's
bad arguments or an odd meter set-up can do to the fault report and the telemetry.

Each test here failed before the fix it names; attacks that found nothing are listed in
the review's report, not here.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import resilientrpc.aio
from resilientrpc.errors import ConfigError
from resilientrpc.faults_report import parse_spans
from resilientrpc.testing import Backends, echo_pb2, echo_pb2_grpc
from tests.test_examples_and_cli import run

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


def _aio_channel(
    group: Backends, retried: bool, provider: TracerProvider
) -> resilientrpc.aio.ResilientChannel:
    """A traced asyncio channel to ``group``, Echo retried (:data:`RETRY`) if ``retried``."""
    config = {"methodConfig": [{"name": [{"service": ECHO}], "retryPolicy": RETRY}]}
    return resilientrpc.aio.ResilientChannel(
        group.addresses, config=config if retried else None, tracer_provider=provider
    )


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

    async def run() -> None:
        async with _aio_channel(group, retried, tracing) as channel:
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


@pytest.mark.parametrize("where", ["missing-directory", "a-directory"])
def test_the_fault_report_example_refuses_a_spans_path_it_cannot_write_before_running(
    tmp_path: Path, where: str
) -> None:
    """Fixed: it ran every call against three child backends, then died with a
    FileNotFoundError / IsADirectoryError traceback, the report lost."""
    target = tmp_path / "missing" / "spans.jsonl" if where == "missing-directory" else tmp_path
    started = time.monotonic()
    result = run("examples/fault_report.py", "--calls", "1", "--spans", str(target))
    assert result.returncode == 2, result.stderr
    assert "--spans" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started < 30  # refused at once: no backend was started


@pytest.mark.parametrize("retried", [False, True], ids=["plain", "retried"])
@pytest.mark.parametrize("shape", ["unary", "server-stream"])
def test_aio_a_call_whose_send_raises_ends_its_span_on_the_hot_path(
    backends: Callable[..., Backends], shape: str, retried: bool
) -> None:
    """Call credentials on an insecure channel: grpc.aio refuses the send (UsageError).
    Fixed: the hot path ended the attempt's span but not the call's - never exported,
    no call duration recorded, and kept for ever among the channel's running calls (one
    more per such call) - where the chain and the sync twin end it, ERROR."""
    group = backends(1)
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    token = grpc.access_token_call_credentials("secret")
    request = echo_pb2.EchoRequest(message="x", count=1)

    async def run() -> None:
        async with _aio_channel(group, retried, tracing) as channel:
            await asyncio.wait_for(channel.channel_ready(), 5)
            stub = echo_pb2_grpc.EchoStub(channel)
            with pytest.raises(grpc.aio.UsageError):
                if shape == "unary":
                    await stub.Echo(request, timeout=5, credentials=token)
                else:
                    await stub.ServerStream(request, timeout=5, credentials=token).read()
            assert channel._tracing is not None and not channel._tracing._running

    try:
        asyncio.run(run())
        name = f"{ECHO}/Echo" if shape == "unary" else f"{ECHO}/ServerStream"
        (call,) = [span for span in exporter.get_finished_spans() if span.name == name]
        assert call.status.status_code is StatusCode.ERROR
    finally:
        tracing.shutdown()
        gc.collect()  # the caught error's frames hold grpc.aio objects (and its poller)
