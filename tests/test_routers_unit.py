"""Both routers against a hand-fed balancer: pick now, wait for a picker, or fail (no network)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from resilientrpc._calls import LocalRpcError
from resilientrpc.aio.router import AsyncRouter
from resilientrpc.balancer import Balancer
from resilientrpc.endpoint import Endpoint
from resilientrpc.picker import Chooser, Metadata, PickResult
from resilientrpc.router import SyncRouter
from resilientrpc.strategies import RoundRobinStrategy
from tests.fakes import Clock

C = grpc.ChannelConnectivity
S = grpc.StatusCode
ADDRESSES = ["127.0.0.1:10000", "127.0.0.1:10001"]


class FindsNothing(RoundRobinStrategy):
    """A strategy whose chooser finds no endpoint for any call (as ring hash can)."""

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        return lambda metadata: None


class Echo(RoundRobinStrategy):
    """Always the first ready endpoint; remembers the metadata of every choice."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Metadata | None] = []

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        def choose(metadata: Metadata | None) -> Endpoint:
            self.seen.append(metadata)
            return ready[0]

        return choose


class Toggle(RoundRobinStrategy):
    """Finds nothing until ``finds`` is set (then the first ready endpoint)."""

    finds = False

    def chooser(self, ready: tuple[Endpoint, ...], members: tuple[Endpoint, ...]) -> Chooser:
        found = ready[0] if self.finds else None
        return lambda metadata: found


def balancer_in(
    state: grpc.ChannelConnectivity | None, strategy: RoundRobinStrategy | None = None
) -> Balancer:
    """Two endpoints, both in ``state`` (None: not resolved yet)."""
    balancer = Balancer(strategy or RoundRobinStrategy(rng=random.Random(1)))
    if state is not None:
        balancer.set_addresses(ADDRESSES)
        set_all(balancer, state)
    return balancer


def set_all(balancer: Balancer, state: grpc.ChannelConnectivity) -> None:
    if state is C.SHUTDOWN:
        balancer.shutdown()
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, state)


class Calls:
    """Records the start / fail callbacks of deferred calls, and what ``deliver`` was given."""

    def __init__(self) -> None:
        self.started: list[tuple[PickResult, float | None]] = []
        self.failed: list[LocalRpcError] = []
        self.delivered: list[Callable[[], object]] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.cancelled = 0

    def start(self, pick: PickResult, left: float | None) -> None:
        self.started.append((pick, left))

    def fail(self, error: LocalRpcError) -> None:
        self.failed.append(error)

    def deliver(self, function: Callable[[], object]) -> None:
        self.delivered.append(function)

    def call_later(self, delay: float, function: Callable[[], None]) -> Callable[[], None]:
        self.timers.append((delay, function))
        return self.cancel

    def cancel(self) -> None:
        self.cancelled += 1

    def run_delivered(self) -> None:
        delivered, self.delivered = self.delivered, []
        for function in delivered:
            function()


def sync_router(balancer: Balancer, calls: Calls, clock: Clock | None = None) -> SyncRouter:
    return SyncRouter(
        balancer, clock=clock or Clock(), call_later=calls.call_later, deliver=calls.deliver
    )


def status(error: object) -> tuple[grpc.StatusCode, str]:
    assert isinstance(error, LocalRpcError | grpc.aio.AioRpcError)
    return error.code(), error.details() or ""


# -- the synchronous router: blocking picks ---------------------------------------------


def test_sync_pick_now_picks_from_a_ready_picker_only() -> None:
    clock = Clock()
    assert SyncRouter(balancer_in(C.CONNECTING), clock=clock).pick_now(None) is None
    router = SyncRouter(balancer_in(C.READY), clock=clock)
    assert router.clock is clock
    result = router.pick_now(None)
    assert result is not None and result.endpoint.address in ADDRESSES


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_sync_pick_on_a_ready_picker_keeps_the_whole_timeout(timeout: float | None) -> None:
    result = SyncRouter(balancer_in(C.READY)).pick(None, False, timeout)
    assert isinstance(result, tuple) and result[1] == timeout


@pytest.mark.parametrize(
    ("state", "code", "details"),
    [
        (C.TRANSIENT_FAILURE, S.UNAVAILABLE, "no endpoint available: 127.0.0.1:10000 ("),
        (C.SHUTDOWN, S.CANCELLED, "channel closed"),
    ],
)
def test_sync_pick_fails_at_once_when_it_may_not_wait(
    state: grpc.ChannelConnectivity, code: grpc.StatusCode, details: str
) -> None:
    got = status(SyncRouter(balancer_in(state)).pick(None, False, 10.0))
    assert got[0] is code and got[1].startswith(details)


