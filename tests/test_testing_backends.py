"""resilientrpc.testing against real gRPC servers on 127.0.0.1, through plain channels."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import resilientrpc.testing
from resilientrpc.errors import ConfigError
from resilientrpc.testing import (
    ECHO_SERVICE_NAME,
    LOAD_REPORT_ALIAS_METADATA_KEY,
    LOAD_REPORT_METADATA_KEY,
    Backend,
    BackendProcess,
    BackendStartError,
    Faults,
    LoadReport,
    echo_pb2,
    echo_pb2_grpc,
    faults_pb2,
    faults_pb2_grpc,
    load_report_pb2,
    start_backends,
)
from resilientrpc.testing.faults import (
    apply_fault_config,
    changes_to_fault_config,
    fault_config_from_faults,
    faults_from_fault_config,
)
from resilientrpc.testing.process import thread_states
from resilientrpc.testing.serve import build_parser, faults_from_args, faults_to_argv

# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend("b1", seed=7) as started:
        yield started


@pytest.fixture
def channel(backend: Backend) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(backend.address) as opened:
        yield opened


def echo_stub(channel: grpc.Channel) -> Any:
    return echo_pb2_grpc.EchoStub(channel)


def request(message: str = "hi", count: int = 0) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(message=message, count=count)


def status_of(error: BaseException) -> grpc.StatusCode:
    assert isinstance(error, grpc.Call), error
    return error.code()


def details_of(error: BaseException) -> str:
    assert isinstance(error, grpc.Call), error
    return error.details() or ""


def check_health(channel: grpc.Channel, service: str = "") -> str:
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def handler_threads(name: str) -> list[str]:
    """The live handler threads of the backend named ``name`` (``backend-NAME_N``)."""
    prefix = f"backend-{name}_"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def echo_once(address: str, timeout: float = 5) -> echo_pb2.EchoReply:
    with grpc.insecure_channel(address) as channel:
        reply: echo_pb2.EchoReply = echo_stub(channel).Echo(request(), timeout=timeout)
    return reply


# --- the public surface ------------------------------------------------------------------


def test_public_names_import() -> None:
    for name in resilientrpc.testing.__all__:
        assert getattr(resilientrpc.testing, name) is not None, name


# --- the four call shapes ----------------------------------------------------------------


def test_unary_reports_backend_name(backend: Backend, channel: grpc.Channel) -> None:
    reply = echo_stub(channel).Echo(request("hello"), timeout=5)
    assert (reply.message, reply.backend, reply.index) == ("hello", "b1", 0)
    assert backend.address == f"127.0.0.1:{backend.port}"
    assert backend.port > 0


def test_default_name_is_the_address() -> None:
    with Backend() as unnamed:
        assert unnamed.name == unnamed.address
        assert echo_once(unnamed.address).backend == unnamed.address


def test_server_stream_sends_count_replies(channel: grpc.Channel) -> None:
    replies = list(echo_stub(channel).ServerStream(request("s", count=3), timeout=5))
    assert [(r.message, r.backend, r.index) for r in replies] == [
        ("s", "b1", 0),
        ("s", "b1", 1),
        ("s", "b1", 2),
    ]
    assert len(list(echo_stub(channel).ServerStream(request("s", count=0), timeout=5))) == 1


def test_client_stream_joins_messages(channel: grpc.Channel) -> None:
    reply = echo_stub(channel).ClientStream(iter([request("a"), request("b"), request("c")]))
    assert (reply.message, reply.backend, reply.index) == ("a,b,c", "b1", 3)


def test_bidi_stream_echoes_each_request(channel: grpc.Channel) -> None:
    replies = list(echo_stub(channel).BidiStream(iter([request("x"), request("y")]), timeout=5))
    assert [(r.message, r.backend, r.index) for r in replies] == [("x", "b1", 0), ("y", "b1", 1)]


def test_calls_counts_echo_service_calls_only(backend: Backend, channel: grpc.Channel) -> None:
    stub = echo_stub(channel)
    stub.Echo(request(), timeout=5)
    list(stub.ServerStream(request(count=2), timeout=5))
    stub.ClientStream(iter([request()]), timeout=5)
    list(stub.BidiStream(iter([request()]), timeout=5))
    check_health(channel)
    faults_pb2_grpc.FaultsStub(channel).Configure(faults_pb2.FaultConfig(), timeout=5)
    assert backend.calls == 4


def test_start_backends_names_and_stops_them() -> None:
    with start_backends(3, names=["a", "b", "c"]) as backends:
        assert len(set(backends.addresses)) == 3
        assert [echo_once(address).backend for address in backends.addresses] == ["a", "b", "c"]
        assert backends.calls() == {"a": 1, "b": 1, "c": 1}
    with pytest.raises(ConfigError) as error:
        start_backends(2, names=["only-one"])
    assert error.value.path == "names"


# --- injected faults ---------------------------------------------------------------------


def test_latency_is_applied(backend: Backend, channel: grpc.Channel) -> None:
    backend.configure(latency=0.2)
    started = time.monotonic()
    echo_stub(channel).Echo(request(), timeout=5)
    assert 0.19 <= time.monotonic() - started < 2

    backend.configure(latency=0.05)
    started = time.monotonic()
    assert len(list(echo_stub(channel).ServerStream(request(count=3), timeout=5))) == 3
    assert 0.14 <= time.monotonic() - started < 2  # before each of the three replies


def test_latency_jitter_adds_a_bounded_delay(backend: Backend, channel: grpc.Channel) -> None:
    backend.configure(latency=0.02, latency_jitter=0.05)
    for _ in range(3):
        started = time.monotonic()
        echo_stub(channel).Echo(request(), timeout=5)
        assert 0.019 <= time.monotonic() - started < 1


def test_error_rate_one_fails_every_call_with_the_code(
    backend: Backend, channel: grpc.Channel
) -> None:
    backend.configure(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL)
    stub = echo_stub(channel)
    with pytest.raises(grpc.RpcError) as unary:
        stub.Echo(request(), timeout=5)
    assert status_of(unary.value) is grpc.StatusCode.INTERNAL
    assert "injected fault on b1" in details_of(unary.value)
    with pytest.raises(grpc.RpcError) as stream:
        list(stub.ServerStream(request(count=2), timeout=5))
    assert status_of(stream.value) is grpc.StatusCode.INTERNAL
    with pytest.raises(grpc.RpcError) as bidi:
        list(stub.BidiStream(iter([request()]), timeout=5))
    assert status_of(bidi.value) is grpc.StatusCode.INTERNAL


def test_partial_error_rate_mixes_outcomes(backend: Backend, channel: grpc.Channel) -> None:
    backend.configure(error_rate=0.5)
    outcomes = set()
    for _ in range(40):
        try:
            echo_stub(channel).Echo(request(), timeout=5)
            outcomes.add(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            outcomes.add(status_of(error))
    assert outcomes == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}


def test_hang_hits_the_deadline_and_stop_releases_it() -> None:
    hung = Backend("hung", faults=Faults(hang=True)).start()
    try:
        with grpc.insecure_channel(hung.address) as channel:
            stub = echo_stub(channel)
            with pytest.raises(grpc.RpcError) as error:
                stub.Echo(request(), timeout=0.3)
            assert status_of(error.value) is grpc.StatusCode.DEADLINE_EXCEEDED

            calls_before = hung.calls
            pending = stub.Echo.future(request())  # no deadline: only stop() ends it
            deadline = time.monotonic() + 5
            while hung.calls == calls_before:  # its handler thread is now hanging
                assert time.monotonic() < deadline, "the pending call never reached the backend"
                time.sleep(0.01)
            assert not pending.done()
            handlers_before_stop = handler_threads("hung")
            assert handlers_before_stop, "no handler thread holds the hung call"
            started = time.monotonic()
            hung.stop()
            assert time.monotonic() - started < 3
            with pytest.raises(grpc.RpcError) as released:
                pending.result(timeout=5)
            assert status_of(released.value) in {
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
            }
            assert handler_threads("hung") == []  # stop() released and joined them all
    finally:
        hung.stop()


def test_health_is_served_and_flipped_by_configure(backend: Backend, channel: grpc.Channel) -> None:
    assert check_health(channel, "") == "SERVING"
    assert check_health(channel, ECHO_SERVICE_NAME) == "SERVING"

    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=ECHO_SERVICE_NAME), timeout=5
    )
    try:
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status) == "SERVING"
        backend.configure(health="NOT_SERVING")
        assert (
            health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status) == "NOT_SERVING"
        )
    finally:
        watch.cancel()
    assert check_health(channel, "") == "NOT_SERVING"
    backend.configure(health="SERVICE_UNKNOWN")
    assert check_health(channel, ECHO_SERVICE_NAME) == "SERVICE_UNKNOWN"
    assert backend.faults.health == "SERVICE_UNKNOWN"


def test_load_report_trailer_parses_back(backend: Backend, channel: grpc.Channel) -> None:
    report = LoadReport(
        cpu_utilization=0.25,
        application_utilization=0.5,
        mem_utilization=0.125,
        eps=2,
        rps_fractional=40,
    )
    backend.configure(load_report=report)
    _, call = echo_stub(channel).Echo.with_call(request(), timeout=5)
    trailers = dict(call.trailing_metadata())
    parsed = load_report_pb2.OrcaLoadReport.FromString(trailers[LOAD_REPORT_ALIAS_METADATA_KEY])
    assert (
        parsed.cpu_utilization,
        parsed.application_utilization,
        parsed.mem_utilization,
        parsed.rps_fractional,
        parsed.eps,
    ) == (0.25, 0.5, 0.125, 40.0, 2.0)
    assert parsed.SerializeToString() == report.serialize()
    # grpcio's core consumes the ORCA key itself and never hands it to Python code; this
    # is why the alias exists. If a grpcio release starts publishing it, revisit the alias.
    assert LOAD_REPORT_METADATA_KEY not in trailers

    backend.configure(error_rate=1.0)  # error replies carry the report too
    with pytest.raises(grpc.RpcError) as error:
        echo_stub(channel).Echo(request(), timeout=5)
    assert isinstance(error.value, grpc.Call)
    failed_trailers = dict(error.value.trailing_metadata() or ())
    alias = failed_trailers[LOAD_REPORT_ALIAS_METADATA_KEY]
    assert load_report_pb2.OrcaLoadReport.FromString(alias) == parsed

    backend.configure(load_report=None, error_rate=0.0)
    _, call = echo_stub(channel).Echo.with_call(request(), timeout=5)
    assert LOAD_REPORT_ALIAS_METADATA_KEY not in dict(call.trailing_metadata())


def test_load_report_bytes_match_the_orca_wire_format() -> None:
    # Field numbers of xds.data.orca.v3.OrcaLoadReport: cpu 1, mem 2, rps_fractional 6,
    # eps 7, application_utilization 9; all doubles (wire type 1, little-endian).
    encoded = LoadReport(
        cpu_utilization=0.5,
        mem_utilization=0.5,
        rps_fractional=0.5,
        eps=0.5,
        application_utilization=0.5,
    ).serialize()
    half = b"\x00\x00\x00\x00\x00\x00\xe0\x3f"
    assert encoded == b"".join(bytes([number << 3 | 1]) + half for number in (1, 2, 6, 7, 9))


def test_x_echo_metadata_comes_back_both_ways(channel: grpc.Channel) -> None:
    metadata = (("x-echo-trace", "abc"), ("x-echo-blob-bin", b"\x00\x01"), ("other", "no"))
    _, call = echo_stub(channel).Echo.with_call(request(), metadata=metadata, timeout=5)
    for received in (dict(call.initial_metadata()), dict(call.trailing_metadata())):
        assert received["x-echo-trace"] == "abc"
        assert received["x-echo-blob-bin"] == b"\x00\x01"
        assert "other" not in received

    stream = echo_stub(channel).ServerStream(request(count=2), metadata=metadata, timeout=5)
    assert len(list(stream)) == 2
    assert dict(stream.initial_metadata())["x-echo-trace"] == "abc"
    assert dict(stream.trailing_metadata())["x-echo-trace"] == "abc"


def test_faults_rpc_reconfigures_an_in_process_backend(
    backend: Backend, channel: grpc.Channel
) -> None:
    faults_stub = faults_pb2_grpc.FaultsStub(channel)
    effective = faults_stub.Configure(
        faults_pb2.FaultConfig(error_rate=1.0, error_code=grpc.StatusCode.ABORTED.value[0]),
        timeout=5,
    )
    assert effective.error_rate == 1.0
    assert effective.HasField("latency_seconds")  # the reply is the full config
    assert backend.faults.error_code is grpc.StatusCode.ABORTED
    with pytest.raises(grpc.RpcError) as error:
        echo_stub(channel).Echo(request(), timeout=5)
    assert status_of(error.value) is grpc.StatusCode.ABORTED

    with pytest.raises(grpc.RpcError) as invalid:
        faults_stub.Configure(faults_pb2.FaultConfig(error_rate=3.0), timeout=5)
    assert status_of(invalid.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "faults.error_rate" in details_of(invalid.value)
    assert backend.faults.error_rate == 1.0


# --- fault values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"error_rate": 1.5}, "faults.error_rate"),
        ({"error_rate": -0.1}, "faults.error_rate"),
        ({"latency": -1.0}, "faults.latency"),
        ({"latency": float("nan")}, "faults.latency"),
        ({"latency_jitter": -0.5}, "faults.latency_jitter"),
        ({"error_code": grpc.StatusCode.OK}, "faults.error_code"),
        ({"error_code": 14}, "faults.error_code"),
        ({"health": "BROKEN"}, "faults.health"),
        ({"hang": "yes"}, "faults.hang"),
        ({"load_report": {"cpu_utilization": 1.0}}, "faults.load_report"),
    ],
)
def test_bad_faults_raise_config_error_naming_the_field(
    changes: dict[str, object], path: str
) -> None:
    with pytest.raises(ConfigError) as from_constructor:
        Faults(**changes)  # type: ignore[arg-type]  # bad on purpose
    assert from_constructor.value.path == path

    with Backend() as live:
        with pytest.raises(ConfigError) as from_configure:
            live.configure(**changes)
        assert from_configure.value.path == path
        assert live.faults == Faults()  # nothing changed


def test_configure_rejects_unknown_fields() -> None:
    with Backend() as live:
        with pytest.raises(ConfigError) as error:
            live.configure(latency=0.1, bogus=1)
        assert error.value.path == "faults.bogus"
        assert live.faults == Faults()
    with pytest.raises(ConfigError) as remote:
        BackendProcess().configure(bogus=1)  # validated before anything is sent
    assert remote.value.path == "faults.bogus"


def test_bad_load_report_names_the_field() -> None:
    with pytest.raises(ConfigError) as error:
        Faults(load_report=LoadReport(cpu_utilization=-1.0))
    assert error.value.path == "faults.load_report.cpu_utilization"


def test_fault_config_round_trips() -> None:
    faults = Faults(
        latency=0.5,
        latency_jitter=0.25,
        error_rate=0.125,
        error_code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        hang=True,
        health="NOT_SERVING",
        load_report=LoadReport(cpu_utilization=0.5, eps=3.0),
    )
    assert faults_from_fault_config(fault_config_from_faults(faults)) == faults
    assert apply_fault_config(Faults(), changes_to_fault_config({"latency": 0.5})) == Faults(
        latency=0.5
    )
    only_cpu = apply_fault_config(faults, faults_pb2.FaultConfig(cpu_utilization=0.75))
    assert only_cpu.load_report == LoadReport(cpu_utilization=0.75, eps=3.0)
    assert apply_fault_config(faults, changes_to_fault_config({"load_report": None})) == Faults(
        latency=0.5,
        latency_jitter=0.25,
        error_rate=0.125,
        error_code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        hang=True,
        health="NOT_SERVING",
    )


def test_command_line_round_trips() -> None:
    faults = Faults(
        latency=0.1,
        error_rate=0.3,
        error_code=grpc.StatusCode.INTERNAL,
        health="NOT_SERVING",
        load_report=LoadReport(),
    )
    args = build_parser().parse_args(faults_to_argv(faults))
    assert faults_from_args(args) == faults
    assert faults_from_args(build_parser().parse_args([])) == Faults()


# --- backends in child processes ---------------------------------------------------------


def test_process_serves_reconfigures_pauses_and_resumes() -> None:
    with BackendProcess(
        "child", faults=Faults(load_report=LoadReport(cpu_utilization=0.5))
    ) as child:
        assert child.pid > 0
        with grpc.insecure_channel(child.address) as channel:
            stub = echo_stub(channel)
            reply, call = stub.Echo.with_call(request(), timeout=5)
            assert reply.backend == "child"
            sent = dict(call.trailing_metadata())[LOAD_REPORT_ALIAS_METADATA_KEY]
            assert load_report_pb2.OrcaLoadReport.FromString(sent).cpu_utilization == 0.5

            effective = child.configure(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL)
            assert effective.error_rate == 1.0
            with pytest.raises(grpc.RpcError) as error:
                stub.Echo(request(), timeout=5)
            assert status_of(error.value) is grpc.StatusCode.INTERNAL
            child.configure(error_rate=0.0, health="NOT_SERVING")
            assert child.faults.health == "NOT_SERVING"
            assert check_health(channel) == "NOT_SERVING"

            child.pause()
            with pytest.raises(grpc.RpcError) as paused:
                stub.Echo(request(), timeout=0.5)
            assert status_of(paused.value) is grpc.StatusCode.DEADLINE_EXCEEDED
            child.resume()
            assert stub.Echo(request(), timeout=5).backend == "child"
    assert child.returncode == 0


def test_a_call_right_after_pause_is_never_answered() -> None:
    """pause() returns once the child is stopped, resume() once it runs again; every time.

    A signal takes effect when the kernel schedules the child, so each round checks what
    the kernel reports (where there is /proc) and that a call sent at once goes unanswered.
    """
    with BackendProcess("child") as child, grpc.insecure_channel(child.address) as channel:
        stub = echo_stub(channel)
        assert stub.Echo(request(), timeout=5).backend == "child"
        for _ in range(12):
            child.pause()
            states = thread_states(child.pid)
            assert states is None or set(states) <= {"T", "t"}, states
            with pytest.raises(grpc.RpcError) as paused:
                stub.Echo(request(), timeout=0.1)
            assert status_of(paused.value) is grpc.StatusCode.DEADLINE_EXCEEDED
            child.resume()
            states = thread_states(child.pid)
            assert states is None or not set(states) & {"T", "t"}, states
            assert stub.Echo(request(), timeout=5).backend == "child"


def test_process_kill_makes_calls_unavailable() -> None:
    child = BackendProcess().start()
    try:
        with grpc.insecure_channel(child.address) as channel:
            stub = echo_stub(channel)
            assert stub.Echo(request(), timeout=5).backend == child.address
            child.kill()
            assert child.returncode == -9
            with pytest.raises(grpc.RpcError) as error:
                stub.Echo(request(), timeout=5)
            assert status_of(error.value) is grpc.StatusCode.UNAVAILABLE
    finally:
        child.stop()


def test_process_that_cannot_listen_reports_its_stderr(backend: Backend) -> None:
    taken = BackendProcess("clash", port=backend.port)
    with pytest.raises(BackendStartError) as error:
        taken.start()
    assert "clash" in str(error.value)
    assert "stderr" in str(error.value)
