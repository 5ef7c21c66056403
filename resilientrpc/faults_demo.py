"""``resilientrpc demo --scenario faults``: backends hang, fail and slow down, and come back.

Five Echo backends run as child processes (``steady``, ``hang``, ``fail``, ``slow``,
``flip``) behind one :class:`ResilientChannel` with health checking (``healthCheckConfig``,
a 0.5 s + 0.5 s heartbeat) and outlier detection (``outlier_detection`` wrapping the
strategy: consecutive failures and latency ejection). Paced traffic runs throughout
while a scripted timeline injects real faults - SIGSTOP / SIGCONT, every call failing,
slow replies, NOT_SERVING, three backends down at once (panic mode) - and undoes them.
The channel's events are printed as they happen, and a table shows each endpoint leave
traffic and come back: on a terminal it is redrawn in place under the event log,
otherwise printed every few seconds.

Every duration (timeline, heartbeat, ejection times, call deadline) is multiplied by
``time_scale``, so a test runs the whole story in a few seconds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import grpc

from resilientrpc import events
from resilientrpc.channel import ResilientChannel
from resilientrpc.config import (
    CommonLbConfig,
    ConsecutiveFailures,
    HealthCheckConfig,
    LatencyEjection,
    LeastRequest,
    OutlierDetection,
    PeakEwma,
    Random,
    RoundRobin,
    ServiceConfig,
)
from resilientrpc.endpoint import EndpointStatus
from resilientrpc.events import EndpointEvent
from resilientrpc.testing import BackendProcess, echo_pb2, echo_pb2_grpc

__all__ = [
    "FAULT_BACKENDS",
    "FAULT_STRATEGIES",
    "RATE",
    "Step",
    "faults_config",
    "run_faults",
    "timeline",
]

#: The backends, in table order: each name says what the timeline does to it.
FAULT_BACKENDS = ("steady", "hang", "fail", "slow", "flip")
#: The strategies the scenario can run under its outlier detection.
FAULT_STRATEGIES = {
    "round_robin": RoundRobin,
    "least_request": LeastRequest,
    "peak_ewma": PeakEwma,
    "random": Random,
}
#: Calls per second over all client threads (the load is paced, so it stays bounded).
RATE = 200.0
#: Call deadline at time scale 1, seconds: a call to a hung backend fails after this.
_CALL_TIMEOUT = 1.0
#: Heartbeat interval and timeout at time scale 1 (dead after their sum).
_HEARTBEAT = (0.5, 0.5)
#: A table every this many seconds (scaled) when the output is not a terminal.
_TABLE_EVERY = 3.0
#: The table is redrawn this often on a terminal (not scaled).
_REDRAW_EVERY = 0.5
#: How long the channel may take to have an endpoint that takes calls, seconds.
_READY_TIMEOUT = 15.0


@dataclasses.dataclass(frozen=True)
class Step:
    """One timeline entry: at ``at`` seconds (unscaled), ``what`` happens to ``backend``."""

    at: float
    backend: str
    what: str
    act: Callable[[dict[str, BackendProcess]], object]


def _configure(name: str, **changes: object) -> Callable[[dict[str, BackendProcess]], object]:
    return lambda backends: backends[name].configure(**changes)


def _pause(backends: dict[str, BackendProcess]) -> None:
    backends["hang"].pause()


def _resume(backends: dict[str, BackendProcess]) -> None:
    backends["hang"].resume()


def _all_health(status: str) -> Callable[[dict[str, BackendProcess]], None]:
    def act(backends: dict[str, BackendProcess]) -> None:
        for name in ("fail", "slow", "flip"):
            backends[name].configure(health=status)

    return act


def timeline(slow_ms: float) -> tuple[Step, ...]:
    """The script, in order; the last step ends the run."""
    return (
        Step(2, "hang", "SIGSTOP: frozen, its connections open", _pause),
        Step(6, "hang", "SIGCONT: running again", _resume),
        Step(8, "fail", "every call fails with UNAVAILABLE", _configure("fail", error_rate=1.0)),
        Step(13, "fail", "answers again", _configure("fail", error_rate=0.0)),
        Step(15, "slow", f"+{slow_ms:g} ms per reply", _configure("slow", latency=slow_ms / 1000)),
        Step(21, "slow", "fast again", _configure("slow", latency=0.0)),
        Step(23, "flip", "reports NOT_SERVING", _configure("flip", health="NOT_SERVING")),
        Step(25, "flip", "reports SERVING", _configure("flip", health="SERVING")),
        Step(27, "fail,slow,flip", "all three report NOT_SERVING", _all_health("NOT_SERVING")),
        Step(30, "fail,slow,flip", "all three report SERVING", _all_health("SERVING")),
        Step(33, "", "end", lambda backends: None),
    )


def faults_config(strategy: str, time_scale: float, *, detection: bool = True) -> ServiceConfig:
    """The channel's service config: ``strategy`` under health checking and outlier detection.

    The same as this service config JSON (times at scale 1)::

        {"loadBalancingConfig": [{"outlier_detection": {
             "interval": "1s", "baseEjectionTime": "2s", "maxEjectionTime": "10s",
             "maxEjectionPercent": 40,
             "consecutiveFailures": {"count": 5},
             "latencyEjection": {"factor": 3, "minimumDifference": "0.02s",
                                 "requestVolume": 5},
             "childPolicy": [{"round_robin": {}}]}}],
         "healthCheckConfig": {"serviceName": "", "interval": "0.5s", "timeout": "0.5s"},
         "commonLbConfig": {"healthyPanicThreshold": 50}}

    Without ``detection``: the strategy alone, no health checking, no outlier detection.
    """
    policy = FAULT_STRATEGIES[strategy]()
    if not detection:
        return ServiceConfig(load_balancing=policy, outlier_detection=OutlierDetection())
    interval, timeout = (value * time_scale for value in _HEARTBEAT)
    return ServiceConfig(
        load_balancing=policy,
        health_check=HealthCheckConfig(service_name="", interval=interval, timeout=timeout),
        outlier_detection=OutlierDetection(
            interval=1.0 * time_scale,
            base_ejection_time=2.0 * time_scale,
            max_ejection_time=10.0 * time_scale,
            max_ejection_percent=40,
            consecutive_failures=ConsecutiveFailures(count=5),
            latency_ejection=LatencyEjection(factor=3.0, minimum_difference=0.02, request_volume=5),
        ),
        common_lb=CommonLbConfig(healthy_panic_threshold=50.0),
    )


class _Screen:
    """The output: log lines, and the table (redrawn in place under them on a terminal)."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self._out = out
        self.live = live
        self._lock = threading.Lock()
        self._table: list[str] = []

    def line(self, text: str) -> None:
        with self._lock:
            self._erase()
            self._out.write(text + "\n")
            self._draw()

    def table(self, lines: list[str]) -> None:
        with self._lock:
            if self.live:
                self._erase()
                self._table = lines
                self._draw()
            else:
                self._out.write("\n".join(lines) + "\n\n")
                self._out.flush()

    def close(self) -> None:
        with self._lock:
            self._table = []  # leave the last one on screen

    def _erase(self) -> None:
        if self.live and self._table:
            self._out.write(f"\x1b[{len(self._table)}F\x1b[J")

    def _draw(self) -> None:
        if self.live and self._table:
            self._out.write("\n".join(self._table) + "\n")
        self._out.flush()