def test_sync_pick_waits_until_its_deadline() -> None:
    started = time.monotonic()
    got = status(SyncRouter(balancer_in(C.CONNECTING)).pick(None, True, 0.05))
    assert got[0] is S.DEADLINE_EXCEEDED
    assert 0.05 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("state", [C.CONNECTING, C.TRANSIENT_FAILURE])
def test_sync_pick_waits_for_a_ready_picker(state: grpc.ChannelConnectivity) -> None:
    balancer = balancer_in(state)
    router = SyncRouter(balancer)
    later = threading.Timer(0.05, set_all, (balancer, C.READY))
    later.start()
    try:
        result = router.pick([("k", "v")], True, 5.0)
    finally:
        later.join()
    assert isinstance(result, tuple)
    pick, left = result
    assert pick.endpoint.address in ADDRESSES
    assert left is not None and 0 < left < 5.0


def test_sync_pick_without_a_timeout_waits_without_a_deadline() -> None:
    balancer = balancer_in(C.CONNECTING)
    later = threading.Timer(0.05, set_all, (balancer, C.READY))
    later.start()
    try:
        result = SyncRouter(balancer).pick(None, False, None)
    finally:
        later.join()
    assert isinstance(result, tuple) and result[1] is None


# -- the synchronous router: deferred calls ---------------------------------------------


def test_deferred_call_on_a_ready_picker_starts_at_once_in_the_callers_thread() -> None:
    calls = Calls()
    router = sync_router(balancer_in(C.READY), calls)
    withdraw = router.defer(None, False, 3.0, calls.start, calls.fail)
    assert [left for _, left in calls.started] == [3.0]
    assert calls.delivered == [] and router.waiting == 0 and calls.cancelled == 1
    assert withdraw() is False


def test_deferred_call_that_may_not_wait_fails_at_once() -> None:
    calls = Calls()
    router = sync_router(balancer_in(C.TRANSIENT_FAILURE), calls)
    router.defer(None, False, None, calls.start, calls.fail)
    assert [status(e)[0] for e in calls.failed] == [S.UNAVAILABLE] and router.waiting == 0


def test_deferred_call_starts_through_deliver_when_a_picker_takes_it() -> None:
    calls, clock = Calls(), Clock(now=100.0)
    balancer = balancer_in(C.CONNECTING)
    router = sync_router(balancer, calls, clock)
    router.defer([("k", "v")], False, 2.0, calls.start, calls.fail)
    assert [delay for delay, _ in calls.timers] == [2.0]
    assert router.waiting == 1 and calls.started == []
    clock.now = 101.5
    set_all(balancer, C.READY)
    assert calls.started == [] and router.waiting == 0 and calls.cancelled == 1
    calls.run_delivered()
    assert [left for _, left in calls.started] == [0.5]
    calls.timers[0][1]()  # the deadline timer firing late changes nothing
    assert calls.failed == [] and calls.delivered == []


def test_deferred_call_fails_through_deliver_when_its_deadline_passes() -> None:
    calls = Calls()
    router = sync_router(balancer_in(C.CONNECTING), calls)
    withdraw = router.defer(None, True, 2.0, calls.start, calls.fail)
    calls.timers[0][1]()
    assert calls.failed == [] and router.waiting == 0
    calls.run_delivered()
    assert status(calls.failed[0]) == (
        S.DEADLINE_EXCEEDED,
        "deadline exceeded while waiting for an endpoint; no endpoint available: "
        "127.0.0.1:10000 (CONNECTING), 127.0.0.1:10001 (CONNECTING)",
    )
    assert withdraw() is False


def test_deferred_call_whose_deadline_already_passed_gets_a_zero_timer() -> None:
    calls, clock = Calls(), Clock()
    router = sync_router(balancer_in(C.CONNECTING), calls, clock)
    router.defer(None, True, -1.0, calls.start, calls.fail)
    assert [delay for delay, _ in calls.timers] == [0.0]


def test_withdrawn_deferred_call_is_never_settled() -> None:
    calls = Calls()
    balancer = balancer_in(C.CONNECTING)
    router = sync_router(balancer, calls)
    withdraw = router.defer(None, False, None, calls.start, calls.fail)
    assert calls.timers == [] and router.waiting == 1
    assert withdraw() is True and router.waiting == 0
    assert withdraw() is False
    set_all(balancer, C.READY)
    assert calls.delivered == [] and calls.started == []


