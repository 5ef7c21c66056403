"""Strategies as pure functions of hand-built endpoints (no network, seeded randomness)."""

from __future__ import annotations

import collections
import random

import grpc
import pytest

from resilientrpc.balancer import Balancer
from resilientrpc.config import (
    LeastRequest,
    LoadBalancingPolicy,
    PeakEwma,
    PickFirst,
    RingHash,
    RoundRobin,
    WeightedRoundRobin,
    parse_service_config,
)
from resilientrpc.endpoint import Endpoint, Outcome
from resilientrpc.load_report import LoadReport
from resilientrpc.picker import Decision, decide, no_endpoint_details
from resilientrpc.strategies import build_strategy
from resilientrpc.strategies.ring_hash import RingHashStrategy
from resilientrpc.strategies.weighted import StrideScheduler, orca_weight

READY = grpc.ChannelConnectivity.READY
TRANSIENT_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
OK = grpc.StatusCode.OK


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ready_balancer(
    policy: LoadBalancingPolicy, count: int, clock: FakeClock | None = None
) -> Balancer:
    clock = clock or FakeClock()
    balancer = Balancer(build_strategy(policy, rng=random.Random(1), clock=clock), clock=clock)
    balancer.set_addresses([f"10.0.0.{i}:80" for i in range(count)])
    for endpoint in balancer.endpoints:
        balancer.set_state(endpoint, READY)
    return balancer


def picked(balancer: Balancer) -> Endpoint:
    """The endpoint of one pick (whose attempt ends at once)."""
    result = balancer.picker.pick()
    assert result is not None
    result.done(Outcome(OK, 0.001))
    return result.endpoint


def hand_built(count: int) -> tuple[Endpoint, ...]:
    """``count`` endpoints on made-up addresses, for strategies called directly."""
    return tuple(Endpoint(f"10.0.0.{i}:80") for i in range(count))


def test_stride_scheduler_is_proportional_and_smooth() -> None:
    scheduler = StrideScheduler([1.0, 2.0, 5.0])
    picks = [scheduler.pick() for _ in range(8000)]
    counts = collections.Counter(picks)
    assert counts[0] == pytest.approx(1000, rel=0.02)
    assert counts[1] == pytest.approx(2000, rel=0.02)
    assert counts[2] == pytest.approx(5000, rel=0.02)
    # Smooth: the heavy endpoint never gets long runs to itself.
    longest = max(
        len(run) for run in "".join(map(str, picks)).replace("0", " ").replace("1", " ").split()
    )
    assert longest <= 4


def test_stride_scheduler_clamps_extreme_weights() -> None:
    scheduler = StrideScheduler([1.0, 1e9])
    counts = collections.Counter(scheduler.pick() for _ in range(2000))
    assert counts[0] > 0  # clamped to mean / 10, never starved


def test_orca_weight_formula() -> None:
    assert orca_weight(qps=100, eps=0, utilization=0.5, penalty=1.0) == 200
    assert orca_weight(qps=100, eps=10, utilization=0.5, penalty=1.0) == pytest.approx(100 / 0.6)
    assert orca_weight(qps=0, eps=0, utilization=0.5, penalty=1.0) == 0
    assert orca_weight(qps=100, eps=0, utilization=0, penalty=1.0) == 0


def test_weighted_blackout_and_expiration() -> None:
    clock = FakeClock()
    policy = WeightedRoundRobin(blackout_period=10.0, weight_expiration_period=60.0)
    balancer = ready_balancer(policy, 2, clock)
    a, b = balancer.endpoints
    for endpoint, cpu in ((a, 0.5), (b, 0.1)):
        pick_start = endpoint.begin()
        endpoint.record(Outcome(OK, 0.001, LoadReport(cpu_utilization=cpu, rps_fractional=100)))
        del pick_start
    balancer.refresh()
    assert (a.weight, b.weight) == (0, 0)  # still in blackout
    clock.now += 11
    balancer.refresh()
    assert a.weight == pytest.approx(200) and b.weight == pytest.approx(1000)
    clock.now += 60
    balancer.refresh()
    assert (a.weight, b.weight) == (0, 0)  # expired


def test_round_robin_cycles_from_a_random_offset() -> None:
    balancer = ready_balancer(RoundRobin(), 4)
    picks = [balancer.picker.pick() for _ in range(8)]
    addresses = [p.endpoint.address for p in picks if p is not None]
    assert addresses[:4] == addresses[4:] and len(set(addresses)) == 4


def test_round_robin_starts_each_picker_at_a_random_offset() -> None:
    """As in gRPC: clients (and pickers) built at once do not all start on the first."""
    strategy = build_strategy(RoundRobin(), rng=random.Random(5))
    ready = hand_built(4)
    firsts: collections.Counter[Endpoint | None] = collections.Counter(
        strategy.chooser(ready, ready)(None) for _ in range(200)
    )
    assert set(firsts) == set(ready)
    assert min(firsts.values()) > 20, firsts  # 50 each when uniform


