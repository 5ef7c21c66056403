"""Metrics, both twins: the A66, A96 and per-endpoint instruments against real backends,
read with the SDK's in-memory metric reader.

The channels use ``pick_first`` with the backends in a known order, so the attempt that
fails and the one that succeeds are known.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import resilientrpc
from resilientrpc import events
from resilientrpc.config import (
    ConsecutiveFailures,
    HealthCheckConfig,
    OutlierDetection,
    RoundRobin,
    ServiceConfig,
)
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.metrics import ENDPOINT_STATES, ClientMetrics
from resilientrpc.retry import RetryEvent
from resilientrpc.testing import Backends, echo_pb2, echo_pb2_grpc
from tests.aio_twin import AioHandle
from tests.test_tracing import CALL, ECHO, FAIL_OVER, OpenChannel, config
from tests.twins import ChannelHandle
from tests.waiting import eventually

METHOD = CALL
#: Most calls a test makes to get an endpoint ejected (a bound; it takes a handful).
MAX_CALLS = 200


class Metrics:
    """A MeterProvider read into memory, and the data points of its instruments."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def wait(self, name: str, check: Callable[[list[Any]], bool]) -> Any:
        """The points of ``name`` once ``check`` holds for them (bounded wait)."""
        assert eventually(lambda: check(self.points(name))), (name, self.points(name))
        return self.points(name)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    measured = Metrics()
    yield measured
    measured.provider.shutdown()


def opened(
    open_channel: OpenChannel, targets: Sequence[str], metrics: Metrics, service_config: Any
) -> ChannelHandle:
    handle = open_channel(list(targets), config=service_config, meter_provider=metrics.provider)
    handle.wait_ready(5)
    assert eventually(lambda: all(e.state == "READY" for e in handle.endpoints()))
    return handle


def by_status(points: list[Any]) -> dict[str, Any]:
    return {p.attributes["grpc.status"]: p for p in points}


def total(points: list[Any]) -> int:
    return sum(p.value if hasattr(p, "value") else p.count for p in points)


def totalling(count: int) -> Callable[[list[Any]], bool]:
    """A check for :meth:`Metrics.wait`: the points total ``count``."""
    return lambda points: total(points) == count


STATUS = "resilientrpc.endpoint.status"


def states(points: list[Any], target: str | None = None) -> dict[str, str]:
    """``address -> state`` from the status points (of one ``grpc.target`` if given),
    checking that every endpoint has one series per state and exactly one of them at 1."""
    series: dict[str, dict[str, int]] = {}
    for point in points:
        if target is None or point.attributes["grpc.target"] == target:
            by_state = series.setdefault(point.attributes["server.address"], {})
            by_state[point.attributes["resilientrpc.endpoint.state"]] = point.value
    for by_state in series.values():
        assert sorted(by_state) == sorted(ENDPOINT_STATES) and sum(by_state.values()) == 1
    return {
        address: max(by_state, key=by_state.__getitem__) for address, by_state in series.items()
    }


