"""A service that calls a pool of Echo backends through one ResilientChannel.

Copy this shape into your own service: build the channel once at start-up with your
backends and a service config, wrap your generated stub in it, and use the stub as usual.

    make setup                                              # creates .venv, once
    .venv/bin/python examples/echo_pool.py                  # starts three local backends
    .venv/bin/python examples/echo_pool.py --targets 127.0.0.1:50051 127.0.0.1:50052

It prints every tenth answer, then the channel's view of each backend: its name (for
the local backends) and address, connection state, the calls sent to it, how many
failed, and the latency estimate peak_ewma balances on.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping, Sequence

import grpc

from resilientrpc import ResilientChannel
from resilientrpc.testing import echo_pb2, echo_pb2_grpc, start_backends

SERVICE_CONFIG = {
    # Latency-aware balancing: a backend that slows down gets less traffic at once.
    "loadBalancingConfig": [{"peak_ewma": {}}, {"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "resilientrpc.echo.v1.Echo"}],
            "timeout": "1s",  # no call waits longer, whatever the caller passes
            "waitForReady": False,  # no backend up: fail at once with UNAVAILABLE
        }
    ],
}


class EchoClient:
    """What the rest of the service sees: plain methods over the balanced stub."""

    def __init__(self, targets: Sequence[str]) -> None:
        self._channel = ResilientChannel(list(targets), config=SERVICE_CONFIG)
        self._stub = echo_pb2_grpc.EchoStub(self._channel)

    def echo(self, message: str) -> str:
        reply = self._stub.Echo(echo_pb2.EchoRequest(message=message))
        return f"{reply.message} (served by {reply.backend})"

    def wait_ready(self, timeout: float) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def report(self, names: Mapping[str, str]) -> str:
        """One line per backend (``names`` maps an address to its name), then a legend."""
        header = f"{'backend':<9}{'address':<18}{'state':<8}{'calls':>7}{'fails':>7}{'ewma ms':>9}"
        lines = [header]
        for status in self._channel.endpoints():
            latency = f"{status.latency_ms:.2f}" if status.latency_ms is not None else "-"
            lines.append(
                f"{names.get(status.address, '-'):<9}{status.address:<18}{status.state:<8}"
                f"{status.calls:>7}{status.failures:>7}{latency:>9}"
            )
        lines.append(
            "calls: sent to that backend; fails: of those, failed; ewma ms: the latency\n"
            "estimate peak_ewma balances on, so a slower backend gets fewer of the calls."
        )
        return "\n".join(lines)

    def close(self) -> None:
        self._channel.close()


@contextlib.contextmanager
def local_backends() -> Iterator[dict[str, str]]:
    """Three local backends, ``slow`` 20 ms late on every reply; address -> name."""
    with start_backends(3, names=["alpha", "beta", "slow"]) as backends:
        backends[2].configure(latency=0.02)  # one slow backend, to see balancing work
        yield {backend.address: backend.name for backend in backends}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Call a pool of Echo backends through one ResilientChannel."
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        metavar="HOST:PORT",
        help="address of each backend (default: start three local ones)",
    )
    parser.add_argument(
        "--calls", type=int, default=50, metavar="N", help="calls to send (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"argument --calls: expected at least 1, got {args.calls}")
    with contextlib.ExitStack() as stack:
        names = {} if args.targets else stack.enter_context(local_backends())
        targets = args.targets or list(names)
        client = EchoClient(targets)
        stack.callback(client.close)
        client.wait_ready(timeout=5)
        for index in range(args.calls):
            answer = client.echo(f"hello {index}")
            if index % 10 == 0:
                print(answer)
        print(client.report(names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
