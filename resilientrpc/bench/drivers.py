"""What a network scenario drives: variants (channels to compare) and the load loops.

A :class:`Variant` names one way to reach the backends: a plain grpc channel to one
address, grpcio's native ``round_robin`` over all of them (optionally with a service
config of its own, for grpcio's native retries), or a ``ResilientChannel`` with a given
service config. A :class:`Driver` opens variants, warms them up, and runs the two
load loops every scenario is built from: sequential calls, and a fixed number of
concurrent callers for a bounded time. Every loop is bounded in calls *and* in seconds.

The scenarios (:mod:`resilientrpc.bench.network`) decide what to compare and how to
read it; a driver only does the I/O. :class:`SyncDriver` uses threads; the asyncio twin
lives in :mod:`resilientrpc.bench.aio_driver`, so the two cannot drift apart.
"""

from __future__ import annotations

import abc
import collections
import json
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

import resilientrpc
from resilientrpc.bench.fleet import native_target
from resilientrpc.testing import echo_pb2, echo_pb2_grpc

__all__ = [
    "CALL_TIMEOUT",
    "KEY_HEADER",
    "NATIVE_ROUND_ROBIN_OPTIONS",
    "READY_TIMEOUT",
    "REQUEST",
    "WARM_CONCURRENCY",
    "WARM_SECONDS",
    "Driver",
    "Load",
    "Opened",
    "SyncDriver",
    "Variant",
    "merge",
    "native_options",
]

#: Deadline of every measured call, seconds: generous, so only a real failure trips it.
CALL_TIMEOUT = 5.0
#: Seconds a variant has to connect to every backend before the benchmark gives up.
READY_TIMEOUT = 15.0
#: Concurrent callers, and the most seconds, of the warm-up after a variant is ready.
WARM_CONCURRENCY = 4
WARM_SECONDS = 5.0
#: The request header ring_hash hashes; keyed variants send a random value per call.
KEY_HEADER = "x-key"
#: The one request every measured call sends.
REQUEST = echo_pb2.EchoRequest(message="bench")
#: grpcio's own round_robin, the reference for every multi-backend comparison.
NATIVE_ROUND_ROBIN_OPTIONS = (("grpc.lb_policy_name", "round_robin"),)

