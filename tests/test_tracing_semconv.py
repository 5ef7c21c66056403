"""``OTEL_SEMCONV_STABILITY_OPT_IN``: the RPC semantic conventions of the spans, both twins.

Unset (or naming other categories only), the spans keep the v1.37 conventions they have
always had; ``rpc`` switches to the stable ones alone, ``rpc/dup`` emits both (with
``rpc.method`` holding the stable, fully-qualified value). The variable is read when
the channel is built. Real backends, the SDK's in-memory exporter; the fault report
reads spans made in either convention.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import StatusCode

from interceptors import TracingInterceptor
from interceptors.tracing import OPT_IN, conventions_of
from resilientrpc.faults_report import Span, build_report, parse_spans
from resilientrpc.testing import Backends
from tests.retry_servers import UNARY, ScriptedServer, fail
from tests.test_tracing import (
    CALL,
    ECHO,
    FAIL_OVER,
    OK_CODE,
    UNAVAILABLE_CODE,
    OpenChannel,
    Tracing,
    attempts_of,
    config,
    opened,
)

LEGACY_CALL = {"rpc.system": "grpc", "rpc.service": ECHO, "rpc.method": "Echo"}
STABLE_CALL = {"rpc.system.name": "grpc", "rpc.method": CALL}
DUP_CALL = {**LEGACY_CALL, **STABLE_CALL}
LEGACY_OK = {"rpc.grpc.status_code": OK_CODE}
STABLE_OK = {"rpc.response.status_code": "OK"}
LEGACY_UNAVAILABLE = {"rpc.grpc.status_code": UNAVAILABLE_CODE}
STABLE_UNAVAILABLE = {"rpc.response.status_code": "UNAVAILABLE", "error.type": "UNAVAILABLE"}
#: Per mode: the variable's value, the call span's method and status attributes.
MODES: dict[str, tuple[str | None, dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "default": (None, LEGACY_CALL, LEGACY_OK, LEGACY_UNAVAILABLE),
    "rpc": ("rpc", STABLE_CALL, STABLE_OK, STABLE_UNAVAILABLE),
    "rpc/dup": (
        "rpc/dup",
        DUP_CALL,
        {**LEGACY_OK, **STABLE_OK},
        {**LEGACY_UNAVAILABLE, **STABLE_UNAVAILABLE},
    ),
}


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    traced = Tracing()
    yield traced
    traced.provider.shutdown()


def opt_in(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(OPT_IN, raising=False)
    else:
        monkeypatch.setenv(OPT_IN, value)


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "legacy"),
        ("", "legacy"),
        ("http,database", "legacy"),
        ("RPC", "legacy"),  # matched exactly, as OpenTelemetry's instrumentations do
        ("rpc", "stable"),
        (" http , rpc ", "stable"),
        ("rpc/dup", "duplicated"),
        ("rpc,rpc/dup", "duplicated"),  # rpc/dup wins over rpc
        ("rpc/dup,rpc", "duplicated"),
    ],
)
def test_the_variable_names_the_conventions(value: str | None, mode: str) -> None:
    assert conventions_of({} if value is None else {OPT_IN: value}).name == mode


@pytest.mark.parametrize("mode", list(MODES))
def test_call_and_attempt_spans_follow_the_mode(
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    open_channel: OpenChannel,
    backends: Callable[..., Backends],
    tracing: Tracing,
) -> None:
    value, method, ok, unavailable = MODES[mode]
    opt_in(monkeypatch, value)
    group = backends(2)
    group[0].configure(error_rate=1.0)
    handle = opened(open_channel, group.addresses, tracing, config(FAIL_OVER))
    monkeypatch.delenv(OPT_IN, raising=False)  # read once, when the channel was built
    assert handle.echo("hi").backend == group[1].name
    (call,) = tracing.wait(CALL, 1)
    assert dict(call.attributes or {}) == {
        **method,
        "resilientrpc.strategy": "pick_first",
        **ok,
        "resilientrpc.attempts": 2,
    }
    first, second = attempts_of(call, tracing.wait(f"Attempt.{CALL}", 2))
    assert dict(first.attributes or {}) == {
        "server.address": "127.0.0.1",
        "server.port": group[0].port,
        "resilientrpc.attempt": 1,
        "resilientrpc.hedge": False,
        **unavailable,
    }
    assert first.status.status_code is StatusCode.ERROR
    assert dict(second.attributes or {}) == {
        "server.address": "127.0.0.1",
        "server.port": group[1].port,
        "resilientrpc.attempt": 2,
        "resilientrpc.hedge": False,
        **ok,
    }
    (retry,) = [e for e in call.events if e.name == "retry"]
    codes = {k: v for k, v in unavailable.items() if k != "error.type"}
    assert {k: v for k, v in (retry.attributes or {}).items() if k.startswith("rpc.")} == codes


@pytest.mark.parametrize("mode", list(MODES))
def test_a_failing_call_says_how_it_failed(
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    open_channel: OpenChannel,
    backends: Callable[..., Backends],
    tracing: Tracing,
) -> None:
    value, method, _, unavailable = MODES[mode]
    opt_in(monkeypatch, value)
    group = backends(1)
    group[0].configure(error_rate=1.0)
    handle = opened(open_channel, group.addresses, tracing, config())
    with pytest.raises(grpc.RpcError) as raised:
        handle.echo("hi")
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    (call,) = tracing.wait(CALL, 1)
    assert call.status.status_code is StatusCode.ERROR
    assert dict(call.attributes or {}) == {
        **method,
        "resilientrpc.strategy": "pick_first",
        **unavailable,
        "resilientrpc.attempts": 1,
    }
    assert ("error.type" in (call.attributes or {})) is (mode != "default")


def test_a_plain_channel_records_named_metadata_under_the_stable_key(
    monkeypatch: pytest.MonkeyPatch, tracing: Tracing
) -> None:
    opt_in(monkeypatch, "rpc/dup")
    with ScriptedServer(script=[fail()]) as server:
        interceptor = TracingInterceptor(tracing.provider, record_metadata=("X-Tenant",))
        with grpc.insecure_channel(server.address) as plain:
            method = grpc.intercept_channel(plain, interceptor).unary_unary(UNARY)
            with pytest.raises(grpc.RpcError):
                method(b"x", timeout=5, metadata=(("x-tenant", "blue"), ("x-secret", "s")))
        (failed,) = tracing.wait("retry.test.Svc/Unary", 1)
    assert dict(failed.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.system.name": "grpc",
        "rpc.service": "retry.test.Svc",
        "rpc.method": "retry.test.Svc/Unary",
        "rpc.grpc.request.metadata.x-tenant": ("blue",),
        "rpc.request.metadata.x-tenant": ("blue",),
        **LEGACY_UNAVAILABLE,
        **STABLE_UNAVAILABLE,
        "resilientrpc.attempts": 1,
    }


def test_the_fault_report_reads_spans_made_in_rpc_mode(
    monkeypatch: pytest.MonkeyPatch,
    open_channel: OpenChannel,
    backends: Callable[..., Backends],
    tracing: Tracing,
) -> None:
    opt_in(monkeypatch, "rpc")
    group = backends(2)
    group[0].configure(error_rate=1.0)
    round_robin = {**config(FAIL_OVER), "loadBalancingConfig": [{"round_robin": {}}]}
    handle = opened(open_channel, group.addresses, tracing, round_robin)
    for _ in range(40):
        assert handle.echo("hi").backend == group[1].name
    spans = tracing.spans()
    assert not any("rpc.grpc.status_code" in (s.attributes or {}) for s in spans)
    document = json_format.MessageToJson(encode_spans(spans))
    report = build_report(parse_spans(document))
    assert [suspect.endpoint for suspect in report.suspects] == [group[0].address]
    failing, healthy = sorted(report.endpoints, key=lambda e: e.endpoint != group[0].address)
    assert failing.failures_by_code == {"UNAVAILABLE": failing.attempts}
    assert failing.rescued_by_retry == failing.attempts
    assert (healthy.failures, healthy.attempts) == (0, 40)


def _attempt(code: dict[str, Any], *, error: bool) -> Span:
    return Span(
        trace_id="t",
        span_id="a",
        parent_id="c",
        name=f"Attempt.{CALL}",
        start_ns=0,
        end_ns=1_000_000,
        error=error,
        attributes={"server.address": "127.0.0.1", "server.port": 1, **code},
        events=(),
    )


@pytest.mark.parametrize(
    ("code", "error", "counted"),
    [
        (LEGACY_UNAVAILABLE, True, {"UNAVAILABLE": 1}),
        (STABLE_UNAVAILABLE, True, {"UNAVAILABLE": 1}),
        ({"rpc.response.status_code": "DEADLINE_EXCEEDED"}, True, {"DEADLINE_EXCEEDED": 1}),
        ({"rpc.response.status_code": "NOT_A_CODE"}, True, {"UNKNOWN": 1}),
        (STABLE_OK, False, {}),
        ({}, True, {"UNKNOWN": 1}),
    ],
)
def test_the_tally_reads_the_code_of_either_convention(
    code: dict[str, Any], error: bool, counted: dict[str, int]
) -> None:
    (figures,) = build_report([_attempt(code, error=error)]).endpoints
    assert dict(figures.failures_by_code) == counted
    assert figures.failures == sum(counted.values())


def test_jaeger_spans_in_rpc_mode_tally_by_name() -> None:
    tags = [
        {"key": "server.address", "type": "string", "value": "127.0.0.1"},
        {"key": "server.port", "type": "int64", "value": 7},
        {"key": "rpc.response.status_code", "type": "string", "value": "ABORTED"},
        {"key": "otel.status_code", "type": "string", "value": "ERROR"},
    ]
    span = {
        "traceID": "1",
        "spanID": "2",
        "operationName": f"Attempt.{CALL}",
        "references": [{"refType": "CHILD_OF", "traceID": "1", "spanID": "3"}],
        "startTime": 0,
        "duration": 1000,
        "tags": tags,
        "logs": [],
    }
    document = json.dumps({"data": [{"traceID": "1", "spans": [span]}]})
    (figures,) = build_report(parse_spans(document)).endpoints
    assert dict(figures.failures_by_code) == {"ABORTED": 1}