def test_deferred_wait_for_ready_call_waits_through_failure_until_closed() -> None:
    calls = Calls()
    balancer = balancer_in(C.TRANSIENT_FAILURE)
    router = sync_router(balancer, calls)
    router.defer(None, True, None, calls.start, calls.fail)
    assert router.waiting == 1
    set_all(balancer, C.SHUTDOWN)
    calls.run_delivered()
    assert [status(e) for e in calls.failed] == [(S.CANCELLED, "channel closed")]


@pytest.mark.parametrize("wait_for_ready", [False, True])
def test_deferred_call_a_ready_picker_finds_nothing_for(wait_for_ready: bool) -> None:
    calls = Calls()
    balancer = balancer_in(C.CONNECTING, FindsNothing())
    router = sync_router(balancer, calls)
    router.defer(None, wait_for_ready, None, calls.start, calls.fail)
    set_all(balancer, C.READY)
    calls.run_delivered()
    assert calls.started == []
    assert router.waiting == (1 if wait_for_ready else 0)
    assert [status(e)[0] for e in calls.failed] == ([] if wait_for_ready else [S.UNAVAILABLE])


def test_deferring_with_a_deadline_needs_call_later() -> None:
    calls = Calls()
    router = SyncRouter(balancer_in(C.CONNECTING))
    with pytest.raises(
        RuntimeError,
        match=r"^this router cannot defer calls with a deadline: it has no call_later$",
    ):
        router.defer(None, False, 1.0, calls.start, calls.fail)
    router.defer(None, False, None, calls.start, calls.fail)  # no deadline: fine
    assert router.waiting == 2


# -- the asyncio router -----------------------------------------------------------------


def test_async_pick_now_and_clock() -> None:
    clock = Clock()
    assert AsyncRouter(balancer_in(C.CONNECTING), clock=clock).pick_now(None) is None
    router = AsyncRouter(balancer_in(C.READY), clock=clock)
    assert router.clock is clock and router.pick_now(None) is not None


@pytest.mark.parametrize(
    ("timeout", "deadline", "left"), [(None, None, None), (5.0, None, 5.0), (5.0, 103.0, 3.0)]
)
def test_async_pick_on_a_ready_picker(
    timeout: float | None, deadline: float | None, left: float | None
) -> None:
    router = AsyncRouter(balancer_in(C.READY), clock=Clock(now=100.0))
    pick, got = asyncio.run(router.pick([("k", "v")], False, timeout, deadline))
    assert pick.endpoint.address in ADDRESSES and got == left


