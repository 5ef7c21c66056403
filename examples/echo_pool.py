"""A service that calls a pool of Echo backends through one ResilientChannel.

Copy this shape into your own service: build the channel once at start-up with your
backends and a service config, wrap your generated stub in it, and use the stub as usual.

    python examples/echo_pool.py                       # starts three local backends itself
    python examples/echo_pool.py --targets 127.0.0.1:50051 127.0.0.1:50052
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence

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

    def report(self) -> str:
        lines = [f"{'address':<22}{'state':<8}{'calls':>7}{'fails':>7}{'ewma ms':>9}"]
        for status in self._channel.endpoints():
            latency = f"{status.latency_ms:.2f}" if status.latency_ms is not None else "-"
            lines.append(
                f"{status.address:<22}{status.state:<8}{status.calls:>7}"
                f"{status.failures:>7}{latency:>9}"
            )
        return "\n".join(lines)

    def close(self) -> None:
        self._channel.close()


@contextlib.contextmanager
def local_backends() -> Iterator[list[str]]:
    with start_backends(3, names=["alpha", "beta", "gamma"]) as backends:
        backends[1].configure(latency=0.02)  # one slow backend, to see balancing work
        yield backends.addresses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", help="host:port of each backend")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        targets = args.targets or stack.enter_context(local_backends())
        client = EchoClient(targets)
        stack.callback(client.close)
        client.wait_ready(timeout=5)
        for index in range(args.calls):
            answer = client.echo(f"hello {index}")
            if index % 10 == 0:
                print(answer)
        print(client.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
