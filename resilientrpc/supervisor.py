"""Background work of one channel, as asyncio tasks on one event loop.

The supervisor keeps the balancer's endpoints in step with the target (re-resolving DNS
names), watches each endpoint's connectivity through a ``grpc.aio`` channel (one task per
endpoint, no thread per endpoint), and rebuilds the picker on the strategy's timer when
weights change over time; with outlier detection on, it runs the
:class:`~resilientrpc.outlier.OutlierDetector`'s sweep task. The synchronous channel runs
it on its one loop thread; the asyncio channel runs it on the caller's loop. All balancer
mutations happen here, one at a time, on that loop.

Background work survives whatever one endpoint's data does: an exception while handling
one endpoint's change, a refresh or a resolution is logged and the task carries on
watching (the balancer itself never lets a strategy failure escape). Opening an
endpoint's connection failing fails that endpoint only (TRANSIENT_FAILURE, with the
error as its reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import grpc
import grpc.aio

from resilientrpc.balancer import Balancer
from resilientrpc.config import HealthCheckConfig, OutlierDetection
from resilientrpc.endpoint import Connectivity, Endpoint
from resilientrpc.heartbeat import Heartbeats
from resilientrpc.outlier import OutlierDetector
from resilientrpc.targets import DNS_REFRESH_PERIOD, Target, resolve

__all__ = ["DRAIN_TIMEOUT", "WATCH_SETTLE_TIMEOUT", "Connector", "Supervisor"]

_log = logging.getLogger(__name__)

#: Opens an endpoint's connections (setting ``endpoint.transport``); returns the aio
#: channel whose connectivity the supervisor watches.
Connector = Callable[[Endpoint], grpc.aio.Channel]
#: Closes what the connector opened for an endpoint.
Disconnector = Callable[[Endpoint, grpc.aio.Channel], Awaitable[None]]


#: How long a removed endpoint's calls in flight may finish before its connection closes.
DRAIN_TIMEOUT = 30.0
#: How often a draining endpoint is checked for calls still in flight.
DRAIN_POLL = 0.05
#: How long the sync channel's closing waits for grpc to end its connectivity watches.
WATCH_SETTLE_TIMEOUT = 5.0


@contextlib.contextmanager
def _logged(doing: str) -> Iterator[None]:
    """Log an exception from ``doing`` and carry on: one failure must not end a task."""
    try:
        yield
    except Exception:
        _log.exception("background work failed %s; carrying on", doing)


class Supervisor:
    """Resolution, connectivity watching and weight refresh for one balancer."""

    def __init__(
        self,
        balancer: Balancer,
        target: Target,
        *,
        connect: Connector,
        disconnect: Disconnector,
        dns_refresh_period: float = DNS_REFRESH_PERIOD,
        drain_timeout: float = DRAIN_TIMEOUT,
        watch_settle_timeout: float = 0.0,
        health_check: HealthCheckConfig | None = None,
        outliers: OutlierDetection | None = None,
    ) -> None:
        self._balancer = balancer
        #: Heartbeats over grpc.health.v1 (None: health checking off, as gRPC without
        #: ``healthCheckConfig``).
        self._health_check = health_check
        self._heartbeats = (
            Heartbeats(balancer, health_check, self._spawn) if health_check is not None else None
        )
        #: Passive outlier detection (None: off).
        self._outliers = outliers
        # Built now: it installs the endpoints' outcome observer before any is added.
        self._detector = None if outliers is None else OutlierDetector(balancer, outliers)
        self._target = target
        self._connect = connect
        self._disconnect = disconnect
        self._dns_refresh_period = dns_refresh_period
        self._drain_timeout = drain_timeout
        self._watch_settle_timeout = watch_settle_timeout
        self._watchers: dict[str, tuple[asyncio.Task[None], grpc.aio.Channel]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining: dict[Endpoint, grpc.aio.Channel] = {}
        self._state_waits: set[asyncio.Future[None]] = set()
        self._closed = False

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A background task that is forgotten when it ends, and logged if it fails."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._task_ended, name))
        return task

    def _task_ended(self, name: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background task %s failed", name, exc_info=task.exception())

    def start(self) -> None:
        """Start the background tasks; must run on the supervisor's event loop."""
        loop = asyncio.get_running_loop()
        self._balancer.start(loop.call_later)
        if self._detector is not None:
            self._spawn(self._detector.start(loop), "outlier detection")
        if self._target.is_dns:
            self._spawn(self._resolve_forever(), "resolve")
        else:
            self.set_addresses(self._target.addresses)
        period = self._balancer.strategy.refresh_period
        if period is not None:
            self._spawn(self._refresh_forever(period), "weight refresh")

    def set_addresses(self, addresses: list[str] | tuple[str, ...]) -> None:
        added, removed = self._balancer.set_addresses(addresses)
        for endpoint in removed:
            watcher = self._watchers.pop(endpoint.address, None)
            if watcher is None:  # never connected
                continue
            task, control = watcher
            task.cancel()
            if self._heartbeats is not None:
                self._heartbeats.stop(endpoint)
            self._draining[endpoint] = control
            self._spawn(self._retire(task, endpoint, control), f"retire {endpoint.address}")
        for endpoint in added:
            try:
                control = self._connect(endpoint)
            except Exception as error:  # this endpoint only: the others carry on
                _log.exception("opening a connection to %s failed", endpoint.address)
                self._balancer.set_state(
                    endpoint, Connectivity.TRANSIENT_FAILURE, f"cannot connect: {error!r}"
                )
                continue
            task = self._spawn(self._watch(endpoint, control), f"watch {endpoint.address}")
            self._watchers[endpoint.address] = (task, control)

    async def _retire(
        self, task: asyncio.Task[None], endpoint: Endpoint, control: grpc.aio.Channel
    ) -> None:
        """Close a removed endpoint once its calls in flight are done (as gRPC drains)."""
        with contextlib.suppress(asyncio.CancelledError):
            await task
        deadline = asyncio.get_running_loop().time() + self._drain_timeout
        with contextlib.suppress(asyncio.CancelledError):  # the channel closing: stop now
            while endpoint.outstanding > 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(DRAIN_POLL)
        if self._draining.pop(endpoint, None) is not None:
            await self._disconnect(endpoint, control)

    async def _watch(self, endpoint: Endpoint, control: grpc.aio.Channel) -> None:
        """Follow one endpoint's connectivity for as long as it is a member."""
        state = control.get_state(try_to_connect=True)
        while True:
            error = None
            if state is Connectivity.TRANSIENT_FAILURE:
                error = f"failed to connect to {endpoint.address}"
            with _logged(f"recording {endpoint.address} {state.name}"):
                self._balancer.set_state(endpoint, state, error)
            if self._heartbeats is not None:
                with _logged(f"following the health of {endpoint.address}"):
                    self._heartbeats.connectivity(endpoint, control, state)
            await self._state_change(control, state)
            # Asking again with try_to_connect keeps an IDLE channel reconnecting; the
            # connection calls use (the sync twin's own) is kept connecting alongside.
            state = control.get_state(try_to_connect=True)
            transport = endpoint.transport
            if transport is not None:
                with _logged(f"asking {endpoint.address} to connect"):
                    transport.try_to_connect()

    async def _state_change(self, control: grpc.aio.Channel, state: Connectivity) -> None:
        """``control.wait_for_state_change(state)``, whose end is awaited even if we stop.

        Cancelling a task that awaits ``wait_for_state_change`` does not withdraw the watch
        from gRPC core: it stays registered until the channel's state changes, and closing
        the channel (state SHUTDOWN) completes it a moment *after* ``close()`` returned.
        grpc.aio's one poller thread then hands that completion to the loop the watch was
        made on, with ``loop.call_soon_threadsafe`` from whichever loop bound to grpc.aio
        drains the poller's queue. Had that loop been closed meanwhile (the sync channel
        closes its loop right after :meth:`aclose`), the other loop logs "Exception in
        callback PollerCompletionQueue._handle_events ... RuntimeError: Event loop is
        closed". So the wait runs as its own (shielded) task, and :meth:`aclose` awaits
        what is left of them after closing every channel, for up to
        ``watch_settle_timeout`` seconds.

        That wait is prompt (about a millisecond) on a channel that carries no calls, as the
        sync channel's watch-only ones. On a grpc.aio channel whose call objects are still
        alive, closing did not end the watches for seconds (seen with grpcio 1.85), so the
        asyncio twin, whose one channel per endpoint carries its calls, waits for none
        (timeout 0) and cancels them, as before.
        """
        wait = asyncio.ensure_future(control.wait_for_state_change(state))
        self._state_waits.add(wait)
        wait.add_done_callback(self._state_wait_ended)
        await asyncio.shield(wait)

    def _state_wait_ended(self, wait: asyncio.Future[None]) -> None:
        self._state_waits.discard(wait)
        if not wait.cancelled():
            wait.exception()  # retrieved: a watch that fails after we stopped is no news

    async def _resolve_forever(self) -> None:
        while True:
            try:
                addresses = await resolve(self._target)
            except Exception as error:  # OSError, and UnicodeError for odd names alike
                _log.warning("resolving %s failed: %s", self._target.dns_host, error)
                if not self._watchers:  # keep the last good addresses, else fail calls
                    self._balancer.set_resolution_error(
                        f"resolving {self._target.dns_host!r} failed: {error}"
                    )
            else:
                with _logged(f"updating the addresses of {self._target.dns_host}"):
                    self.set_addresses(addresses)
            await asyncio.sleep(self._dns_refresh_period)

    async def _refresh_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            with _logged("refreshing weights"):
                self._balancer.refresh()

    async def aclose(self) -> None:
        """Publish SHUTDOWN, then stop every task and close every connection.

        SHUTDOWN comes first: from then on no call picks an endpoint whose connection is
        about to close (new and waiting calls end CANCELLED, "channel closed").
        """
        if self._closed:
            return
        self._closed = True
        if self._detector is not None:
            self._detector.close()
        self._balancer.shutdown()
        if self._heartbeats is not None:
            self._heartbeats.stop_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()  # their tracebacks would keep heartbeat calls alive past close
        members = {e.address: e for e in self._balancer.endpoints}
        closing = [(members[a], control) for a, (_task, control) in self._watchers.items()]
        closing += list(self._draining.items())
        self._watchers.clear()
        self._draining.clear()
        for endpoint, control in closing:
            await self._disconnect(endpoint, control)
        # Every channel is closed: grpc now completes the watches still registered.
        waits = set(self._state_waits)
        if waits and self._watch_settle_timeout > 0:
            _ended, waits = await asyncio.wait(waits, timeout=self._watch_settle_timeout)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
