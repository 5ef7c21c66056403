"""The asyncio twin's driver: ``resilientrpc.aio.ResilientChannel`` against ``grpc.aio``.

The same variants and load loops as :class:`~resilientrpc.bench.drivers.SyncDriver`,
with coroutines instead of threads: concurrent callers are tasks on one event loop,
which this driver owns and runs only while it measures (``grpc.aio`` channels belong to
the loop that created them). ``resilientrpc.aio`` is imported only when this driver is
built; :func:`aio_twin_available` says whether it exists.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import math
import random
import time
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, TypeVar

import grpc
import grpc.aio

from resilientrpc.bench.drivers import (
    CALL_TIMEOUT,
    KEY_HEADER,
    READY_TIMEOUT,
    REQUEST,
    WARM_CONCURRENCY,
    WARM_SECONDS,
    Driver,
    Load,
    Opened,
    Variant,
    merge,
    native_options,
)
from resilientrpc.bench.fleet import native_target
from resilientrpc.testing import echo_pb2_grpc

__all__ = ["AIO_MODULE", "AioDriver", "aio_twin_available"]

#: Where the asyncio twin of the channel lives.
AIO_MODULE = "resilientrpc.aio"

T = TypeVar("T")


def aio_twin_available() -> bool:
    """Whether ``resilientrpc.aio.ResilientChannel`` can be imported."""
    try:
        if importlib.util.find_spec(AIO_MODULE) is None:
            return False
        module = importlib.import_module(AIO_MODULE)
    except ImportError:
        return False
    return hasattr(module, "ResilientChannel")


async def _aio_loop(
    stub: Any, keyed: bool, calls: int, stop: float, seed: int, load: Load, timeout: float
) -> None:
    """The measured loop of one caller task; identical for every variant."""
    echo = stub.Echo
    clock = time.perf_counter
    getrandbits = random.Random(seed).getrandbits
    latencies = load.latencies
    served: list[str] = []
    errors = 0
    for _ in range(calls):
        metadata = ((KEY_HEADER, f"{getrandbits(32):08x}"),) if keyed else None
        started = clock()
        try:
            reply = await echo(REQUEST, timeout=timeout, metadata=metadata)
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


class AioDriver(Driver):
    """The asyncio twin, driven from one event loop owned by this driver."""

    name = "aio"
    throughput_concurrency = 64

    def __init__(self, *, seed: int = 2) -> None:
        self._module: ModuleType = importlib.import_module(AIO_MODULE)
        self._loop = asyncio.new_event_loop()
        self._seeds = random.Random(seed)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def open(self, variant: Variant, *, warm_calls: int) -> Opened:
        opened = self._run(self._open(variant))
        try:
            self._run(self._wait_ready(opened))
            opened.warmed = self.concurrent(
                opened, concurrency=WARM_CONCURRENCY, calls=warm_calls, seconds=WARM_SECONDS
            )
        except BaseException:
            self.close(opened)
            raise
        return opened

    async def _open(self, variant: Variant) -> Opened:
        channel: Any
        if variant.kind == "plain":
            channel = grpc.aio.insecure_channel(variant.addresses[0])
        elif variant.kind == "native":
            channel = grpc.aio.insecure_channel(
                native_target(variant.addresses), options=native_options(variant)
            )
        else:
            channel = self._module.ResilientChannel(
                list(variant.addresses),
                config=dict(variant.config or {}),
                tracer_provider=variant.tracer_provider,
            )
        return Opened(variant, channel, echo_pb2_grpc.EchoStub(channel))

    async def _wait_ready(self, opened: Opened) -> None:
        variant = opened.variant
        deadline = time.monotonic() + READY_TIMEOUT
        if variant.kind == "resilient":
            while True:
                statuses = opened.channel.endpoints()
                if len(statuses) >= len(variant.addresses) and all(
                    status.available for status in statuses
                ):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{variant.label}: endpoints not ready: {statuses}")
                await asyncio.sleep(0.01)
        wanted = len(variant.addresses) if variant.kind == "native" else 1
        seen: set[str] = set()
        while len(seen) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{variant.label}: only {sorted(seen)} answered")
            reply = await opened.stub.Echo(REQUEST, timeout=CALL_TIMEOUT, wait_for_ready=True)
            seen.add(reply.backend)

    def sequential(
        self, opened: Opened, *, calls: int, seconds: float, timeout: float = CALL_TIMEOUT
    ) -> Load:
        return self.concurrent(opened, concurrency=1, calls=calls, seconds=seconds, timeout=timeout)

    def concurrent(
        self,
        opened: Opened,
        *,
        concurrency: int,
        calls: int,
        seconds: float,
        timeout: float = CALL_TIMEOUT,
    ) -> Load:
        return self._run(self._concurrent(opened, concurrency, calls, seconds, timeout))

    async def _concurrent(
        self, opened: Opened, concurrency: int, calls: int, seconds: float, timeout: float
    ) -> Load:
        per_caller = max(1, math.ceil(calls / concurrency))
        loads = [Load() for _ in range(concurrency)]
        began = time.perf_counter()
        stop = began + seconds
        await asyncio.gather(
            *(
                _aio_loop(
                    opened.stub,
                    opened.variant.keyed,
                    per_caller,
                    stop,
                    self._seeds.getrandbits(32),
                    load,
                    timeout,
                )
                for load in loads
            )
        )
        total = merge(loads)
        total.elapsed = time.perf_counter() - began
        return total

    def close(self, opened: Opened) -> None:
        self._run(self._close(opened.channel))

    async def _close(self, channel: Any) -> None:
        result = channel.close()
        if inspect.isawaitable(result):
            await result

    def shutdown(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()
