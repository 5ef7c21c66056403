"""``resilientrpc demo``: local backends, one slow and one flaky, traffic through each strategy.

For every strategy it sends the same bounded load through a :class:`ResilientChannel`
over three local backends and prints, per backend, its share of the calls, the median
and p99 latency the client saw, and the errors it returned.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import threading
import time
from collections.abc import Sequence

import grpc

from resilientrpc.channel import ResilientChannel
from resilientrpc.testing import echo_pb2, echo_pb2_grpc, start_backends

__all__ = ["STRATEGIES", "main", "run_strategy"]

STRATEGIES: dict[str, dict[str, object]] = {
    "round_robin": {},
    "weighted_round_robin": {},  # filled with static weights at run time
    "least_request": {},
    "peak_ewma": {},
    "random": {},
    "ring_hash": {"requestHashHeader": "x-user"},
    "pick_first": {},
}

Row = tuple[str, int, list[float], int]


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_strategy(
    name: str,
    settings: dict[str, object],
    addresses: list[str],
    *,
    calls: int,
    threads: int,
    seconds: float,
) -> dict[str, Row]:
    """Send ``calls`` calls (at most ``seconds``) over ``threads`` threads; stats per backend."""
    config = {"loadBalancingConfig": [{name: settings}]}
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    per_thread = calls // threads
    deadline = time.monotonic() + seconds
    with ResilientChannel(addresses, config=config) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = echo_pb2_grpc.EchoStub(channel)

        def work(worker: int) -> None:
            for index in range(per_thread):
                if time.monotonic() > deadline:
                    return
                metadata = [("x-user", f"user-{worker}-{index % 16}")]
                started = time.perf_counter()
                try:
                    reply = stub.Echo(
                        echo_pb2.EchoRequest(message="demo"), timeout=2, metadata=metadata
                    )
                except grpc.RpcError as error:
                    backend = error.details().split(" on ")[-1] if error.details() else "?"
                    with lock:
                        errors[backend] += 1
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[reply.backend].append(elapsed)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    names = sorted(set(latencies) | set(errors))
    return {n: (n, len(latencies[n]), latencies[n], errors[n]) for n in names}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="resilientrpc demo", description=__doc__)
    parser.add_argument("--calls", type=int, default=600, help="calls per strategy")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0, help="time limit per strategy")
    parser.add_argument("--slow", type=float, default=0.02, help="added latency of the slow one")
    parser.add_argument("--flaky", type=float, default=0.2, help="error rate of the flaky one")
    args = parser.parse_args(argv)
    with start_backends(3, names=["healthy", "slow", "flaky"], seed=1) as backends:
        backends[1].configure(latency=args.slow)
        backends[2].configure(error_rate=args.flaky, error_code=grpc.StatusCode.UNAVAILABLE)
        print(
            f"backends: healthy {backends[0].address}, slow (+{args.slow * 1000:.0f} ms) "
            f"{backends[1].address}, flaky ({args.flaky:.0%} UNAVAILABLE) {backends[2].address}"
        )
        print(f"{args.calls} calls per strategy over {args.threads} threads\n")
        for name, default_settings in STRATEGIES.items():
            settings = default_settings
            if name == "weighted_round_robin":
                settings = {"weights": dict(zip(backends.addresses, [3, 1, 1], strict=True))}
            rows = run_strategy(
                name,
                settings,
                backends.addresses,
                calls=args.calls,
                threads=args.threads,
                seconds=args.seconds,
            )
            total = sum(count + errs for _, count, _, errs in rows.values()) or 1
            print(f"== {name} {settings or ''}")
            print(f"   {'backend':<10}{'share':>8}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
            for backend, count, values, errs in rows.values():
                share = (count + errs) / total
                p50 = statistics.median(values) * 1000 if values else float("nan")
                p99 = _percentile(values, 0.99) * 1000
                print(f"   {backend:<10}{share:>8.1%}{p50:>10.2f}{p99:>10.2f}{errs:>8}")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
