"""Target parsing: every accepted form, and each bad one naming where it is wrong."""

from __future__ import annotations

import asyncio

import pytest

from resilientrpc import ConfigError
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
