"""6f: threads, memory and file descriptors per watched endpoint, against native round_robin.

One server child (``python -m resilientrpc.bench.footprint serve N``: one ``grpc.aio``
server with a health servicer, listening on N loopback ports, no thread per stream)
stands in for N backends. Each variant is measured in a child of its own
(``... measure VARIANT PORTS``), so that no allocator state carries over: the child
imports grpc, makes one call on a plain channel (grpc's own threads exist from then
on), reads its threads (``/proc/self/task``), RSS (``VmRSS``) and open fds, opens the
channel with health checking on over the N addresses, waits until every endpoint is
connected (resilient: ``endpoints()`` all READY; native: one socket per address), lets
it settle, reads them again and prints the differences as JSON. Both children raise
their soft fd limit within the hard limit when N needs it, and report it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import resource
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2_grpc

import resilientrpc
from resilientrpc.bench.fleet import native_target
from resilientrpc.bench.results import Row, at_most

__all__ = [
    "FOOTPRINT_SIZES",
    "QUICK_FOOTPRINT_SIZES",
    "THREADS_GOAL",
    "Footprint",
    "footprint_rows",
    "main",
    "measure_footprint",
]

FOOTPRINT_SIZES = (10, 100, 1000)
QUICK_FOOTPRINT_SIZES = (10, 100)
#: Threads one ResilientChannel may add, whatever the number of endpoints.
THREADS_GOAL = at_most(4, "threads")
_CONNECT_TIMEOUT = 30.0
_SETTLE = 1.0
_HEALTH = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}


@dataclass(frozen=True, slots=True)
class Footprint:
    """What opening one channel over ``size`` endpoints added to a process."""

    variant: str
    size: int
    #: Python threads (``threading``) added: the library's own background threads.
    threads: int
    #: Kernel threads added (grpc's C core threads included).
    os_threads: int
    rss_kib: int
    fds: int
    fd_limit: int
    connected: bool


def _raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return int(soft)


def _snapshot() -> tuple[int, int, int, int, int]:
    """(kernel threads, RSS KiB, open fds, sockets, Python threads) of this process."""
    rss = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    threads = len(os.listdir("/proc/self/task"))
    return threads, rss, len(fds), sockets, threading.active_count()


def _serve(size: int) -> int:
    _raise_fd_limit(3 * size + 64)

    async def serve() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(size)]
        await server.start()
        print("LISTENING " + ",".join(map(str, ports)), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(None)

    asyncio.run(serve())
    return 0


def _measure(variant: str, ports: Sequence[int]) -> dict[str, Any]:
    addresses = [f"127.0.0.1:{port}" for port in ports]
    limit = _raise_fd_limit(3 * len(addresses) + 64)
    with grpc.insecure_channel(addresses[0]) as first:  # grpc's own threads start here
        first.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5.0)
    time.sleep(0.2)
    before = _snapshot()
    channel: Any
    loop: asyncio.AbstractEventLoop | None = None
    if variant == "native":
        channel = grpc.insecure_channel(
            native_target(addresses), options=[("grpc.service_config", json.dumps(_HEALTH))]
        )
        channel.subscribe(lambda state: None, try_to_connect=True)
    elif variant == "sync":
        channel = resilientrpc.ResilientChannel(addresses, config=dict(_HEALTH))
    else:
        module = importlib.import_module("resilientrpc.aio")
        loop = asyncio.new_event_loop()

        async def open_channel() -> Any:
            return module.ResilientChannel(addresses, config=dict(_HEALTH))

        channel = loop.run_until_complete(open_channel())
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    connected = False
    while time.monotonic() < deadline and not connected:
        if variant == "native":
            connected = _snapshot()[3] - before[3] >= len(addresses)
        else:
            statuses = channel.endpoints()
            connected = len(statuses) == len(addresses) and all(
                status.state == "READY" for status in statuses
            )
        if loop is not None:
            loop.run_until_complete(asyncio.sleep(0.05))
        else:
            time.sleep(0.05)
    if loop is not None:
        loop.run_until_complete(asyncio.sleep(_SETTLE))
    else:
        time.sleep(_SETTLE)
    after = _snapshot()
    return {
        "threads": after[4] - before[4],
        "os_threads": after[0] - before[0],
        "rss_kib": after[1] - before[1],
        "fds": after[2] - before[2],
        "fd_limit": limit,
        "connected": connected,
    }


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise TimeoutError("the footprint child printed nothing in time")
    return process.stdout.readline()


def _child(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "resilientrpc.bench.footprint", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def measure_footprint(variants: Sequence[str], sizes: Sequence[int]) -> list[Footprint]:
    """Each variant's footprint at each size, every measurement in a fresh child."""
    results = []
    for size in sizes:
        server = _child("serve", str(size))
        try:
            line = _read_line(server, 30.0)
            ports = line.removeprefix("LISTENING ").strip()
            for variant in variants:
                child = _child("measure", variant, ports)
                try:
                    figures = json.loads(_read_line(child, _CONNECT_TIMEOUT + 30.0))
                finally:
                    child.kill()
                    child.communicate()
                results.append(Footprint(variant=variant, size=size, **figures))
        finally:
            server.kill()
            server.communicate()
    return results


def footprint_rows(results: Sequence[Footprint]) -> list[Row]:
    """Threads added (judged for the resilient twins), RSS and fds per endpoint (info)."""
    native = {r.size: r.os_threads for r in results if r.variant == "native"}
    rows = []
    for result in results:
        twin = "-" if result.variant == "native" else result.variant
        label = "native rr + health" if result.variant == "native" else "resilient"
        note = f"fd soft limit {result.fd_limit}"
        if not result.connected:
            note += "; not every endpoint connected in time"
        rows += [
            Row(
                scenario="6f footprint",
                twin=twin,
                subject=f"{label}: Python threads added, {result.size} endpoints",
                value=float(result.threads),
                unit="threads",
                goal=None if result.variant == "native" else THREADS_GOAL,
                context=f"{result.os_threads} kernel threads added (native rr: "
                f"{native.get(result.size, '?')}); {note}",
            ),
            Row(
                scenario="6f footprint",
                twin=twin,
                subject=f"{label}: RSS per endpoint, {result.size} endpoints",
                value=result.rss_kib / result.size,
                unit="KiB",
                context=f"{result.rss_kib} KiB in all",
            ),
            Row(
                scenario="6f footprint",
                twin=twin,
                subject=f"{label}: fds per endpoint, {result.size} endpoints",
                value=result.fds / result.size,
                unit="fds",
                context=f"{result.fds} fds in all",
            ),
        ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """The children: ``serve N`` or ``measure VARIANT PORT,PORT,...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"] and len(args) == 2:
        return _serve(int(args[1]))
    if args[:1] == ["measure"] and len(args) == 3:
        ports = [int(port) for port in args[2].split(",")]
        print(json.dumps(_measure(args[1], ports)), flush=True)
        return 0
    print("usage: footprint serve N | footprint measure VARIANT PORTS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