@pytest.mark.parametrize("count", [2, 3, 5])
def test_round_robin_is_exactly_even(count: int) -> None:
    """Rotation is exact: N * k picks on one picker give every endpoint exactly k."""
    balancer = ready_balancer(RoundRobin(), count)
    counts = collections.Counter(picked(balancer).address for _ in range(count * 40))
    assert counts == {e.address: 40 for e in balancer.endpoints}


def test_least_request_prefers_fewer_outstanding() -> None:
    balancer = ready_balancer(LeastRequest(), 2)
    busy, idle = balancer.endpoints
    for _ in range(5):
        busy.begin()
    picks: collections.Counter[str] = collections.Counter()
    for _ in range(50):
        result = balancer.picker.pick()
        assert result is not None
        picks[result.endpoint.address] += 1
        result.done(Outcome(OK, 0.001))
    assert picks == {idle.address: 50}


@pytest.mark.parametrize("policy", [LeastRequest(choice_count=3), PeakEwma(choice_count=3)])
def test_more_choices_send_to_the_least_loaded_of_the_sample(
    policy: LeastRequest | PeakEwma,
) -> None:
    """``choiceCount`` 3 of 5: the two most loaded never win; the least wins when sampled."""
    balancer = ready_balancer(policy, 5)
    endpoints = balancer.endpoints
    for load, endpoint in enumerate(endpoints):
        for _ in range(load):
            endpoint.begin()  # calls in flight: the load of both strategies
    counts = collections.Counter(picked(balancer) for _ in range(1000))
    assert counts[endpoints[3]] == counts[endpoints[4]] == 0, counts
    # The least loaded is in 3 of every 5 samples of three; the second least in 3 of 10.
    assert counts[endpoints[0]] == pytest.approx(600, abs=60), counts
    assert counts[endpoints[1]] == pytest.approx(300, abs=60), counts


def test_more_choices_than_endpoints_always_take_the_least_loaded() -> None:
    balancer = ready_balancer(LeastRequest(choice_count=4), 3)
    busy, idle, busier = balancer.endpoints
    busy.begin()
    for _ in range(2):
        busier.begin()
    assert {picked(balancer) for _ in range(50)} == {idle}


def test_peak_ewma_penalises_slow_and_decays_back() -> None:
    clock = FakeClock()
    balancer = ready_balancer(PeakEwma(decay=10.0), 2, clock)
    slow, fast = balancer.endpoints
    for endpoint, latency in ((slow, 0.100), (fast, 0.001)):
        endpoint.begin()
        endpoint.record(Outcome(OK, latency))
    picks = collections.Counter(picked(balancer).address for _ in range(20))
    assert picks[slow.address] == 0
    # The peak is taken at once; a later fast sample only pulls it down gradually.
    slow.begin()
    slow.record(Outcome(OK, 0.001))
    estimate = slow.latency()
    assert estimate is not None and estimate > 0.05
    clock.now += 60  # long silence: the estimate decays toward zero, slow gets probed again
    assert slow.cost(clock.now) < 0.001


def test_unsampled_endpoint_with_calls_in_flight_is_penalised() -> None:
    endpoint = Endpoint("10.0.0.1:80", clock=FakeClock())
    assert endpoint.cost(100.0) == 0.0
    endpoint.begin()
    assert endpoint.cost(100.0) > 1000


