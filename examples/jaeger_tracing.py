"""Trace every call and attempt of a ResilientChannel into Jaeger, over OTLP/gRPC.

Start Jaeger first (its all-in-one image listens for OTLP/gRPC on 4317, UI on 16686):

    docker run --rm -p 16686:16686 -p 4317:4317 jaegertracing/jaeger:2.1.0

then, with three local backends of which one fails 30 % of its calls:

    .venv/bin/python examples/jaeger_tracing.py

and open http://localhost:16686, service "jaeger-tracing-example". Each call is a span
`resilientrpc.echo.v1.Echo/Echo` with one child `Attempt.resilientrpc.echo.v1.Echo/Echo`
per attempt (`server.address`, `server.port`, attempt number, status); a call that failed
over shows its failed attempt in red, then the retry, with a `retry` event on the call
span saying which code and how long it waited. `--endpoint` sends elsewhere (loopback only).
"""

from __future__ import annotations

import argparse
import ipaddress

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from resilientrpc import ResilientChannel
from resilientrpc.testing import echo_pb2, echo_pb2_grpc, start_backends

CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "resilientrpc.echo.v1.Echo"}],
            "timeout": "1s",
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def loopback(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"--endpoint must be a loopback address, got {endpoint!r}")
    return endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", type=loopback, default="localhost:4317")
    parser.add_argument("--calls", type=int, default=50, choices=range(1, 10_001), metavar="N")
    args = parser.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "jaeger-tracing-example"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True))
    )
    with start_backends(3, names=["alpha", "beta", "flaky"]) as backends:
        backends[2].configure(error_rate=0.3, error_code=grpc.StatusCode.UNAVAILABLE)
        with ResilientChannel(
            backends.addresses, config=CONFIG, tracer_provider=provider
        ) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            served = [
                stub.Echo(echo_pb2.EchoRequest(message=f"hi {i}")).backend
                for i in range(args.calls)
            ]
    provider.shutdown()  # flushes the batch to the collector
    print(f"{len(served)} calls traced to {args.endpoint}; open http://localhost:16686")


if __name__ == "__main__":
    main()
