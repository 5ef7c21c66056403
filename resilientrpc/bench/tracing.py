"""The tracing scenario (issue 10): what OpenTelemetry tracing costs a call (sync twin).

Four variants to one backend, measured in interleaved rounds like the latency scenario:

- ``plain``: a grpc channel, the reference;
- ``no tracer``: a ``ResilientChannel`` without a tracer provider (goal <= 1.15x plain);
- ``traced``: a ``ResilientChannel`` with an SDK ``TracerProvider`` sampling every call,
  a ``BatchSpanProcessor`` and the real OTLP/gRPC exporter sending to a local receiver -
  ``resilientrpc faults --listen 127.0.0.1:0`` in a child process, so receiving costs the
  measured process nothing - call and attempt spans (goal <= 1.45x plain); the receiver's
  report then says how many attempt spans arrived (one per traced call, as a check);
- ``one span``: a plain channel, one hand-made OTel span around each call (a reference:
  what the least tracing costs).

Needs the ``otlp`` extra (the SDK and the exporter). Every loop is bounded in calls and
seconds by the :class:`~resilientrpc.bench.network.NetworkBudget`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc

import resilientrpc
from resilientrpc.bench.drivers import Opened, SyncDriver, Variant, merge
from resilientrpc.bench.fleet import BackendMode, Fleet
from resilientrpc.bench.network import LATENCY_GOAL_SYNC, NetworkBudget, interleaved
from resilientrpc.bench.results import Row, at_most, ratio, summarize
from resilientrpc.testing import echo_pb2_grpc

__all__ = ["TRACED_GOAL", "tracing_rows"]

#: Per-call latency with tracing on against a plain channel.
TRACED_GOAL = at_most(1.45)

_ROUND_ROBIN: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
_SCENARIO = "10 tracing"
_WARM_SECONDS = 5.0
#: Seconds the receiver may take to start, and to report after it was told to stop.
_RECEIVER_TIMEOUT = 30.0
#: The most seconds the receiver runs, should the benchmark never stop it.
_RECEIVER_LIFETIME = 3600.0
_RECEIVER_COMMAND = (
    sys.executable,
    "-c",
    # SIGINT stops it; a shell may have started the benchmark with SIGINT ignored.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from resilientrpc.faults_command import main; sys.exit(main())",
    "--listen",
    "127.0.0.1:0",
    "--json",
    "--seconds",
)


class _Receiver:
    """``resilientrpc faults --listen 127.0.0.1:0 --json`` in a child process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [*_RECEIVER_COMMAND, str(_RECEIVER_LIFETIME)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline()  # "listening on 127.0.0.1:PORT"
        if not first.startswith("listening on "):
            self.close()
            raise RuntimeError(f"the span receiver did not start: {first!r}")
        self.address = first.split()[-1]

    def report(self) -> dict[str, Any]:
        """Stop receiving; the fault report of what arrived (its JSON form)."""
        self._process.send_signal(signal.SIGINT)
        out, _ = self._process.communicate(timeout=_RECEIVER_TIMEOUT)
        report: dict[str, Any] = json.loads(out)
        return report

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate(timeout=_RECEIVER_TIMEOUT)


class _SpanPerCall:
    """A stub whose ``Echo`` wraps the plain stub's in one hand-made client span."""

    def __init__(self, stub: Any, tracer: Any) -> None:
        self._echo = stub.Echo
        self._tracer = tracer

    def Echo(self, request: Any, **kwargs: Any) -> Any:
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - optional extra

        with self._tracer.start_as_current_span("echo.Echo/Echo", kind=SpanKind.CLIENT):
            return self._echo(request, **kwargs)


@contextlib.contextmanager
def _provider(endpoint: str) -> Iterator[Any]:
    """An SDK TracerProvider, every call sampled, batching to the OTLP exporter."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - optional extra
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: PLC0415

    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    try:
        yield provider
    finally:
        provider.shutdown()


@contextlib.contextmanager
def _variants(
    driver: SyncDriver, address: str, provider: Any, warm_calls: int, made: dict[str, int]
) -> Iterator[list[Opened]]:
    """The four variants open and warm (``made``: calls each made); all closed afterwards."""
    opened: list[Opened] = []
    with contextlib.ExitStack() as stack:
        plain = grpc.insecure_channel(address)
        stack.callback(plain.close)
        bare = resilientrpc.ResilientChannel([address], config=_ROUND_ROBIN)
        stack.callback(bare.close)
        traced = resilientrpc.ResilientChannel(
            [address], config=_ROUND_ROBIN, tracer_provider=provider
        )
        stack.callback(traced.close)
        plain_stub = echo_pb2_grpc.EchoStub(plain)
        span_stub = _SpanPerCall(plain_stub, provider.get_tracer("bench"))
        for label, channel, stub in (
            ("plain", plain, plain_stub),
            ("no tracer", bare, echo_pb2_grpc.EchoStub(bare)),
            ("traced", traced, echo_pb2_grpc.EchoStub(traced)),
            ("one span", plain, span_stub),
        ):
            variant = Variant(label=label, kind="plain", addresses=(address,))
            item = Opened(variant, channel, stub)
            warm = driver.sequential(item, calls=warm_calls, seconds=_WARM_SECONDS)
            made[label] = warm.calls + warm.errors
            opened.append(item)
        yield opened


def tracing_rows(
    budget: NetworkBudget, *, mode: BackendMode = "process", seed: int = 1
) -> list[Row]:
    """Per-call p50 and mean of each variant against plain grpcio (sync twin)."""
    driver = SyncDriver(seed=seed)
    rounds = max(1, budget.latency_rounds)
    batch = max(1, budget.latency_calls // rounds)
    seconds = budget.latency_seconds / rounds
    made: dict[str, int] = {}
    receiver = _Receiver()
    try:
        with (
            Fleet(["b1"], mode=mode) as fleet,
            _provider(receiver.address) as provider,
            _variants(driver, fleet.addresses[0], provider, budget.warm_calls, made) as opened,
        ):
            measure = functools.partial(driver.sequential, calls=batch, seconds=seconds)
            loads = interleaved(opened, rounds, measure)
        report = receiver.report()  # the provider is shut down: every span was sent
    finally:
        receiver.close()
    pooled = {label: merge(parts) for label, parts in loads.items()}
    traced = made["traced"] + pooled["traced"].calls + pooled["traced"].errors
    stats = {label: summarize(load.latencies) for label, load in pooled.items()}
    goals = {"no tracer": LATENCY_GOAL_SYNC, "traced": TRACED_GOAL, "one span": None}
    rows: list[Row] = []
    base = stats["plain"]
    for label, goal in goals.items():
        for which in ("p50", "mean"):
            mine, reference = getattr(stats[label], which), getattr(base, which)
            failed = pooled[label].errors + pooled["plain"].errors
            rows.append(
                Row(
                    scenario=_SCENARIO,
                    twin=driver.name,
                    subject=f"{label} / plain, {which}",
                    value=ratio(mine, reference),
                    goal=goal,
                    context=f"{which} {mine * 1e3:.3f} vs {reference * 1e3:.3f} ms; "
                    f"{stats[label].count} calls each"
                    + (f"; {failed} calls failed" if failed else ""),
                )
            )
    rows.append(
        Row(
            scenario=_SCENARIO,
            twin=driver.name,
            subject="attempt spans received per traced call",
            value=ratio(float(report["attempts"]), float(traced)),
            context=f"{report['attempts']:,} attempt spans, {report['spans']:,} spans in all, "
            f"for {traced:,} traced calls (warm-up included)",
        )
    )
    return rows
