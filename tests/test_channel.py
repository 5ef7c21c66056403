"""The channel scenario suite, run against both twins on real backends on 127.0.0.1."""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from resilientrpc import ConfigError
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.testing import Backend, BackendProcess, Backends, Faults, LoadReport
from tests.threads import snapshot, threads_left
from tests.twins import ChannelHandle, Twin

Open = Callable[..., ChannelHandle]
Start = Callable[..., Backends]


def lb(name: str, **settings: object) -> dict[str, object]:
    return {"loadBalancingConfig": [{name: settings}]}


def wait_all_available(handle: ChannelHandle, timeout: float = 5.0) -> None:
    """Wait until every endpoint can take traffic (distribution tests need all of them)."""
    deadline = time.monotonic() + timeout
    while not all(s.available for s in handle.endpoints()):
        assert time.monotonic() < deadline, handle.endpoints()
        time.sleep(0.01)


def wait_endpoints(
    handle: ChannelHandle,
    condition: Callable[[list[EndpointStatus]], bool],
    timeout: float = 5.0,
) -> list[EndpointStatus]:
    """Poll the endpoint snapshot until ``condition`` holds; fail (showing it) at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = handle.endpoints()
        if condition(statuses):
            return statuses
        assert time.monotonic() < deadline, statuses
        time.sleep(0.01)


def shares(handle: ChannelHandle, calls: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(calls):
        counts[handle.echo().backend] += 1
    return counts


# -- call shapes --------------------------------------------------------------------------


def test_all_four_call_shapes_with_metadata_both_ways(open_channel: Open, backends: Start) -> None:
    group = backends(2, names=["b0", "b1"])
    handle = open_channel(group.addresses)
    metadata = [("x-echo-trace", "abc"), ("x-plain", "dropped")]
    reply, initial, trailing = handle.echo_with_call("hi", metadata=metadata)
    assert reply.message == "hi" and reply.backend in {"b0", "b1"}
    assert ("x-echo-trace", "abc") in list(initial)
    assert ("x-echo-trace", "abc") in list(trailing)
    replies = handle.server_stream("s", 4, metadata=metadata)
    assert [r.index for r in replies] == [0, 1, 2, 3]
    assert len({r.backend for r in replies}) == 1
    reply = handle.client_stream(["a", "b", "c"])
    assert reply.message == "a,b,c" and reply.index == 3
    assert [r.message for r in handle.bidi(["x", "y", "z"])] == ["x", "y", "z"]


def test_status_code_and_details_pass_through(open_channel: Open, backends: Start) -> None:
    group = backends(
        1, names=["bad"], faults=Faults(error_rate=1.0, error_code=grpc.StatusCode.NOT_FOUND)
    )
    handle = open_channel(group.addresses)
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo()
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "bad" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        handle.server_stream("s", 2)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    # grpc wakes a stream's reader before it runs the call's done-callbacks, so the
    # second outcome may be recorded a moment after the error surfaced.
    [status] = wait_endpoints(handle, lambda s: s[0].failures == 2 and s[0].outstanding == 0)
    assert status.last_error is not None and "NOT_FOUND" in status.last_error


def test_deadline_exceeded(open_channel: Open, backends: Start) -> None:
    group = backends(1, faults=Faults(latency=0.5))
    handle = open_channel(group.addresses)
    wait_all_available(handle)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=0.1)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.45
    assert handle.endpoints()[0].outstanding == 0


def test_method_config_timeout_applies(open_channel: Open, backends: Start) -> None:
    group = backends(1, faults=Faults(latency=0.5))
    config = {
        "methodConfig": [{"name": [{"service": "resilientrpc.echo.v1.Echo"}], "timeout": "0.1s"}]
    }
    handle = open_channel(group.addresses, config=config)
    wait_all_available(handle)
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=None)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancelling_a_stream_releases_its_slot(open_channel: Open, backends: Start) -> None:
    group = backends(1, faults=Faults(latency=0.02))
    handle = open_channel(group.addresses)
    code = handle.cancel_server_stream_after("s", 1000, read=2)
    assert code is grpc.StatusCode.CANCELLED
    deadline = time.monotonic() + 2
    while handle.endpoints()[0].outstanding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.endpoints()[0].outstanding == 0


# -- distribution per strategy ----------------------------------------------------------


def test_round_robin_is_exactly_even(open_channel: Open, backends: Start) -> None:
    """Once every backend is READY the picker stays put, and its rotation is exact."""
    group = backends(3, names=["b0", "b1", "b2"])
    handle = open_channel(group.addresses, config=lb("round_robin"))
    wait_all_available(handle)
    assert shares(handle, 600) == {"b0": 200, "b1": 200, "b2": 200}


def test_static_weights_are_proportional_within_10_percent(
    open_channel: Open, backends: Start
) -> None:
    group = backends(3, names=["b0", "b1", "b2"])
    weights = dict(zip(group.addresses, [1, 2, 5], strict=True))
    handle = open_channel(group.addresses, config=lb("weighted_round_robin", weights=weights))
    wait_all_available(handle)
    counts = shares(handle, 800)
    for name, weight in zip(["b0", "b1", "b2"], [1, 2, 5], strict=True):
        expected = 800 * weight / 8
        assert abs(counts[name] - expected) <= expected * 0.10, counts


def test_orca_load_reports_shift_traffic(open_channel: Open, backends: Start) -> None:
    group = backends(2, names=["busy", "idle"])
    group[0].configure(load_report=LoadReport(cpu_utilization=0.9, rps_fractional=100))
    group[1].configure(load_report=LoadReport(cpu_utilization=0.1, rps_fractional=100))
    config = lb("weighted_round_robin", blackoutPeriod="0s", weightUpdatePeriod="0.1s")
    handle = open_channel(group.addresses, config=config)
    wait_all_available(handle)
    shares(handle, 20)  # both report at least once

    def orca_weights_in(statuses: list[EndpointStatus]) -> bool:
        """A weight refresh has turned both load reports into weights."""
        weight = {s.address: s.weight for s in statuses}
        busy, idle = weight[group[0].address], weight[group[1].address]
        return busy > 0 and idle > 5 * busy

    wait_endpoints(handle, orca_weights_in)
    counts = shares(handle, 400)
    # weights 100/0.9 = 111 vs 100/0.1 = 1000: the idle backend should take ~90 %.
    assert counts["idle"] > 0.8 * 400, counts
    weights = {s.address: s.weight for s in handle.endpoints()}
    assert weights[group[1].address] > 5 * weights[group[0].address]


def test_ring_hash_same_key_same_backend(open_channel: Open, backends: Start) -> None:
    group = backends(4, names=["b0", "b1", "b2", "b3"])
    handle = open_channel(group.addresses, config=lb("ring_hash", requestHashHeader="x-user"))
    wait_all_available(handle)
    owners: dict[str, set[str]] = collections.defaultdict(set)
    for round_ in range(3):
        for index in range(40):
            reply = handle.echo(metadata=[("x-user", f"user-{index}")])
            owners[f"user-{index}"].add(reply.backend)
        del round_
    assert all(len(backends_) == 1 for backends_ in owners.values())
    assert len({next(iter(b)) for b in owners.values()}) >= 3  # keys spread over the ring
    # A backend going away moves only its own keys.
    lost = group[0]
    lost.stop()
    wait_endpoints(handle, lambda s: not s[0].available)
    moved = 0
    for key, before in owners.items():
        now = handle.echo(metadata=[("x-user", key)]).backend
        if now != next(iter(before)):
            moved += 1
            assert next(iter(before)) == "b0"
    assert moved == sum(1 for b in owners.values() if b == {"b0"})


@pytest.mark.parametrize("strategy", ["least_request", "peak_ewma"])
def test_load_aware_strategies_avoid_a_slow_backend(
    open_channel: Open, backends: Start, strategy: str
) -> None:
    group = backends(3, names=["slow", "fast1", "fast2"])
    group[0].configure(latency=0.05)
    handle = open_channel(group.addresses, config=lb(strategy))
    wait_all_available(handle)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def work() -> None:
        for _ in range(40):
            name = handle.echo().backend
            with lock:
                counts[name] += 1

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(work) for _ in range(6)]:
            future.result()
    total = sum(counts.values())
    assert total == 240
    assert counts["slow"] < total / 3 * 0.5, counts  # clearly less than round robin's third


def test_pick_first_fails_over_in_order(open_channel: Open, backends: Start) -> None:
    group = backends(3, names=["first", "second", "third"])
    handle = open_channel(group.addresses, config=lb("pick_first"))
    wait_all_available(handle)
    assert set(shares(handle, 20)) == {"first"}
    group[0].stop()
    wait_endpoints(handle, lambda s: not s[0].available)
    assert set(shares(handle, 20)) == {"second"}


def test_random_reaches_every_backend(open_channel: Open, backends: Start) -> None:
    group = backends(3, names=["b0", "b1", "b2"])
    handle = open_channel(group.addresses, config=lb("random"))
    wait_all_available(handle)
    counts = shares(handle, 300)
    assert set(counts) == {"b0", "b1", "b2"} and min(counts.values()) > 50


# -- concurrency, availability, lifetime ------------------------------------------------


def test_many_threads_every_call_accounted_for(open_channel: Open, backends: Start) -> None:
    group = backends(3, names=["b0", "b1", "b2"], faults=Faults(error_rate=0.2))
    handle = open_channel(group.addresses, config=lb("least_request"))
    wait_all_available(handle)
    results: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            try:
                handle.echo()
                outcome = "ok"
            except grpc.RpcError as error:
                outcome = error.code().name
            with lock:
                results[outcome] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results.values()) == 400
    assert set(results) <= {"ok", "UNAVAILABLE"} and results["UNAVAILABLE"] > 0
    statuses = handle.endpoints()
    assert sum(s.calls for s in statuses) == 400
    assert sum(s.failures for s in statuses) == results["UNAVAILABLE"]
    assert all(s.outstanding == 0 for s in statuses)
    assert sum(group.calls().values()) == 400


def test_no_endpoint_fails_at_once_naming_addresses(open_channel: Open, backends: Start) -> None:
    group = backends(2)
    addresses = group.addresses
    group.stop()
    handle = open_channel(addresses)
    deadline = time.monotonic() + 5
    while True:
        try:
            handle.echo(timeout=2)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNAVAILABLE and "no endpoint" in error.details():
                break
        assert time.monotonic() < deadline, handle.endpoints()
        time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=2)
    assert time.monotonic() - started < 0.5  # at once, not at the deadline
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    details = caught.value.details()
    for address in addresses:  # "address (what went wrong with it)" for each
        assert re.search(re.escape(address) + r" \([^()]+\)", details), details


def test_method_config_wait_for_ready_applies(open_channel: Open, backends: Start) -> None:
    """``waitForReady`` fills in a call's own: such calls wait through TRANSIENT_FAILURE."""
    group = backends(1)
    addresses = group.addresses
    group.stop()
    config = {
        "methodConfig": [{"name": [{"service": "resilientrpc.echo.v1.Echo"}], "waitForReady": True}]
    }
    handle = open_channel(addresses, config=config)
    wait_endpoints(handle, lambda s: s[0].state == "TRANSIENT_FAILURE")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=0.3)  # waits for an endpoint until its deadline
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=5, wait_for_ready=False)  # the caller's own choice wins
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 0.5