VariantKind = Literal["plain", "native", "resilient"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """One way to reach the backends, as a row of a comparison names it."""

    label: str
    kind: VariantKind
    addresses: tuple[str, ...]
    #: The service config: the ResilientChannel's, or for ``kind == "native"`` grpcio's
    #: own (``grpc.service_config``; None: round_robin alone).
    config: Mapping[str, Any] | None = None
    #: Send a random :data:`KEY_HEADER` value with every call (for ring_hash).
    keyed: bool = False
    #: The ResilientChannel's OpenTelemetry tracer provider (None: no tracing).
    tracer_provider: Any = None


@dataclass(slots=True)
class Load:
    """What one load loop produced: per-call latencies, who served, failures, wall time."""

    latencies: list[float] = field(default_factory=list)
    backends: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: int = 0
    elapsed: float = 0.0
    #: How long each failed call took (``errors`` of them).
    error_latencies: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Calls that succeeded."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Successful calls per second of wall time (NaN before any time passed)."""
        return self.calls / self.elapsed if self.elapsed > 0 else math.nan

    def share(self, backend: str) -> float:
        """The fraction of successful calls that ``backend`` served."""
        return self.backends[backend] / self.calls if self.calls else math.nan


def merge(loads: Sequence[Load]) -> Load:
    """One load made of several (latencies pooled, wall times added)."""
    total = Load()
    for load in loads:
        total.latencies.extend(load.latencies)
        total.backends.update(load.backends)
        total.errors += load.errors
        total.elapsed += load.elapsed
        total.error_latencies.extend(load.error_latencies)
    return total


def native_options(variant: Variant) -> tuple[tuple[str, str], ...]:
    """grpcio channel options of a native variant: round_robin, and its service config."""
    if variant.config is None:
        return NATIVE_ROUND_ROBIN_OPTIONS
    return (*NATIVE_ROUND_ROBIN_OPTIONS, ("grpc.service_config", json.dumps(variant.config)))


@dataclass(slots=True)
class Opened:
    """A variant with its channel open and warmed up, and the stub that calls it."""

    variant: Variant
    channel: Any
    stub: Any
    #: What the warm-up after opening did (its calls count too where spans are counted).
    warmed: Load = field(default_factory=Load)


def _key_source(seed: int) -> random.Random:
    return random.Random(seed)


class Driver(abc.ABC):
    """Opens variants and runs bounded load loops on them (one twin's I/O)."""

    #: The twin this driver measures: "sync" or "aio".
    name: str = ""
    #: Concurrent callers in the throughput scenario.
    throughput_concurrency: int = 8

    @abc.abstractmethod
    def open(self, variant: Variant, *, warm_calls: int) -> Opened:
        """Open ``variant``, wait until it reaches every backend it should, warm it up."""

    @abc.abstractmethod
    def sequential(
        self, opened: Opened, *, calls: int, seconds: float, timeout: float = CALL_TIMEOUT
    ) -> Load:
        """One caller: up to ``calls`` calls, one after another, for at most ``seconds``.

        Each call has a deadline of ``timeout`` seconds.
        """

    @abc.abstractmethod
    def concurrent(
        self,
        opened: Opened,
        *,
        concurrency: int,
        calls: int,
        seconds: float,
        timeout: float = CALL_TIMEOUT,
    ) -> Load:
        """``concurrency`` callers sharing a budget of ``calls`` calls and ``seconds``."""

    @abc.abstractmethod
    def close(self, opened: Opened) -> None:
        """Close the variant's channel."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what the driver itself holds (an event loop, for the asyncio twin)."""


# ----------------------------------------------------------------------- sync twin


def _sync_loop(
    stub: Any, keyed: bool, calls: int, stop: float, seed: int, load: Load, timeout: float
) -> None:
    """The measured loop of one caller thread; identical for every variant."""
    echo = stub.Echo
    clock = time.perf_counter
    getrandbits = _key_source(seed).getrandbits
    latencies = load.latencies
    served: list[str] = []
    errors = 0
    for _ in range(calls):
        metadata = ((KEY_HEADER, f"{getrandbits(32):08x}"),) if keyed else None
        started = clock()
        try:
            reply = echo(REQUEST, timeout=timeout, metadata=metadata)
        except grpc.RpcError:
            errors += 1
            load.error_latencies.append(clock() - started)
        else:
            latencies.append(clock() - started)
            served.append(reply.backend)
        if started >= stop:
            break
    load.backends.update(served)
    load.errors += errors


class SyncDriver(Driver):
    """The synchronous twin: ``resilientrpc.ResilientChannel`` and ``grpc.Channel``, threads."""

    name = "sync"
    throughput_concurrency = 8

    def __init__(self, *, seed: int = 1) -> None:
        self._seeds = random.Random(seed)

    def open(self, variant: Variant, *, warm_calls: int) -> Opened:
        channel: Any
        if variant.kind == "plain":
            channel = grpc.insecure_channel(variant.addresses[0])
        elif variant.kind == "native":
            channel = grpc.insecure_channel(
                native_target(variant.addresses), options=native_options(variant)
            )
        else:
            channel = resilientrpc.ResilientChannel(
                list(variant.addresses),
                config=dict(variant.config or {}),
                tracer_provider=variant.tracer_provider,
            )
        opened = Opened(variant, channel, echo_pb2_grpc.EchoStub(channel))
        try:
            self._wait_ready(opened)
            opened.warmed = self.concurrent(
                opened, concurrency=WARM_CONCURRENCY, calls=warm_calls, seconds=WARM_SECONDS
            )
        except BaseException:
            self.close(opened)
            raise
        return opened

    def _wait_ready(self, opened: Opened) -> None:
        """Until every backend the variant may use is connected (bounded in time)."""
        variant = opened.variant
        deadline = time.monotonic() + READY_TIMEOUT
        if variant.kind == "resilient":
            channel: resilientrpc.ResilientChannel = opened.channel
            while True:
                statuses = channel.endpoints()
                if len(statuses) >= len(variant.addresses) and all(
                    status.available for status in statuses
                ):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{variant.label}: endpoints not ready: {statuses}")
                time.sleep(0.01)
        # grpc channels: call until every backend has answered at least once.
        wanted = len(variant.addresses) if variant.kind == "native" else 1
        seen: set[str] = set()
        while len(seen) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{variant.label}: only {sorted(seen)} answered")
            reply = opened.stub.Echo(REQUEST, timeout=CALL_TIMEOUT, wait_for_ready=True)
            seen.add(reply.backend)

    def sequential(
        self, opened: Opened, *, calls: int, seconds: float, timeout: float = CALL_TIMEOUT
    ) -> Load:
        load = Load()
        began = time.perf_counter()
        _sync_loop(
            opened.stub,
            opened.variant.keyed,
            calls,
            began + seconds,
            self._seeds.getrandbits(32),
            load,
            timeout,
        )
        load.elapsed = time.perf_counter() - began
        return load

    def concurrent(
        self,
        opened: Opened,
        *,
        concurrency: int,
        calls: int,
        seconds: float,
        timeout: float = CALL_TIMEOUT,
    ) -> Load:
        per_caller = max(1, math.ceil(calls / concurrency))
        loads = [Load() for _ in range(concurrency)]
        seeds = [self._seeds.getrandbits(32) for _ in range(concurrency)]
        start = threading.Barrier(concurrency + 1)
        times: dict[str, float] = {}

        def caller(index: int) -> None:
            start.wait()
            _sync_loop(
                opened.stub,
                opened.variant.keyed,
                per_caller,
                times["stop"],
                seeds[index],
                loads[index],
                timeout,
            )

        threads = [
            threading.Thread(target=caller, args=(index,), name=f"bench-caller-{index}")
            for index in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        times["began"] = time.perf_counter()
        times["stop"] = times["began"] + seconds
        start.wait()
        for thread in threads:
            thread.join()
        total = merge(loads)
        total.elapsed = time.perf_counter() - times["began"]
        return total

    def close(self, opened: Opened) -> None:
        opened.channel.close()