class _Run:
    """One run of the scenario: names, counters between tables, panic mode, output."""

    def __init__(self, screen: _Screen, names: dict[str, str], started: float) -> None:
        self.screen = screen
        self.names = names
        self.started = started
        self.panic: tuple[bool, str] = (False, "")
        self._seen: set[EndpointEvent] = set()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}
        self._last_time = time.monotonic()

    def clock(self, at: float | None = None) -> str:
        """``at`` (monotonic; default now) as seconds since the channel was created."""
        return f"{(time.monotonic() if at is None else at) - self.started:5.1f}s"

    def on_event(self, event: EndpointEvent) -> None:
        """Print one event (once: start-up events may come both replayed and live)."""
        with self._lock:
            if event in self._seen:
                return
            self._seen.add(event)
            if event.kind in (events.PANIC_ENTERED, events.PANIC_LEFT):
                self.panic = (event.kind == events.PANIC_ENTERED, event.reason)
        who = self.names.get(event.address, "channel")
        where = f"{event.address} {who}" if event.address else "channel"
        when = self.clock(event.monotonic)
        self.screen.line(f"  {when}  event  {where}: {event.kind}: {event.reason}")

    def table(self, statuses: list[EndpointStatus]) -> list[str]:
        now, wall = time.monotonic(), time.time()
        elapsed = max(now - self._last_time, 1e-3)
        panic, reason = self.panic
        lines = [
            f"  {self.clock()}  table  panic mode: {'ON - ' + reason if panic else 'off'}",
            f"    {'backend':<7}{'port':>6}  {'state':<10}{'traffic':<10}{'health':<8}"
            f"{'calls/s':>8}{'fails/s':>8}{'ewma ms':>9}  last change",
        ]
        for status in statuses:
            calls, failures = self._last.get(status.address, (0, 0))
            self._last[status.address] = (status.calls, status.failures)
            lines.append(
                f"    {self.names.get(status.address, '?'):<7}"
                f"{status.address.rpartition(':')[2]:>6}  {_short_state(status.state):<10}"
                f"{_traffic(status):<10}{_health(status.healthy):<8}"
                f"{(status.calls - calls) / elapsed:>8.0f}"
                f"{(status.failures - failures) / elapsed:>8.0f}"
                f"{_ms(status.latency_ms):>9}  {_last_change(status, wall)}"
            )
        self._last_time = now
        return lines