@pytest.mark.parametrize(
    ("state", "code"), [(C.TRANSIENT_FAILURE, S.UNAVAILABLE), (C.SHUTDOWN, S.CANCELLED)]
)
def test_async_pick_fails_at_once_when_it_may_not_wait(
    state: grpc.ChannelConnectivity, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(AsyncRouter(balancer_in(state)).pick(None, False, 10.0))
    assert raised.value.code() is code


def test_async_pick_waits_until_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(AsyncRouter(balancer_in(C.CONNECTING)).pick(None, True, 0.05))
    assert raised.value.code() is S.DEADLINE_EXCEEDED
    assert 0.05 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_async_pick_waits_for_a_ready_picker(timeout: float | None) -> None:
    balancer = balancer_in(C.TRANSIENT_FAILURE)
    router = AsyncRouter(balancer)

    async def main() -> tuple[PickResult, float | None]:
        asyncio.get_running_loop().call_later(0.05, set_all, balancer, C.READY)
        return await router.pick(None, True, timeout)

    pick, left = asyncio.run(main())
    assert pick.endpoint.address in ADDRESSES
    assert left is None if timeout is None else left is not None and 0 < left < timeout


def test_async_changed_times_out_or_wakes_every_waiter_on_the_next_picker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    balancer = balancer_in(C.CONNECTING)
    router = AsyncRouter(balancer)

    async def main() -> list[bool]:
        assert await router.changed(0.01) is False
        first = asyncio.ensure_future(router.changed(5.0))
        second = asyncio.ensure_future(router.changed(5.0))
        cancelled = asyncio.ensure_future(router.changed(5.0))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        set_all(balancer, C.READY)
        result = list(await asyncio.gather(first, second))
        set_all(balancer, C.TRANSIENT_FAILURE)  # nobody waits: nothing to wake
        return result

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(main()) == [True, True]
    assert caplog.messages == []


# -- both routers hand the call's metadata to the strategy ------------------------------

KEY = [("x-key", "v")]


def test_sync_router_passes_metadata_on_every_path() -> None:
    echo = Echo()
    balancer = balancer_in(C.READY, echo)
    router = SyncRouter(balancer)
    router.pick_now(KEY)
    router.pick(KEY, False, None)  # the fast path
    set_all(balancer, C.TRANSIENT_FAILURE)
    later = threading.Timer(0.02, set_all, (balancer, C.READY))
    later.start()
    try:
        router.pick(KEY, True, 5.0)  # the waiting path
    finally:
        later.join()
    assert echo.seen == [KEY] * 3


def test_deferred_calls_pass_metadata_and_start_with_the_pick() -> None:
    echo, calls = Echo(), Calls()
    balancer = balancer_in(C.CONNECTING, echo)
    router = sync_router(balancer, calls)
    router.defer(KEY, False, None, calls.start, calls.fail)
    set_all(balancer, C.READY)
    calls.run_delivered()
    router.defer(KEY, False, None, calls.start, calls.fail)  # at once
    assert echo.seen == [KEY, KEY]
    assert [(pick.endpoint, left) for pick, left in calls.started] == [
        (balancer.endpoints[0], None)
    ] * 2


def test_a_failure_picker_leaves_the_deadline_timer_of_a_waiting_call_armed() -> None:
    calls = Calls()
    balancer = balancer_in(C.CONNECTING)
    router = sync_router(balancer, calls)
    router.defer(None, True, 2.0, calls.start, calls.fail)
    set_all(balancer, C.TRANSIENT_FAILURE)
    assert router.waiting == 1 and calls.cancelled == 0 and calls.delivered == []


def test_a_requeued_call_starts_on_a_later_picker_that_finds_an_endpoint() -> None:
    calls, strategy = Calls(), Toggle()
    balancer = balancer_in(C.CONNECTING, strategy)
    router = sync_router(balancer, calls)
    router.defer(None, True, None, calls.start, calls.fail)
    set_all(balancer, C.READY)  # READY, but nothing for this call: queued again
    assert router.waiting == 1 and calls.delivered == []
    strategy.finds = True
    balancer.refresh()
    calls.run_delivered()
    assert [pick.endpoint for pick, _ in calls.started] == [balancer.endpoints[0]]


def test_a_requeued_call_past_its_deadline_ends_on_the_next_picker() -> None:
    calls, clock = Calls(), Clock(now=100.0)
    balancer = balancer_in(C.CONNECTING, Toggle())
    router = sync_router(balancer, calls, clock)
    router.defer(None, True, 2.0, calls.start, calls.fail)
    clock.now = 103.0
    set_all(balancer, C.READY)
    calls.run_delivered()
    assert [status(e)[0] for e in calls.failed] == [S.DEADLINE_EXCEEDED]


def test_async_router_passes_metadata_on_every_path() -> None:
    echo = Echo()
    balancer = balancer_in(C.READY, echo)
    router = AsyncRouter(balancer)

    async def main() -> None:
        router.pick_now(KEY)
        await router.pick(KEY, False, None)
        set_all(balancer, C.TRANSIENT_FAILURE)
        asyncio.get_running_loop().call_later(0.02, set_all, balancer, C.READY)
        await router.pick(KEY, True, 5.0)

    asyncio.run(main())
    assert echo.seen == [KEY] * 3


def test_async_fast_path_reads_no_clock() -> None:
    clock = Clock()
    router = AsyncRouter(balancer_in(C.READY), clock=clock)
    _pick, left = asyncio.run(router.pick(None, False, 5.0))
    assert (left, clock.reads) == (5.0, 0)


def test_a_requeued_call_still_ends_at_its_deadline_without_another_picker() -> None:
    calls, clock = Calls(), Clock(now=100.0)
    balancer = balancer_in(C.CONNECTING, Toggle())
    router = sync_router(balancer, calls, clock)
    router.defer(None, True, 2.0, calls.start, calls.fail)
    set_all(balancer, C.READY)  # READY, but nothing for this call: queued again
    assert router.waiting == 1
    live = calls.timers[-1]  # claiming cancelled the first timer; the requeue made this one
    assert len(calls.timers) >= 2 and live[0] == pytest.approx(2.0)
    clock.now = 102.0
    live[1]()  # the deadline timer fires; no picker comes
    calls.run_delivered()
    assert [status(e)[0] for e in calls.failed] == [S.DEADLINE_EXCEEDED]
