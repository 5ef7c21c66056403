"""Client metrics through an OpenTelemetry MeterProvider (API only).

The instruments of gRPC's A66 (per attempt and per call) and A96 (retries and hedges),
plus per endpoint ones under ``resilientrpc.``. Their ``grpc.method`` is the method's
full name only for a *registered* method - one a generated stub made (the stub passes
``_registered_method=True`` to the channel's ``unary_unary`` and the like), as in
grpcio's own OpenTelemetry plugin a name once registered stays so - and
:data:`OTHER_METHOD` for any other. They are fed from the points the tracing
layer already has - a call starts and ends, an attempt starts and reports its
:class:`~resilientrpc.endpoint.Outcome`, the retry step emits a
:class:`~resilientrpc.retry.RetryEvent` - so a channel with no meter provider does no
metric work at all.

The per-endpoint gauges are observed from the balancer's endpoint snapshots when the
meter provider collects. ``resilientrpc.endpoint.status`` follows the OpenTelemetry
convention for state metrics: an up-down counter with one series per possible value of
``resilientrpc.endpoint.state`` (:data:`ENDPOINT_STATES`), 1 for the endpoint's current
state and 0 for the others, so a sum over endpoints counts them per state. An endpoint
whose snapshot cannot be observed is logged and left out; the others are still observed.
These observable instruments are made once per meter and observe every live channel
given that meter provider (a meter makes an instrument name once: a second channel's own
callbacks would be dropped).

>>> metrics = ClientMetrics(provider, "127.0.0.1:50051")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation, get_meter

from resilientrpc.endpoint import Connectivity, EndpointStatus, Outcome
from resilientrpc.events import EJECTED, EndpointEvent

__all__ = [
    "ENDPOINT_STATES",
    "OTHER_METHOD",
    "SCOPE",
    "ClientMetrics",
    "endpoint_state",
    "grpc_method",
]

#: The instrumentation scope name of every instrument resilientrpc makes.
SCOPE = "resilientrpc"

_log = logging.getLogger(__name__)

#: The ``grpc.method`` of every method no generated stub registered (gRFC A66): a client
#: calling arbitrary method names cannot grow the number of series.
OTHER_METHOD = "other"

#: Every value of ``resilientrpc.endpoint.state``, what :func:`endpoint_state` returns.
ENDPOINT_STATES = (
    "serving",
    "half_open",
    "not_serving",
    "ejected",
    "connecting",
    "transient_failure",
    "shutdown",
)
#: The state of an endpoint that is not connected, by its connectivity.
_UNCONNECTED = {
    Connectivity.IDLE.name: "connecting",
    Connectivity.CONNECTING.name: "connecting",
    Connectivity.TRANSIENT_FAILURE.name: "transient_failure",
    Connectivity.SHUTDOWN.name: "shutdown",
}

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


def endpoint_state(status: EndpointStatus) -> str:
    """One of :data:`ENDPOINT_STATES` for an endpoint snapshot, the first that holds of:

    ``ejected`` by outlier detection; not connected: ``connecting`` (also when idle),
    ``transient_failure`` or ``shutdown``; connected but its health check does not (yet)
    say SERVING: ``not_serving``; taking calls on trial after an ejection: ``half_open``;
    else ``serving``. A connectivity name it does not know raises ``KeyError``.
    """
    if status.ejected:
        return "ejected"
    if status.state != Connectivity.READY.name:
        return _UNCONNECTED[status.state]
    if not status.available:
        return "not_serving"
    return "half_open" if status.half_open else "serving"


def grpc_method(service: str, method: str) -> str:
    """The ``grpc.method`` attribute: ``"pkg.Service/Method"``.

    >>> grpc_method("echo.Echo", "Echo")
    'echo.Echo/Echo'
    """
    return f"{service}/{method}"


class ClientMetrics:
    """Every instrument of one channel; ``target`` is its ``grpc.target`` attribute.

    A channel registers (:meth:`register`) the methods its generated stubs call; any other
    method is recorded as :data:`OTHER_METHOD` (see :meth:`method_attribute`).

    ``endpoints`` (a bound method, such as the balancer's ``statuses``) feeds the
    observable per-endpoint instruments (outstanding calls, status); it is held weakly,
    so the meter provider does not keep a dropped channel's balancer alive.
    """

    def __init__(
        self,
        meter_provider: Any,
        target: str,
        endpoints: Callable[[], list[EndpointStatus]] | None = None,
    ) -> None:
        meter = get_meter(SCOPE, meter_provider=meter_provider)
        self.target = target
        self._registered: set[str] = set()
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
        observed = _observed_by(meter)
        if endpoints is not None:
            observed.add(_Source(target, weakref.WeakMethod(endpoints)))

    def register(self, service: str, method: str) -> None:
        """Record ``service/method`` by its full name from now on (a stub registered it)."""
        self._registered.add(grpc_method(service, method))

    def method_attribute(self, service: str, method: str) -> str:
        """The ``grpc.method`` of a call: ``grpc_method(service, method)`` if registered,
        else :data:`OTHER_METHOD`."""
        name = grpc_method(service, method)
        return name if name in self._registered else OTHER_METHOD

    def attempt_started(self, method: str) -> None:
        """Count an attempt of ``method`` (a :meth:`method_attribute`)."""
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


class _Source:
    """One channel's endpoints as the per-endpoint instruments see them: its target and
    its ``statuses`` method, held weakly (dead once the balancer is gone)."""

    def __init__(self, target: str, statuses: weakref.WeakMethod[Any]) -> None:
        self.target = target
        self.statuses = statuses
        self.logged = False  # whether a failure to observe it was logged

    def observe(
        self, observe: Callable[[EndpointStatus, dict[str, str]], list[Observation]]
    ) -> list[Observation]:
        """``observe``'s observations of every endpoint, given its attributes; an endpoint
        it fails on (or a balancer that fails to list them) is logged and left out."""
        statuses = self.statuses()
        if statuses is None:
            return []
        observations: list[Observation] = []
        try:
            for status in statuses():
                try:
                    where = {"server.address": status.address, "grpc.target": self.target}
                    observations.extend(observe(status, where))
                except Exception:
                    self._failed(status.address)
        except Exception:
            self._failed("list")
        return observations

    def _failed(self, what: str) -> None:
        """Log the exception being handled: the first time at ERROR, then at DEBUG (a
        collection runs every few seconds and would repeat it)."""
        level = logging.DEBUG if self.logged else logging.ERROR
        self.logged = True
        _log.log(level, "metrics of %s: endpoint %s not observed", self.target, what, exc_info=True)


def _outstanding(status: EndpointStatus, where: dict[str, str]) -> list[Observation]:
    return [Observation(status.outstanding, where)]


def _status(status: EndpointStatus, where: dict[str, str]) -> list[Observation]:
    current = endpoint_state(status)
    return [
        Observation(int(state == current), {**where, "resilientrpc.endpoint.state": state})
        for state in ENDPOINT_STATES
    ]


class _Observed:
    """The observable per-endpoint instruments of one meter and every channel they observe.

    A meter provider hands every channel the same meter, and a meter makes an instrument
    name once (a second ``create_observable_gauge`` returns the first, its callbacks
    dropped), so the instruments are made once per meter and each collection observes
    the channels still alive, forgetting the others.
    """

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._sources: list[_Source] = []
        meter.create_observable_gauge(
            "resilientrpc.endpoint.outstanding",
            callbacks=[self._observe_outstanding],
            unit="{call}",
            description="Calls in flight on an endpoint.",
        )
        meter.create_observable_up_down_counter(
            "resilientrpc.endpoint.status",
            callbacks=[self._observe_status],
            unit="1",
            description="1 for the endpoint's current state, 0 for the other states.",
        )

    def add(self, source: _Source) -> None:
        with self._lock:
            self._sources = [*self._live(), source]

    def _observe_outstanding(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(_outstanding)

    def _observe_status(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(_status)

    def _live(self) -> list[_Source]:
        return [source for source in self._sources if source.statuses() is not None]

    def _observe(
        self, observe: Callable[[EndpointStatus, dict[str, str]], list[Observation]]
    ) -> Iterable[Observation]:
        with self._lock:
            self._sources = sources = self._live()
        return [observation for source in sources for observation in source.observe(observe)]


_observed: weakref.WeakKeyDictionary[Meter, _Observed] = weakref.WeakKeyDictionary()
_observed_lock = threading.Lock()


def _observed_by(meter: Meter) -> _Observed:
    """The per-endpoint instruments of ``meter``, made on first use."""
    with _observed_lock:
        observed = _observed.get(meter)
        if observed is None:
            observed = _observed[meter] = _Observed(meter)
        return observed