def _short_state(state: str) -> str:
    return "FAILING" if state == "TRANSIENT_FAILURE" else state


def _traffic(status: EndpointStatus) -> str:
    if status.ejected:
        return "EJECTED"
    if status.half_open:
        return "half-open"
    return "in" if status.available else "OUT"


def _health(healthy: bool | None) -> str:
    return "-" if healthy is None else ("serving" if healthy else "DOWN")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _last_change(status: EndpointStatus, wall: float) -> str:
    if not status.events:
        return "-"
    event = status.events[-1]
    reason = event.reason if len(event.reason) <= 48 else event.reason[:45] + "..."
    return f"{event.kind}: {reason} ({wall - event.time:.1f}s ago)"


def _send(
    channel: ResilientChannel, stop: threading.Event, rate: float, timeout: float, limit: int
) -> None:
    """Paced Echo calls until ``stop`` or ``limit`` calls; failures are the table's job."""
    stub = echo_pb2_grpc.EchoStub(channel)
    gap = 1.0 / rate
    due = time.monotonic()
    for _ in range(limit):
        if stop.is_set():
            return
        with contextlib.suppress(grpc.RpcError):
            stub.Echo(echo_pb2.EchoRequest(message="demo"), timeout=timeout)
        due = max(due + gap, time.monotonic() - gap)
        stop.wait(max(0.0, due - time.monotonic()))


def _start_backends() -> dict[str, BackendProcess]:
    """Start every backend child at once; stop them all if any fails to start."""
    children = {name: BackendProcess(name) for name in FAULT_BACKENDS}
    with concurrent.futures.ThreadPoolExecutor(len(children)) as pool:
        starts = [pool.submit(child.start) for child in children.values()]
    try:
        for start in starts:
            start.result()
    except BaseException:
        for child in children.values():
            child.stop()
        raise
    return children


