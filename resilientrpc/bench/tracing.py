"""The tracing scenario (issue 10): what OpenTelemetry tracing costs a call, both twins.

Six variants to one backend, measured in interleaved rounds like the latency scenario,
twin by twin on each twin's :class:`~resilientrpc.bench.drivers.Driver` (the asyncio
twin against ``grpc.aio``, its calls on the driver's event loop):

- ``plain``: a grpc channel (``grpc.aio`` for the asyncio twin), the reference;
- ``no tracer``: a ``ResilientChannel`` without a tracer provider (goal: the latency
  scenario's, <= 1.15x plain for the sync twin, <= 1.2x for the asyncio one);
- ``no-op provider``: a ``ResilientChannel`` given OpenTelemetry's
  ``NoOpTracerProvider``: nothing would be recorded, so it must cost what ``no tracer``
  does (goal: the same);
- ``traced``: a ``ResilientChannel`` with an SDK ``TracerProvider`` sampling every call,
  a ``BatchSpanProcessor`` and the real OTLP/gRPC exporter sending to a local receiver -
  ``resilientrpc faults --listen 127.0.0.1:0`` in a child process, so receiving costs the
  measured process nothing - call and attempt spans (goal <= 1.45x plain); the receiver's
  report then says how many attempt spans arrived (one per traced call, as a check;
  each twin sends to a receiver of its own, so the count is the twin's);
- ``sampled out``: the ``traced`` set-up with the sampler
  ``ParentBased(TraceIdRatioBased(0.0))``: every call makes a non-recording call span and
  propagates its (sampled-out) context, nothing is exported (info, no goal; the receiver's
  count shows none of its spans arrived);
- ``one span``: a plain channel, one hand-made OTel span around each call (a reference:
  what the least tracing costs).

Needs the ``otlp`` extra (the SDK and the exporter). Every loop is bounded in calls and
seconds by the :class:`~resilientrpc.bench.network.NetworkBudget`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.trace import NoOpTracerProvider

from resilientrpc.bench.drivers import Driver, Opened, Variant, merge
from resilientrpc.bench.fleet import BackendMode, Fleet
from resilientrpc.bench.network import (
    LATENCY_GOAL_AIO,
    LATENCY_GOAL_SYNC,
    NetworkBudget,
    interleaved,
    opened_variants,
)
from resilientrpc.bench.results import Row, at_most, ratio, summarize

__all__ = ["TRACED_GOAL", "tracing_rows"]

#: Per-call latency with tracing on against a plain channel.
TRACED_GOAL = at_most(1.45)

_ROUND_ROBIN: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
_SCENARIO = "10 tracing"
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
def _provider(endpoint: str, *, sampled: bool = True) -> Iterator[Any]:
    """An SDK TracerProvider batching to the OTLP exporter; every call sampled, or (not
    ``sampled``) none: the sampler a trace-id ratio of 0, parent-based."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - optional extra
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )

    sampler = ALWAYS_ON if sampled else ParentBased(TraceIdRatioBased(0.0))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    try:
        yield provider
    finally:
        provider.shutdown()


class _AioSpanPerCall(_SpanPerCall):
    """The asyncio twin of :class:`_SpanPerCall`: the span lasts until the call's reply."""

    async def Echo(self, request: Any, **kwargs: Any) -> Any:
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - optional extra

        with self._tracer.start_as_current_span("echo.Echo/Echo", kind=SpanKind.CLIENT):
            return await self._echo(request, **kwargs)


@contextlib.contextmanager
def _variants(
    driver: Driver, address: str, provider: Any, sampled_out: Any, warm_calls: int
) -> Iterator[list[Opened]]:
    """The six variants open and warm on ``driver``'s twin; all closed afterwards.

    ``one span`` shares the ``plain`` variant's channel, its stub wrapped in a span.
    """
    plain = Variant(label="plain", kind="plain", addresses=(address,))
    variants = [
        plain,
        *(
            Variant(
                label=label,
                kind="resilient",
                addresses=(address,),
                config=_ROUND_ROBIN,
                tracer_provider=tracer_provider,
            )
            for label, tracer_provider in (
                ("no tracer", None),
                ("no-op provider", NoOpTracerProvider()),
                ("traced", provider),
                ("sampled out", sampled_out),
            )
        ),
    ]
    with opened_variants(driver, variants, warm_calls) as opened:
        wrap = _AioSpanPerCall if driver.name == "aio" else _SpanPerCall
        one_span = Opened(
            dataclasses.replace(plain, label="one span"),
            opened[0].channel,
            wrap(opened[0].stub, provider.get_tracer("bench")),
        )
        yield [*opened, one_span]


def _twin_rows(driver: Driver, address: str, budget: NetworkBudget) -> list[Row]:
    """One twin's rows: its six variants in interleaved rounds, spans to a receiver."""
    rounds = max(1, budget.latency_rounds)
    batch = max(1, budget.latency_calls // rounds)
    seconds = budget.latency_seconds / rounds
    receiver = _Receiver()
    try:
        with (
            _provider(receiver.address) as provider,
            _provider(receiver.address, sampled=False) as sampled_out,
            _variants(driver, address, provider, sampled_out, budget.warm_calls) as opened,
        ):
            measure = functools.partial(driver.sequential, calls=batch, seconds=seconds)
            loads = interleaved(opened, rounds, measure)
            warmed = next(item.warmed for item in opened if item.variant.label == "traced")
        report = receiver.report()  # the provider is shut down: every span was sent
    finally:
        receiver.close()
    pooled = {label: merge(parts) for label, parts in loads.items()}
    traced = sum(load.calls + load.errors for load in (warmed, pooled["traced"]))
    stats = {label: summarize(load.latencies) for label, load in pooled.items()}
    bare_goal = LATENCY_GOAL_AIO if driver.name == "aio" else LATENCY_GOAL_SYNC
    goals = {
        "no tracer": bare_goal,
        "no-op provider": bare_goal,
        "traced": TRACED_GOAL,
        "sampled out": None,
        "one span": None,
    }
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


def tracing_rows(
    drivers: Sequence[Driver], budget: NetworkBudget, *, mode: BackendMode = "process"
) -> list[Row]:
    """Per-call p50 and mean of each variant against plain grpc, twin by twin.

    One backend serves every twin; each twin has a receiver and a provider of its own,
    so its span count is its own.
    """
    rows: list[Row] = []
    with Fleet(["b1"], mode=mode) as fleet:
        for driver in drivers:
            rows += _twin_rows(driver, fleet.addresses[0], budget)
    return rows