def test_wait_for_ready_waits_for_an_endpoint(
    open_channel: Open, backends: Start, backend: Callable[..., object]
) -> None:
    group = backends(1)
    port = group[0].port
    address = group[0].address
    group.stop()
    handle = open_channel([address])
    # Nothing listening: a wait_for_ready call waits until its deadline...
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo(timeout=0.5, wait_for_ready=True)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # ...and succeeds once a backend comes up while it waits.
    revived: list[Backend] = []
    failed: list[BaseException] = []

    def revive() -> None:
        try:
            revived.append(Backend("revived", port=port).start())
        except Exception as error:  # reported by the test thread below
            failed.append(error)

    timer = threading.Timer(0.3, revive)
    timer.start()
    try:
        try:
            reply = handle.echo(timeout=10, wait_for_ready=True)
        except grpc.RpcError:
            timer.join()
            if failed:
                pytest.fail(
                    f"could not start a backend again on the just-released port {port} "
                    f"(another process may have taken it): {failed[0]!r}"
                )
            raise
        assert reply.backend == "revived"
    finally:
        timer.join()
        for b in revived:
            b.stop()


def test_channel_ready_and_endpoint_snapshot(open_channel: Open, backends: Start) -> None:
    group = backends(2)
    handle = open_channel(group.addresses)
    wait_all_available(handle)
    handle.echo()
    statuses = handle.endpoints()
    assert [s.address for s in statuses] == group.addresses
    assert all(s.state == "READY" and s.available for s in statuses)
    assert sum(s.calls for s in statuses) == 1
    assert any(s.latency_ms is not None for s in statuses)