def test_a_call_that_fails_over_is_two_attempts_and_one_retry(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(2)
    group[0].configure(error_rate=1.0)
    handle = opened(open_channel, group.addresses, metrics, config(FAIL_OVER))
    seen: list[RetryEvent] = []
    handle.channel.add_retry_listener(seen.append)
    assert handle.echo("hi").backend == group[1].name
    target = ",".join(group.addresses)
    (started,) = metrics.wait("grpc.client.attempt.started", lambda p: total(p) == 2)
    assert dict(started.attributes) == {"grpc.method": METHOD, "grpc.target": target}
    attempts = by_status(metrics.wait("grpc.client.attempt.duration", lambda p: total(p) == 2))
    assert sorted(attempts) == ["OK", "UNAVAILABLE"]
    assert attempts["OK"].count == attempts["UNAVAILABLE"].count == 1
    assert dict(attempts["OK"].attributes) == {
        "grpc.method": METHOD,
        "grpc.target": target,
        "grpc.status": "OK",
    }
    (call,) = metrics.wait("grpc.client.call.duration", lambda p: total(p) == 1)
    assert call.attributes["grpc.status"] == "OK"
    # The call took at least both attempts and the backoff between them.
    assert call.sum >= attempts["OK"].sum + attempts["UNAVAILABLE"].sum
    (retries,) = metrics.points("grpc.client.call.retries")
    assert (retries.count, retries.sum) == (1, 1)
    assert dict(retries.attributes) == {"grpc.method": METHOD, "grpc.target": target}
    (delay,) = metrics.points("grpc.client.call.retry_delay")
    assert eventually(lambda: [e.kind for e in seen] == ["retry"])
    assert (delay.count, delay.sum) == (1, pytest.approx(seen[0].delay))
    assert 0.0 < delay.sum <= 0.02
    assert metrics.points("grpc.client.call.hedges") == []


def test_a_call_that_succeeds_first_time_has_no_retry_points(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(1)
    group[0].configure(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL)
    handle = opened(open_channel, group.addresses, metrics, config())
    with pytest.raises(grpc.RpcError):
        handle.echo("x")
    (call,) = metrics.wait("grpc.client.call.duration", lambda p: total(p) == 1)
    assert call.attributes["grpc.status"] == "INTERNAL"
    (attempt,) = metrics.wait("grpc.client.attempt.duration", lambda p: total(p) == 1)
    assert attempt.attributes["grpc.status"] == "INTERNAL"
    for name in ("retries", "hedges", "retry_delay"):
        assert metrics.points(f"grpc.client.call.{name}") == []


def test_a_hedged_call_counts_one_hedge(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(2)
    group[0].configure(stall_rate=1.0, stall_seconds=2.0)
    hedging = {"maxAttempts": 2, "hedgingDelay": "0.05s"}
    handle = opened(open_channel, group.addresses, metrics, config(hedging, "hedgingPolicy"))
    assert handle.echo("x", timeout=5).backend == group[1].name
    metrics.wait("grpc.client.call.duration", lambda p: total(p) == 1)
    (hedges,) = metrics.points("grpc.client.call.hedges")
    assert (hedges.count, hedges.sum) == (1, 1)
    assert metrics.points("grpc.client.call.retries") == []
    attempts = by_status(metrics.wait("grpc.client.attempt.duration", lambda p: total(p) == 2))
    assert sorted(attempts) == ["CANCELLED", "OK"]  # the stalled loser is cancelled


def test_outstanding_calls_per_endpoint(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(2)
    group[0].configure(hang=True)
    handle = opened(open_channel, group.addresses, metrics, config())
    failed: list[BaseException] = []

    def hung() -> None:
        try:
            handle.echo("x", timeout=1.5)
        except grpc.RpcError as error:
            failed.append(error)

    caller = threading.Thread(target=hung, name="hung-call")
    caller.start()
    try:
        points = metrics.wait(
            "resilientrpc.endpoint.outstanding",
            lambda p: any(q.value == 1 for q in p),
        )
        outstanding = {p.attributes["server.address"]: p.value for p in points}
        assert outstanding == {group[0].address: 1, group[1].address: 0}
    finally:
        caller.join(timeout=5)
    assert len(failed) == 1


def test_ejections_are_counted_per_endpoint(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(3)
    group[0].configure(error_rate=1.0)
    outliers = OutlierDetection(
        interval=0.1,
        base_ejection_time=5.0,
        max_ejection_time=10.0,
        max_ejection_percent=50,
        consecutive_failures=ConsecutiveFailures(count=3),
    )
    service_config = ServiceConfig(load_balancing=RoundRobin(), outlier_detection=outliers)
    handle = open_channel(group.addresses, config=service_config, meter_provider=metrics.provider)
    handle.wait_ready(5)
    ejected = False
    deadline = time.monotonic() + 10
    for _ in range(MAX_CALLS):
        ejected = any(s.ejected for s in handle.endpoints())
        if ejected or time.monotonic() > deadline:
            break
        with suppress(grpc.RpcError):
            handle.echo("x", timeout=1.0)
    assert ejected
    assert eventually(lambda: metrics.points("resilientrpc.endpoint.ejections") != [])
    (ejections,) = metrics.points("resilientrpc.endpoint.ejections")
    assert ejections.value == 1
    assert ejections.attributes["server.address"] == group[0].address
    status = next(s for s in handle.endpoints() if s.address == group[0].address)
    assert [e.kind for e in status.events].count(events.EJECTED) == 1
    assert states(metrics.points(STATUS))[group[0].address] == "ejected"


def test_endpoint_status_follows_the_health_check(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(2)
    service_config = ServiceConfig(
        load_balancing=RoundRobin(), health_check=HealthCheckConfig(service_name="")
    )
    handle = open_channel(group.addresses, config=service_config, meter_provider=metrics.provider)
    handle.wait_ready(5)
    serving = dict.fromkeys(group.addresses, "serving")
    metrics.wait(STATUS, lambda p: states(p) == serving)
    group[0].configure(health="NOT_SERVING")
    metrics.wait(STATUS, lambda p: states(p) == {**serving, group[0].address: "not_serving"})
    assert handle.echo("x").backend == group[1].name  # the channel goes on, on the other one
    group[0].configure(health="SERVING")
    metrics.wait(STATUS, lambda p: states(p) == serving)


#: A method no stub registered: the backends answer it UNIMPLEMENTED.
GENERIC = "/x.Y/Z"


def generic_call(handle: ChannelHandle, method: str) -> grpc.StatusCode:
    """Call ``method`` as a generic client does - ``channel.unary_unary(method)``, without
    ``_registered_method`` - on either twin; the call's status code."""
    channel: Any = handle.channel
    request = echo_pb2.EchoRequest(message="x")
    kwargs = {
        "request_serializer": echo_pb2.EchoRequest.SerializeToString,
        "response_deserializer": echo_pb2.EchoReply.FromString,
    }
    if isinstance(handle, AioHandle):

        async def run() -> grpc.StatusCode:
            try:
                await channel.unary_unary(method, **kwargs)(request, timeout=5)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        return handle.run(run())
    try:
        channel.unary_unary(method, **kwargs)(request, timeout=5)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_only_registered_methods_are_recorded_by_name(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    # gRFC A66: a generic call's method is "other", or a client calling arbitrary method
    # names would make a series per name. The stub's calls keep their full name.
    group = backends(2)
    unimplemented = {**FAIL_OVER, "retryableStatusCodes": ["UNIMPLEMENTED"]}
    service_config = config()
    service_config["methodConfig"] = [{"name": [{"service": "x.Y"}], "retryPolicy": unimplemented}]
    handle = opened(open_channel, group.addresses, metrics, service_config)
    handle.echo("x")
    handle.server_stream("x", 1)
    handle.client_stream(["x"])
    handle.bidi(["x"])
    assert generic_call(handle, GENERIC) is grpc.StatusCode.UNIMPLEMENTED
    target = ",".join(group.addresses)
    stubs = [f"{ECHO}/{name}" for name in ("Echo", "ServerStream", "ClientStream", "BidiStream")]
    started = metrics.wait("grpc.client.attempt.started", totalling(6))
    assert {p.attributes["grpc.method"]: p.value for p in started} == {
        **dict.fromkeys(stubs, 1),
        "other": 2,  # both attempts of the generic call
    }
    status = {**dict.fromkeys(stubs, "OK"), "other": "UNIMPLEMENTED"}
    for name, count in (("attempt", 6), ("call", 5)):
        points = metrics.wait(f"grpc.client.{name}.duration", totalling(count))
        assert {p.attributes["grpc.method"]: dict(p.attributes) for p in points} == {
            method: {"grpc.method": method, "grpc.target": target, "grpc.status": code}
            for method, code in status.items()
        }, name
    for name in ("retries", "retry_delay"):
        (point,) = metrics.points(f"grpc.client.call.{name}")
        assert dict(point.attributes) == {"grpc.method": "other", "grpc.target": target}


def test_metrics_alone_add_the_step_and_record_no_spans(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(1)
    handle = opened(open_channel, group.addresses, metrics, config())
    handle.echo("x")
    channel: Any = handle.channel
    assert channel._tracing is not None
    metrics.wait("grpc.client.call.duration", lambda p: total(p) == 1)


def test_tracing_without_a_meter_provider_records_no_metrics(
    open_channel: OpenChannel, backends: Callable[..., Backends]
) -> None:
    group = backends(1)
    tracer_provider = TracerProvider()
    handle = open_channel(group.addresses, tracer_provider=tracer_provider)
    handle.wait_ready(5)
    handle.echo("x")
    channel: Any = handle.channel
    assert channel._tracing._metrics is None
    tracer_provider.shutdown()


def test_channels_sharing_a_meter_provider_each_report_their_endpoints(
    open_channel: OpenChannel, backends: Callable[..., Backends], metrics: Metrics
) -> None:
    # One meter per provider makes an instrument name once: the second channel's
    # endpoints must not be lost behind the first channel's callbacks.
    first, second = backends(1), backends(1)
    for group in (first, second):
        opened(open_channel, group.addresses, metrics, config())
    points = metrics.points(STATUS)
    for group in (first, second):
        assert states(points, group[0].address) == {group[0].address: "serving"}
    outstanding = metrics.points("resilientrpc.endpoint.outstanding")
    assert sorted(p.attributes["server.address"] for p in outstanding) == sorted(
        first.addresses + second.addresses
    )


class _Endpoints:
    """What a balancer gives the gauges: a ``statuses`` method."""

    def __init__(self, *statuses: EndpointStatus) -> None:
        self.listed = list(statuses)

    def statuses(self) -> list[EndpointStatus]:
        return self.listed


class _Broken:
    """A balancer whose ``statuses`` raises."""

    def statuses(self) -> list[EndpointStatus]:
        raise RuntimeError("no statuses")


def test_the_meter_provider_does_not_keep_a_balancer_alive(
    backends: Callable[..., Backends], metrics: Metrics
) -> None:
    group = backends(1)
    with resilientrpc.ResilientChannel(group.addresses) as channel:
        (status,) = channel.endpoints()
    owner = _Endpoints(status)
    ClientMetrics(metrics.provider, "t", owner.statuses)
    (point,) = metrics.points("resilientrpc.endpoint.outstanding")
    assert point.attributes["server.address"] == group[0].address
    del owner
    gc.collect()
    assert metrics.points("resilientrpc.endpoint.outstanding") == []


def test_an_endpoint_that_cannot_be_observed_does_not_stop_the_others(
    backends: Callable[..., Backends], metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    group = backends(2)
    channel = resilientrpc.ResilientChannel(group.addresses, meter_provider=metrics.provider)
    try:
        assert eventually(lambda: all(s.state == "READY" for s in channel.endpoints()))
        good, bad = channel.endpoints()
        owner = _Endpoints(dataclasses.replace(bad, state="NO_SUCH_STATE"), good)
        ClientMetrics(metrics.provider, "odd", owner.statuses)
        broken = _Broken()
        ClientMetrics(metrics.provider, "broken", broken.statuses)
        with caplog.at_level(logging.DEBUG, logger="resilientrpc.metrics"):
            points = metrics.points(STATUS)
            assert states(points, "odd") == {good.address: "serving"}  # the odd one left out
            assert states(points, ",".join(group.addresses)) == dict.fromkeys(
                group.addresses, "serving"
            )  # the channel's own, from another callback, observed as ever
            outstanding = metrics.points("resilientrpc.endpoint.outstanding")
            assert sorted(
                p.attributes["server.address"]
                for p in outstanding
                if p.attributes["grpc.target"] == "odd"
            ) == sorted([good.address, bad.address])  # a state it cannot name: still counted
            assert not [p for p in points if p.attributes["grpc.target"] == "broken"]
            metrics.points(STATUS)  # a second collection logs quietly
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert sorted(r.getMessage() for r in errors) == [  # once each, however many collections
            "metrics of broken: endpoint list not observed",
            f"metrics of odd: endpoint {bad.address} not observed",
        ]
        assert all(r.exc_info for r in caplog.records if r.name == "resilientrpc.metrics")
        reply = echo_pb2_grpc.EchoStub(channel).Echo(echo_pb2.EchoRequest(message="x"), timeout=5)
        assert reply.message == "x"  # the channel goes on, its metrics too
        metrics.wait("grpc.client.call.duration", lambda p: total(p) == 1)
    finally:
        channel.close()
