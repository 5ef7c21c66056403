"""Background work of one channel, as asyncio tasks on one event loop.

The supervisor keeps the balancer's endpoints in step with the target (re-resolving DNS
names), watches each endpoint's connectivity through a ``grpc.aio`` channel (one task per
endpoint, no thread per endpoint), and rebuilds the picker on the strategy's timer when
weights change over time. The synchronous channel runs it on its one loop thread; the
asyncio channel runs it on the caller's loop. All balancer mutations happen here, one at
a time, on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio

from resilientrpc.balancer import Balancer
from resilientrpc.endpoint import Connectivity, Endpoint
from resilientrpc.targets import DNS_REFRESH_PERIOD, Target, resolve

__all__ = ["Connector", "Supervisor"]

_log = logging.getLogger(__name__)

#: Opens an endpoint's connections (setting ``endpoint.transport``); returns the aio
#: channel whose connectivity the supervisor watches.
Connector = Callable[[Endpoint], grpc.aio.Channel]
#: Closes what the connector opened for an endpoint.
Disconnector = Callable[[Endpoint, grpc.aio.Channel], Awaitable[None]]


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
    ) -> None:
        self._balancer = balancer
        self._target = target
        self._connect = connect
        self._disconnect = disconnect
        self._dns_refresh_period = dns_refresh_period
        self._watchers: dict[str, tuple[asyncio.Task[None], grpc.aio.Channel]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        """Start the background tasks; must run on the supervisor's event loop."""
        if self._target.is_dns:
            self._tasks.append(asyncio.ensure_future(self._resolve_forever()))
        else:
            self.set_addresses(self._target.addresses)
        period = self._balancer.strategy.refresh_period
        if period is not None:
            self._tasks.append(asyncio.ensure_future(self._refresh_forever(period)))

    def set_addresses(self, addresses: list[str] | tuple[str, ...]) -> None:
        added, removed = self._balancer.set_addresses(addresses)
        for endpoint in removed:
            task, control = self._watchers.pop(endpoint.address)
            task.cancel()
            self._tasks.append(asyncio.ensure_future(self._close_endpoint(task, endpoint, control)))
        for endpoint in added:
            control = self._connect(endpoint)
            task = asyncio.ensure_future(self._watch(endpoint, control))
            self._watchers[endpoint.address] = (task, control)

    async def _close_endpoint(
        self, task: asyncio.Task[None], endpoint: Endpoint, control: grpc.aio.Channel
    ) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._disconnect(endpoint, control)

    async def _watch(self, endpoint: Endpoint, control: grpc.aio.Channel) -> None:
        """Follow one endpoint's connectivity for as long as it is a member."""
        state = control.get_state(try_to_connect=True)
        while True:
            error = None
            if state is Connectivity.TRANSIENT_FAILURE:
                error = f"failed to connect to {endpoint.address}"
            self._balancer.set_state(endpoint, state, error)
            await control.wait_for_state_change(state)
            # Asking again with try_to_connect keeps an IDLE channel reconnecting.
            state = control.get_state(try_to_connect=True)

    async def _resolve_forever(self) -> None:
        while True:
            try:
                addresses = await resolve(self._target)
            except OSError as error:
                _log.warning("resolving %s failed: %s", self._target.dns_host, error)
                if not self._watchers:  # keep the last good addresses, else fail calls
                    self._balancer.set_resolution_error(
                        f"resolving {self._target.dns_host!r} failed: {error}"
                    )
            else:
                self.set_addresses(addresses)
            await asyncio.sleep(self._dns_refresh_period)

    async def _refresh_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self._balancer.refresh()

    async def aclose(self) -> None:
        """Stop every task and close every control connection; publish SHUTDOWN."""
        if self._closed:
            return
        self._closed = True
        tasks = [task for task, _ in self._watchers.values()] + self._tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for address, (_task, control) in list(self._watchers.items()):
            endpoint = next(e for e in self._balancer.endpoints if e.address == address)
            await self._disconnect(endpoint, control)
        self._watchers.clear()
        self._balancer.shutdown()