def test_pick_first_is_ordered_failover() -> None:
    balancer = ready_balancer(PickFirst(), 3)
    first, second, _third = balancer.endpoints
    assert picked(balancer) is first
    balancer.set_state(first, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
    assert picked(balancer) is second
    balancer.set_state(first, grpc.ChannelConnectivity.CONNECTING)  # sticky failure
    assert picked(balancer) is second
    balancer.set_state(first, READY)
    assert picked(balancer) is first


def test_pick_first_shuffle_address_list_gives_each_client_its_own_order() -> None:
    """``shuffleAddressList``: each client shuffles once, then sticks to its order."""
    config = parse_service_config(
        {"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]}
    )
    policy = config.load_balancing
    assert policy == PickFirst(shuffle_address_list=True)
    members = hand_built(4)
    firsts: collections.Counter[Endpoint | None] = collections.Counter()
    for seed in range(40):  # forty clients
        strategy = build_strategy(policy, rng=random.Random(seed))
        first = strategy.chooser(members, members)(None)
        firsts[first] += 1
        assert strategy.chooser(members, members)(None) is first  # a rebuild keeps it
    assert set(firsts) == set(members), firsts
    unshuffled = build_strategy(PickFirst(), rng=random.Random(0))
    assert unshuffled.chooser(members, members)(None) is members[0]


def _owners(
    strategy: RingHashStrategy, members: tuple[Endpoint, ...], ready: tuple[Endpoint, ...]
) -> dict[str, str]:
    choose = strategy.chooser(ready, members)
    result = {}
    for key in range(2000):
        chosen = choose([("x-key", f"k{key}")])
        assert chosen is not None
        result[f"k{key}"] = chosen.address
    return result


@pytest.mark.parametrize("count", [3, 5, 10])
def test_ring_hash_remaps_about_one_nth_when_one_goes(count: int) -> None:
    strategy = RingHashStrategy(request_hash_header="x-key", rng=random.Random(3))
    members = tuple(Endpoint(f"10.0.0.{i}:80") for i in range(count))
    before = _owners(strategy, members, members)
    # Unhealthy owner: its keys walk on to the next endpoint; nobody else's keys move.
    gone = members[0]
    after = _owners(strategy, members, members[1:])
    moved = [k for k in before if before[k] != after[k]]
    assert all(before[k] == gone.address for k in moved)
    assert len(moved) == sum(1 for owner in before.values() if owner == gone.address)
    # They walk on to the *next* endpoint on the ring, not to one fixed survivor: the
    # same owners as a ring without the lost endpoint's points (removed from membership,
    # the ring keeps its points per weight, so the others' points stay where they were).
    assert len({after[k] for k in moved}) > 1
    after_removal = _owners(strategy, members[1:], members[1:])
    assert after_removal == after
    moved = [k for k in before if before[k] != after_removal[k]]
    assert len(moved) <= 2000 / count * 1.5
    # Spread: every endpoint owns a fair part of the keys.
    shares = collections.Counter(before.values())
    assert min(shares.values()) > 2000 / count * 0.5


def test_ring_hash_without_header_spreads_randomly() -> None:
    strategy = RingHashStrategy(request_hash_header="x-key", rng=random.Random(3))
    members = tuple(Endpoint(f"10.0.0.{i}:80") for i in range(3))
    choose = strategy.chooser(members, members)
    chosen = {choose(None) for _ in range(100)}
    assert chosen == set(members)


def test_ring_hash_policy_min_ring_size() -> None:
    strategy = build_strategy(
        RingHash(request_hash_header="x-key", min_ring_size=2048, max_ring_size=4096)
    )
    assert isinstance(strategy, RingHashStrategy)
    ring = strategy.ring(tuple(Endpoint(f"10.0.0.{i}:80") for i in range(3)))
    assert 2048 <= len(ring.points) <= 4096


def test_decide_follows_grpc_semantics() -> None:
    balancer = Balancer(build_strategy(RoundRobin()))
    balancer.set_addresses(["10.0.0.1:80"])
    assert decide(balancer.picker, wait_for_ready=False) is Decision.WAIT  # connecting
    (endpoint,) = balancer.endpoints
    balancer.set_state(endpoint, grpc.ChannelConnectivity.TRANSIENT_FAILURE, "refused")
    assert decide(balancer.picker, wait_for_ready=False) is Decision.FAIL
    assert decide(balancer.picker, wait_for_ready=True) is Decision.WAIT
    balancer.set_state(endpoint, READY)
    assert decide(balancer.picker, wait_for_ready=False) is Decision.SEND
    balancer.shutdown()
    assert decide(balancer.picker, wait_for_ready=True) is Decision.FAIL


def test_outstanding_and_counters_balance() -> None:
    endpoint = Endpoint("10.0.0.1:80")
    endpoint.begin()
    endpoint.begin()
    endpoint.record(Outcome(OK, 0.01))
    endpoint.record(Outcome(grpc.StatusCode.UNAVAILABLE, 0.01, error="UNAVAILABLE: down"))
    status = endpoint.status()
    assert (status.outstanding, status.calls, status.failures) == (0, 2, 1)
    assert status.last_error == "UNAVAILABLE: down"


def test_cancelled_attempts_teach_nothing() -> None:
    endpoint = Endpoint("10.0.0.1:80")
    endpoint.begin()
    endpoint.record(Outcome(grpc.StatusCode.CANCELLED, 5.0))
    status = endpoint.status()
    assert (status.outstanding, status.calls, status.failures, status.latency_ms) == (0, 1, 0, None)


def test_unresolved_channel_queues_then_fails_with_the_resolver_error() -> None:
    balancer = Balancer(build_strategy(RoundRobin()))
    assert decide(balancer.picker, wait_for_ready=False) is Decision.WAIT  # not resolved yet
    balancer.set_resolution_error("resolving 'svc' failed: no such host")
    assert decide(balancer.picker, wait_for_ready=False) is Decision.FAIL
    assert "no such host" in no_endpoint_details(balancer.picker)
    balancer.set_addresses(["10.0.0.1:80"])
    assert "no such host" not in no_endpoint_details(balancer.picker)


def test_no_endpoint_details_name_each_address_with_its_reason() -> None:
    """UNAVAILABLE details: ``address (reason)`` for every endpoint, in target order."""
    balancer = Balancer(build_strategy(RoundRobin()))
    balancer.set_addresses(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"])
    refused, slow, connecting = balancer.endpoints
    balancer.set_state(refused, TRANSIENT_FAILURE, "connection refused")
    balancer.set_state(slow, TRANSIENT_FAILURE, "handshake timed out")
    balancer.set_state(connecting, grpc.ChannelConnectivity.CONNECTING)
    assert no_endpoint_details(balancer.picker) == (
        "no endpoint available: 10.0.0.1:80 (connection refused), "
        "10.0.0.2:80 (handshake timed out), 10.0.0.3:80 (CONNECTING)"
    )