def run_faults(
    *,
    strategy: str = "round_robin",
    threads: int = 6,
    slow_ms: float = 150.0,
    time_scale: float = 1.0,
    detection: bool = True,
    out: TextIO | None = None,
    live: bool | None = None,
) -> int:
    """Run the scenario, printing to ``out`` (stdout); the exit status.

    ``live`` redraws the table in place (default: when ``out`` is a terminal).
    """
    out = sys.stdout if out is None else out
    screen = _Screen(out, out.isatty() if live is None else live)
    steps = timeline(slow_ms)
    config = faults_config(strategy, time_scale, detection=detection)
    timeout = _CALL_TIMEOUT * time_scale
    children = _start_backends()
    try:
        names = {child.address: name for name, child in children.items()}
        out.write(
            "backends (child processes): "
            + ", ".join(f"{name} {child.address}" for name, child in children.items())
            + "\n"
        )
        out.write(_describe(config, strategy, threads, timeout, time_scale) + "\n\n")
        run = _Run(screen, names, time.monotonic())
        with ResilientChannel(list(names), config=config) as channel:
            channel.add_event_listener(run.on_event)
            for status in channel.endpoints():  # what happened before the listener was added
                for event in status.events:
                    run.on_event(event)
            try:
                grpc.channel_ready_future(channel).result(timeout=_READY_TIMEOUT)
            except grpc.FutureTimeoutError:
                screen.line(f"no backend could take calls within {_READY_TIMEOUT:g} s; giving up")
                return 1
            _play(channel, children, run, steps, threads, timeout, time_scale)
    finally:
        screen.close()
        for child in children.values():
            child.stop()
    return 0


def _play(
    channel: ResilientChannel,
    children: dict[str, BackendProcess],
    run: _Run,
    steps: Sequence[Step],
    threads: int,
    timeout: float,
    time_scale: float,
) -> None:
    """Send traffic, and play ``steps`` while tables are shown; returns at the last step."""
    stop = threading.Event()
    end = steps[-1].at * time_scale
    limit = int(RATE / threads * (end + 5)) + 1  # a bound on each sender's calls
    senders = [
        threading.Thread(
            target=_send,
            args=(channel, stop, RATE / threads, timeout, limit),
            name=f"demo-sender-{index}",
        )
        for index in range(threads)
    ]
    begun = time.monotonic()  # the timeline's zero: the channel is ready
    for sender in senders:
        sender.start()
    try:
        every = _REDRAW_EVERY if run.screen.live else _TABLE_EVERY * time_scale
        next_table = begun + every
        for step in steps:
            due = begun + step.at * time_scale
            while (now := time.monotonic()) < due:
                if now >= next_table:
                    run.screen.table(run.table(channel.endpoints()))
                    next_table += every
                time.sleep(max(0.0, min(due, next_table) - time.monotonic()))
            label = f"{step.backend}: " if step.backend else ""
            run.screen.line(f"  {run.clock()}  ==>    {label}{step.what}")
            step.act(children)
        run.screen.table(run.table(channel.endpoints()))
    finally:
        stop.set()
        for sender in senders:
            sender.join()


def _describe(
    config: ServiceConfig, strategy: str, threads: int, timeout: float, time_scale: float
) -> str:
    lines = [
        f"{strategy}, {RATE:g} calls/s over {threads} threads, {timeout:g} s deadline per call"
        + (f", every time x{time_scale:g}" if time_scale != 1 else "")
    ]
    health, outliers = config.health_check, config.outlier_detection
    if health is None or outliers is None or not outliers.enabled:
        lines.append("detection off: no health checking, no outlier detection")
    else:
        lines.append(
            f"health checking: grpc.health.v1 Watch, dead after {health.interval:g} s + "
            f"{health.timeout:g} s without a sign of life"
        )
        lines.append(
            "outlier detection: ejected after 5 failures in a row or when 3x slower than "
            f"its peers, for {outliers.base_ejection_time:g} s and longer each time, then "
            f"half-open; at most {outliers.max_ejection_percent} % ejected; panic mode "
            f"below {config.common_lb.healthy_panic_threshold:g} % available"
        )
    return "\n".join(lines)
