"""Targets: what the user names as the backends, validated, and resolved to addresses.

Accepted forms (each address ``host:port``; IPv6 literals in brackets):

* a list of addresses: ``["127.0.0.1:50051", "[::1]:50052", "backend-3:50051"]``
* ``"static:///h1:p1,h2:p2"`` - the same list as one string
* ``"ipv4:h1:p1,h2:p2"`` and ``"ipv6:[::1]:p1,[::1]:p2"`` - gRPC's literal-address targets
* ``"dns:///name:port"`` (or ``"dns:name:port"``) - every address the name resolves to,
  re-resolved periodically
* a single ``"host:port"`` string
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from resilientrpc.errors import ConfigError

__all__ = ["Target", "join_address", "parse_address", "parse_targets", "resolve"]

#: Seconds between re-resolutions of a ``dns:`` target.
DNS_REFRESH_PERIOD = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """Validated targets: either fixed addresses, or one DNS name to resolve."""

    addresses: tuple[str, ...] = ()
    dns_host: str | None = None
    dns_port: int = 0

    @property
    def is_dns(self) -> bool:
        return self.dns_host is not None


def parse_address(text: object, path: str) -> tuple[str, int]:
    """Split ``host:port`` into its parts, or raise ConfigError naming ``path``."""
    if not isinstance(text, str):
        raise ConfigError(path, f"expected a 'host:port' string, got {type(text).__name__}")
    value = text.strip()
    if not value:
        raise ConfigError(path, "empty address; expected 'host:port'")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(path, f"{text!r} is not '[ipv6]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(path, f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ConfigError(path, f"{text!r} has no port; expected 'host:port'")
        if ":" in host:
            raise ConfigError(path, f"{text!r}: write IPv6 addresses in brackets, '[::1]:50051'")
        if any(c.isspace() for c in host) or "/" in host:
            raise ConfigError(path, f"{host!r} is not a host name or address")
        try:
            host.encode("idna")  # labels of 1 to 63 characters, as DNS needs
        except UnicodeError:
            raise ConfigError(path, f"{host!r} is not a valid host name") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(path, f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    """The one spelling of an address: ``host:port``, IPv6 literals in brackets and in
    their compressed form (``[0::1]:80`` and ``[::1]:80`` are one address; so is what a
    resolver returns for them).

    >>> join_address("0:0::1", 80)
    '[::1]:80'
    """
    if ":" not in host:
        return f"{host}:{port}"
    scope = ""
    if "%" in host:  # a zone (scope) id: kept as written
        host, scope = host.split("%", 1)
        scope = f"%{scope}"
    with contextlib.suppress(ValueError):
        host = ipaddress.IPv6Address(host).compressed
    return f"[{host}{scope}]:{port}"


def _address_list(items: Sequence[object], path: str) -> tuple[str, ...]:
    if not items:
        raise ConfigError(path, "no addresses; expected at least one 'host:port'")
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        address = join_address(*parse_address(item, item_path))
        if address in seen:
            raise ConfigError(
                item_path, f"duplicate address {address!r} (also at index {seen[address]})"
            )
        seen[address] = index
    return tuple(seen)


def parse_targets(targets: object) -> Target:
    """Validate the ``targets`` argument of a channel."""
    path = "targets"
    if isinstance(targets, (list, tuple)):
        return Target(addresses=_address_list(targets, path))
    if not isinstance(targets, str):
        raise ConfigError(
            path,
            f"expected a list of 'host:port' strings or a target URI, got {type(targets).__name__}",
        )
    text = targets.strip()
    if not text:
        raise ConfigError(path, "empty target; expected 'host:port', a list, or a URI")
    for scheme in ("static:///", "ipv4:", "ipv6:"):
        if text.startswith(scheme):
            rest = text[len(scheme) :]
            if scheme == "ipv4:":
                rest = rest.removeprefix("///")
            parts = [p for p in rest.split(",")] if rest else []
            addresses = _address_list(parts, path)
            if scheme != "static:///":
                _check_family(addresses, scheme[:-1], path)
            return Target(addresses=addresses)
    if text.startswith("dns:"):
        rest = text[4:]
        rest = rest[3:] if rest.startswith("///") else rest
        if rest.startswith("//"):
            raise ConfigError(path, "DNS authorities are not supported; write 'dns:///name:port'")
        host, port = parse_address(rest, path)
        return Target(dns_host=host, dns_port=port)
    if "://" in text or text.split(":", 1)[0] in ("unix", "unix-abstract", "xds", "vsock"):
        raise ConfigError(
            path, f"unsupported target scheme in {text!r}; use static:///, ipv4:, ipv6: or dns:///"
        )
    return Target(addresses=_address_list([text], path))


def _check_family(addresses: tuple[str, ...], family: str, path: str) -> None:
    for index, address in enumerate(addresses):
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{path}[{index}]", f"{host!r} is not an {family} address") from None
        if (family == "ipv4") != (ip.version == 4):
            raise ConfigError(f"{path}[{index}]", f"{host!r} is not an {family} address")


async def resolve(target: Target) -> list[str]:
    """The addresses ``target`` stands for now (DNS lookups run off the event loop)."""
    if target.dns_host is None:
        return list(target.addresses)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        target.dns_host, target.dns_port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        addresses[join_address(str(sockaddr[0]), target.dns_port)] = None
    return list(addresses)
