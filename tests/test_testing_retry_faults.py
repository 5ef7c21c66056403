"""The retry faults of resilientrpc.testing (issue 9) against real servers on 127.0.0.1.

``fail_next``, server pushback, ``google.rpc.RetryInfo``, stalls, streams failing after N
replies, and the record of each call's ``resilientrpc-previous-rpc-attempts`` header, in
process and in a child process, through plain grpc channels.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from resilientrpc.errors import ConfigError
from resilientrpc.testing import (
    PREVIOUS_ATTEMPTS_HEADER,
    PUSHBACK_HEADER,
    Backend,
    BackendProcess,
    Faults,
    echo_pb2,
    echo_pb2_grpc,
    faults_pb2,
    faults_pb2_grpc,
)
from resilientrpc.testing.faults import changes_to_fault_config, faults_from_fault_config
from resilientrpc.testing.serve import build_parser, faults_from_args, faults_to_argv

_DETAILS_KEY = "grpc-status-details-bin"


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend("r1", seed=3) as started:
        yield started


@pytest.fixture
def stub(backend: Backend) -> Iterator[Any]:
    with grpc.insecure_channel(backend.address) as channel:
        yield echo_pb2_grpc.EchoStub(channel)


def _request(count: int = 0) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(message="m", count=count)


def _call(stub: Any, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.Call | None:
    """None when the unary call succeeds, else the failed call."""
    try:
        stub.Echo(_request(), timeout=5, metadata=metadata)
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        return error
    return None


def _trailer(call: grpc.Call, key: str) -> list[str | bytes]:
    return [value for name, value in call.trailing_metadata() or () if name == key]


# --- fail_next --------------------------------------------------------------------------


def test_fail_next_fails_exactly_the_next_calls_and_counts_down(
    backend: Backend, stub: Any
) -> None:
    assert backend.configure(fail_next=2, error_code=grpc.StatusCode.INTERNAL).fail_next == 2
    first = _call(stub)
    assert first is not None and first.code() is grpc.StatusCode.INTERNAL
    assert backend.faults.fail_next == 1
    second = _call(stub)
    assert second is not None and second.code() is grpc.StatusCode.INTERNAL
    assert backend.faults.fail_next == 0
    assert [_call(stub) for _ in range(5)] == [None] * 5
    assert backend.calls == 7


def test_fail_next_left_is_in_the_faults_rpc_reply(backend: Backend, stub: Any) -> None:
    with grpc.insecure_channel(backend.address) as channel:
        faults = faults_pb2_grpc.FaultsStub(channel)
        assert faults.Configure(faults_pb2.FaultConfig(fail_next=3), timeout=5).fail_next == 3
        assert _call(stub) is not None
        assert faults.Configure(faults_pb2.FaultConfig(), timeout=5).fail_next == 2
        # Changing something else leaves the count that is left alone.
        assert faults.Configure(faults_pb2.FaultConfig(latency_seconds=0), timeout=5).fail_next == 2


# --- retry hints on injected failures ---------------------------------------------------


@pytest.mark.parametrize("value", ["250", "-1", "abc"])
def test_pushback_is_sent_on_injected_failures(backend: Backend, stub: Any, value: str) -> None:
    backend.configure(fail_next=1, pushback_ms=value)
    failed = _call(stub)
    assert failed is not None
    received = _trailer(failed, PUSHBACK_HEADER)
    if value == "abc":
        # grpc's core parses this key as a number: an invalid one reaches the client as a
        # negative number, which A6 reads the same way ("do not retry").
        assert len(received) == 1 and int(received[0]) < 0
    else:
        assert received == [value]
    # A successful call carries no pushback.
    reply, call = stub.Echo.with_call(_request(), timeout=5)
    assert reply.backend == "r1"
    assert _trailer(call, PUSHBACK_HEADER) == []


def test_no_pushback_or_status_details_by_default(backend: Backend, stub: Any) -> None:
    backend.configure(fail_next=1)
    failed = _call(stub)
    assert failed is not None and failed.code() is grpc.StatusCode.UNAVAILABLE
    assert _trailer(failed, PUSHBACK_HEADER) == []
    assert _trailer(failed, _DETAILS_KEY) == []
    assert rpc_status.from_call(failed) is None


def test_retry_info_travels_in_status_details(backend: Backend, stub: Any) -> None:
    backend.configure(
        error_rate=1.0, retry_info_seconds=1.5, error_code=grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    failed = _call(stub, metadata=(("x-echo-tag", "kept"),))
    assert failed is not None and failed.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(failed)
    assert status is not None
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert len(status.details) == 1
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() == 1_500_000_000
    # The metadata set when the call began is still there.
    assert _trailer(failed, "x-echo-tag") == ["kept"]


def test_retry_hints_also_come_with_stream_failures(backend: Backend, stub: Any) -> None:
    backend.configure(fail_after_messages=1, pushback_ms="10", retry_info_seconds=0.25)
    stream = stub.ServerStream(_request(count=3), timeout=5)
    with pytest.raises(grpc.RpcError):
        list(stream)
    assert _trailer(stream, PUSHBACK_HEADER) == ["10"]
    status = rpc_status.from_call(stream)
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() == 250_000_000


# --- stalls -----------------------------------------------------------------------------


def _elapsed(stub: Any) -> float:
    began = time.monotonic()
    assert _call(stub) is None
    return time.monotonic() - began


def test_stall_rate_one_stalls_every_call_and_zero_none(backend: Backend, stub: Any) -> None:
    backend.configure(stall_rate=1.0, stall_seconds=0.3)
    assert all(_elapsed(stub) >= 0.3 for _ in range(2))
    backend.configure(stall_rate=0.0)
    assert all(_elapsed(stub) < 0.25 for _ in range(3))


def test_stall_rate_stalls_a_fraction_of_calls(backend: Backend, stub: Any) -> None:
    backend.configure(stall_rate=0.5, stall_seconds=0.1)
    stalled = sum(_elapsed(stub) >= 0.1 for _ in range(30))
    assert 5 <= stalled <= 25


# --- streams failing after N replies ----------------------------------------------------


def test_server_stream_fails_after_n_replies(backend: Backend, stub: Any) -> None:
    backend.configure(fail_after_messages=2, error_code=grpc.StatusCode.ABORTED)
    received = []
    stream = stub.ServerStream(_request(count=5), timeout=5)
    with pytest.raises(grpc.RpcError):
        for reply in stream:
            received.append(reply.index)
    assert received == [0, 1]
    assert stream.code() is grpc.StatusCode.ABORTED
    # A stream shorter than N ends normally, and unary calls are unaffected.
    assert [reply.index for reply in stub.ServerStream(_request(count=1), timeout=5)] == [0]
    assert _call(stub) is None


def test_bidi_stream_fails_after_n_replies(backend: Backend, stub: Any) -> None:
    backend.configure(fail_after_messages=3)
    received = []
    stream = stub.BidiStream(iter([_request() for _ in range(6)]), timeout=5)
    with pytest.raises(grpc.RpcError):
        for reply in stream:
            received.append(reply.index)
    assert received == [0, 1, 2]
    assert stream.code() is grpc.StatusCode.UNAVAILABLE


# --- the previous-attempts header -------------------------------------------------------


def test_previous_attempts_are_recorded_per_call(backend: Backend, stub: Any) -> None:
    _call(stub)
    _call(stub, metadata=((PREVIOUS_ATTEMPTS_HEADER, "2"),))
    _call(stub, metadata=((PREVIOUS_ATTEMPTS_HEADER, "abc"),))
    list(stub.ServerStream(_request(count=2), metadata=((PREVIOUS_ATTEMPTS_HEADER, "1"),)))
    assert backend.previous_attempts() == [None, 2, None, 1]


def test_child_process_reports_calls_and_previous_attempts() -> None:
    faults = Faults(fail_next=1, pushback_ms="-7", fail_after_messages=4)
    with BackendProcess("child", faults=faults) as child:
        assert child.faults == faults
        with grpc.insecure_channel(child.address) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            failed = _call(stub, metadata=((PREVIOUS_ATTEMPTS_HEADER, "0"),))
            assert failed is not None and _trailer(failed, PUSHBACK_HEADER) == ["-7"]
            assert _call(stub, metadata=((PREVIOUS_ATTEMPTS_HEADER, "4"),)) is None
            assert _call(stub) is None
        assert child.calls == 3
        assert child.previous_attempts() == [0, 4, None]
        assert child.faults.fail_next == 0


# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"fail_next": -1}, "faults.fail_next"),
        ({"fail_next": 1.5}, "faults.fail_next"),
        ({"fail_next": True}, "faults.fail_next"),
        ({"pushback_ms": "1\n2"}, "faults.pushback_ms"),
        ({"pushback_ms": 5}, "faults.pushback_ms"),
        ({"retry_info_seconds": -0.1}, "faults.retry_info_seconds"),
        ({"stall_rate": 1.5}, "faults.stall_rate"),
        ({"stall_seconds": float("inf")}, "faults.stall_seconds"),
        ({"fail_after_messages": -2}, "faults.fail_after_messages"),
    ],
)
def test_bad_retry_fault_values_name_the_field(changes: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Faults(**changes)  # type: ignore[arg-type]
    assert raised.value.path == path


def test_retry_faults_round_trip_through_message_and_command_line() -> None:
    changes: dict[str, object] = {
        "fail_next": 4,
        "pushback_ms": "-abc",
        "retry_info_seconds": 0.5,
        "stall_rate": 0.05,
        "stall_seconds": 0.2,
        "fail_after_messages": 2,
    }
    wanted = Faults(**changes)  # type: ignore[arg-type]
    assert faults_from_fault_config(changes_to_fault_config(changes)) == wanted
    assert faults_from_args(build_parser().parse_args(faults_to_argv(wanted))) == wanted