def test_close_stops_every_thread(twin: Twin, backends: Start) -> None:
    """Every thread the channel's life started ends, named or not (grpc's own included)."""
    group = backends(3)
    before = snapshot()
    handle = twin.open(group.addresses)
    wait_all_available(handle)
    handle.echo()
    handle.close()
    handle.close()  # idempotent
    group.stop()  # the backends' handler threads end with them
    assert threads_left(before) == []


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "config", "path"),
    [
        ([], None, "targets"),
        ("", None, "targets"),
        (["127.0.0.1"], None, "targets[0]"),
        (["127.0.0.1:1", "localhost:notaport"], None, "targets[1]"),
        (["127.0.0.1:1", "127.0.0.1:1"], None, "targets[1]"),
        ("ipv4:127.0.0.1:1,::1:2", None, "targets[1]"),
        ("unix:/tmp/sock", None, "targets"),
        (["127.0.0.1:1"], {"loadBalancingConfg": []}, "loadBalancingConfg"),
        (["127.0.0.1:1"], lb("ring_hash"), "loadBalancingConfig[0].ring_hash.requestHashHeader"),
        (
            ["127.0.0.1:1"],
            lb("weighted_round_robin", weights={"127.0.0.1:1": -2}),
            'loadBalancingConfig[0].weighted_round_robin.weights["127.0.0.1:1"]',
        ),
        (["127.0.0.1:1"], {"loadBalancingConfig": [{"no_such_policy": {}}]}, "loadBalancingConfig"),
        (
            ["127.0.0.1:1"],
            {"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 1}}]},
            "methodConfig[0].retryPolicy.maxAttempts",
        ),
        (["127.0.0.1:1"], "{not json", "config"),
    ],
)
def test_bad_input_names_the_field_before_anything_starts(
    open_channel: Open, targets: object, config: object, path: str
) -> None:
    before = snapshot()
    with pytest.raises(ConfigError) as caught:
        open_channel(targets, config=config)
    assert caught.value.path == path, str(caught.value)
    assert snapshot() == before  # not a single thread started, named or not


