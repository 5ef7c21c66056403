"""Target parsing: every accepted form, and each bad one naming where it is wrong."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from typing import Any

import grpc.aio
import pytest

from resilientrpc import ConfigError
from resilientrpc.balancer import Balancer
from resilientrpc.config import RoundRobin
from resilientrpc.endpoint import Endpoint
from resilientrpc.strategies import build_strategy
from resilientrpc.supervisor import Supervisor
from resilientrpc.targets import Target, parse_targets, resolve


@pytest.mark.parametrize(
    ("targets", "addresses"),
    [
        (["127.0.0.1:1", "127.0.0.2:2"], ("127.0.0.1:1", "127.0.0.2:2")),
        (("[::1]:5", "backend:80"), ("[::1]:5", "backend:80")),
        ("127.0.0.1:9", ("127.0.0.1:9",)),
        ("static:///127.0.0.1:1,127.0.0.1:2", ("127.0.0.1:1", "127.0.0.1:2")),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", ("127.0.0.1:1", "127.0.0.2:2")),
        ("ipv4:///127.0.0.1:1", ("127.0.0.1:1",)),
        ("ipv6:[::1]:1,[::1]:2", ("[::1]:1", "[::1]:2")),
        ([" 127.0.0.1:1 "], ("127.0.0.1:1",)),
    ],
)
def test_accepted_forms(targets: object, addresses: tuple[str, ...]) -> None:
    assert parse_targets(targets) == Target(addresses=addresses)


def test_dns_target_resolves_every_address() -> None:
    target = parse_targets("dns:///localhost:8080")
    assert target.is_dns and (target.dns_host, target.dns_port) == ("localhost", 8080)
    assert parse_targets("dns:localhost:8080") == target
    addresses = asyncio.run(resolve(target))
    assert "127.0.0.1:8080" in addresses
    assert all(a.endswith(":8080") for a in addresses)


def test_a_dns_name_is_resolved_again_every_refresh_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The supervisor asks again every ``dns_refresh_period`` and follows the answers.

    The name's answers change over time: the system resolver is replaced for this one
    made-up name only (every other name still resolves for real).
    """
    real_getaddrinfo = socket.getaddrinfo
    answers = [["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2", "127.0.0.1"], ["127.0.0.2"]]
    asked: list[float] = []

    def scripted(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "backends.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        ips = answers[min(len(asked), len(answers) - 1)]
        asked.append(time.monotonic())
        stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(socket.AF_INET, *stream, (ip, port)) for ip in ips]

    monkeypatch.setattr(socket, "getaddrinfo", scripted)
    memberships: list[list[str]] = []

    async def disconnect(endpoint: Endpoint, control: grpc.aio.Channel) -> None:
        await control.close()

    async def scenario() -> None:
        balancer = Balancer(build_strategy(RoundRobin()))
        balancer.add_listener(
            lambda picker: memberships.append([e.address for e in picker.members])
        )
        supervisor = Supervisor(
            balancer,
            parse_targets("dns:///backends.test:9"),
            connect=lambda endpoint: grpc.aio.insecure_channel(endpoint.address),
            disconnect=disconnect,
            dns_refresh_period=0.05,
        )
        supervisor.start()
        try:
            deadline = time.monotonic() + 5
            while len(asked) < len(answers) + 1:
                assert time.monotonic() < deadline, f"asked {len(asked)} times"
                await asyncio.sleep(0.01)
        finally:
            await supervisor.aclose()

    asyncio.run(scenario())
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(asked))
    changes = [m for i, m in enumerate(memberships) if i == 0 or m != memberships[i - 1]]
    assert changes[:3] == [["127.0.0.1:9"], ["127.0.0.2:9", "127.0.0.1:9"], ["127.0.0.2:9"]]


@pytest.mark.parametrize(
    ("targets", "path", "fragment"),
    [
        ([], "targets", "no addresses"),
        ("", "targets", "empty"),
        (None, "targets", "expected a list"),
        ([123], "targets[0]", "expected a 'host:port' string"),
        (["127.0.0.1"], "targets[0]", "no port"),
        (["127.0.0.1:0"], "targets[0]", "port"),
        (["127.0.0.1:70000"], "targets[0]", "port"),
        (["::1:80"], "targets[0]", "brackets"),
        (["[nope]:80"], "targets[0]", "IPv6"),
        (["a b:80"], "targets[0]", "host name"),
        ([("a" * 64) + ".example.com:80"], "targets[0]", "valid host name"),
        ("dns:///" + ("a" * 64) + ".example.com:80", "targets", "valid host name"),
        (["bad..name:80"], "targets[0]", "valid host name"),
        (["a:1", "a:1"], "targets[1]", "duplicate"),
        ("ipv4:[::1]:1", "targets[0]", "ipv4"),
        ("ipv6:127.0.0.1:1", "targets[0]", "ipv6"),
        ("ipv4:backend:1", "targets[0]", "ipv4"),
        ("dns://8.8.8.8/name:1", "targets", "authorities"),
        ("unix:/tmp/x.sock", "targets", "unsupported"),
        ("xds:///svc", "targets", "unsupported"),
        ("static:///", "targets", "no addresses"),
    ],
)
def test_bad_targets_name_the_place(targets: object, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_targets(targets)
    assert caught.value.path == path
    assert fragment in caught.value.message


def test_ipv6_literals_have_one_spelling() -> None:
    assert parse_targets(["[0:0::1]:80"]).addresses == ("[::1]:80",)
    with pytest.raises(ConfigError, match=r"duplicate address '\[::1\]:80'"):
        parse_targets(["[::1]:80", "[0::1]:80"])
