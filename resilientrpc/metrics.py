"""Client metrics through an OpenTelemetry MeterProvider (API only).

The instruments of gRPC's A66 (per attempt and per call) and A96 (retries and hedges),
plus per endpoint ones under ``resilientrpc.``. They are fed from the points the tracing
layer already has - a call starts and ends, an attempt starts and reports its
:class:`~resilientrpc.endpoint.Outcome`, the retry step emits a
:class:`~resilientrpc.retry.RetryEvent` - so a channel with no meter provider does no
metric work at all.

>>> metrics = ClientMetrics(provider, "127.0.0.1:50051")  # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation, get_meter

from resilientrpc.endpoint import EndpointStatus, Outcome
from resilientrpc.events import EJECTED, EndpointEvent

__all__ = ["SCOPE", "ClientMetrics", "grpc_method"]

#: The instrumentation scope name of every instrument resilientrpc makes.
SCOPE = "resilientrpc"

#: Bucket bounds (seconds) of the latency histograms, as A66 recommends.
_LATENCY_BOUNDS = (
    0.0,
    0.00001,
    0.00005,
    0.0001,
    0.0003,
    0.0006,
    0.0008,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.006,
    0.008,
    0.01,
    0.013,
    0.016,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.065,
    0.08,
    0.1,
    0.13,
    0.16,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.65,
    0.8,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
)
_COUNT_BOUNDS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def _histogram(meter: Meter, name: str, unit: str, description: str) -> Histogram:
    """A histogram with A66's latency buckets (seconds) or small count buckets."""
    bounds = _LATENCY_BOUNDS if unit == "s" else _COUNT_BOUNDS
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=bounds
        )
    except TypeError:  # opentelemetry-api before 1.30 (the floor, 1.28) has no bucket advice
        return meter.create_histogram(name, unit=unit, description=description)


def grpc_method(service: str, method: str) -> str:
    """The ``grpc.method`` attribute: ``"pkg.Service/Method"``.

    >>> grpc_method("echo.Echo", "Echo")
    'echo.Echo/Echo'
    """
    return f"{service}/{method}"


class ClientMetrics:
    """Every instrument of one channel; ``target`` is its ``grpc.target`` attribute.

    ``endpoints`` (a bound method, such as the balancer's ``statuses``) feeds the
    observable outstanding-calls gauge; it is held weakly, so the meter provider does
    not keep a dropped channel's balancer alive.
    """

    def __init__(
        self,
        meter_provider: Any,
        target: str,
        endpoints: Callable[[], list[EndpointStatus]] | None = None,
    ) -> None:
        meter = get_meter(SCOPE, meter_provider=meter_provider)
        self.target = target
        self._endpoints = None if endpoints is None else weakref.WeakMethod(endpoints)
        self._attempts_started = meter.create_counter(
            "grpc.client.attempt.started", unit="{attempt}", description="Attempts started."
        )
        self._attempt_duration = _histogram(
            meter, "grpc.client.attempt.duration", "s", "Time from an attempt's start to its end."
        )
        self._call_duration = _histogram(
            meter,
            "grpc.client.call.duration",
            "s",
            "Time from a call's start to its end, every attempt included.",
        )
        self._retries = _histogram(
            meter, "grpc.client.call.retries", "{retry}", "Retries of a call that had some."
        )
        self._hedges = _histogram(
            meter, "grpc.client.call.hedges", "{hedge}", "Hedges of a call that had some."
        )
        self._retry_delay = _histogram(
            meter, "grpc.client.call.retry_delay", "s", "Backoff a retried call waited in all."
        )
        self._ejections = meter.create_counter(
            "resilientrpc.endpoint.ejections",
            unit="{ejection}",
            description="Times outlier detection took an endpoint out of traffic.",
        )
        meter.create_observable_gauge(
            "resilientrpc.endpoint.outstanding",
            callbacks=[self._observe_outstanding],
            unit="{call}",
            description="Calls in flight on an endpoint.",
        )

    def attempt_started(self, method: str) -> None:
        """Count an attempt of ``method`` (``grpc_method`` form)."""
        self._attempts_started.add(1, {"grpc.method": method, "grpc.target": self.target})

    def attempt_ended(self, method: str, outcome: Outcome) -> None:
        """Record an attempt's duration with the outcome its balancing step reported."""
        self._attempt_duration.record(outcome.latency, self._with_status(method, outcome.code))

    def call_ended(
        self,
        method: str,
        code: grpc.StatusCode,
        duration: float,
        *,
        retries: int,
        hedges: int,
        delay: float,
    ) -> None:
        """Record a call's duration; and its retries, hedges and backoff when it had any."""
        self._call_duration.record(duration, self._with_status(method, code))
        if not retries and not hedges:
            return
        attributes = {"grpc.method": method, "grpc.target": self.target}
        if retries:
            self._retries.record(retries, attributes)
        if hedges:
            self._hedges.record(hedges, attributes)
        self._retry_delay.record(delay, attributes)

    def endpoint_listener(self) -> Callable[[EndpointEvent], None]:
        """An endpoint event listener counting ejections per endpoint."""

        def on_event(event: EndpointEvent) -> None:
            if event.kind == EJECTED:
                self._ejections.add(
                    1, {"server.address": event.address, "grpc.target": self.target}
                )

        return on_event

    def _with_status(self, method: str, code: grpc.StatusCode) -> dict[str, str]:
        return {"grpc.method": method, "grpc.target": self.target, "grpc.status": code.name}

    def _observe_outstanding(self, options: CallbackOptions) -> Iterable[Observation]:
        endpoints = None if self._endpoints is None else self._endpoints()
        if endpoints is None:
            return []
        return [
            Observation(
                status.outstanding,
                {"server.address": status.address, "grpc.target": self.target},
            )
            for status in endpoints()
        ]