def test_bad_options_and_credentials(open_channel: Open) -> None:
    with pytest.raises(ConfigError) as caught:
        open_channel(["127.0.0.1:1"], options=[("grpc.ok", 1), "nope"])
    assert caught.value.path == "options[1]"
    with pytest.raises(ConfigError) as caught:
        open_channel(["127.0.0.1:1"], credentials="tls please")
    assert caught.value.path == "credentials"


def test_dns_target_balances_over_what_the_name_resolves_to(
    open_channel: Open, backends: Start
) -> None:
    group = backends(1, names=["only"])
    handle = open_channel(f"dns:///localhost:{group[0].port}")
    assert handle.echo(timeout=5).backend == "only"
    addresses = [s.address for s in handle.endpoints()]
    assert group.addresses[0] in addresses


def test_a_killed_backend_process_is_left_out(open_channel: Open) -> None:
    """kill -9 of a real backend process: the channel notices and sends elsewhere."""
    processes = [BackendProcess(f"p{i}").start() for i in range(3)]
    try:
        handle = open_channel([p.address for p in processes], config=lb("round_robin"))
        wait_all_available(handle)
        assert set(shares(handle, 30)) == {"p0", "p1", "p2"}
        processes[0].kill()
        # READY -> IDLE (connection lost) -> CONNECTING -> TRANSIENT_FAILURE (refused).
        deadline = time.monotonic() + 5
        while handle.endpoints()[0].state != "TRANSIENT_FAILURE":
            assert time.monotonic() < deadline, handle.endpoints()
            time.sleep(0.02)
        assert not handle.endpoints()[0].available
        counts = shares(handle, 30)
        assert set(counts) == {"p1", "p2"} and sum(counts.values()) == 30
    finally:
        for process in processes:
            process.stop()


def test_method_message_size_limits(open_channel: Open, backends: Start) -> None:
    group = backends(1, names=["b"])
    service = {"service": "resilientrpc.echo.v1.Echo"}
    config = {
        "methodConfig": [
            {"name": [service], "maxRequestMessageBytes": 100, "maxResponseMessageBytes": 60}
        ]
    }
    handle = open_channel(group.addresses, config=config)
    wait_all_available(handle)
    assert handle.echo("small").message == "small"
    calls_before = group[0].calls
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo("x" * 200)  # never sent
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maxRequestMessageBytes" in caught.value.details()
    assert group[0].calls == calls_before
    with pytest.raises(grpc.RpcError) as caught:
        handle.echo("y" * 70)  # sent, but its echo is too large to accept
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maxResponseMessageBytes" in caught.value.details()
    assert group[0].calls == calls_before + 1
