"""Per-backend connection settings: the user's ``options`` and ``credentials``, validated.

Every endpoint gets its own grpc channel(s) built from these. Unless the user sets them,
endpoint channels reconnect with a short backoff (:data:`RECONNECT_OPTIONS`), so a backend
that comes back is noticed and used within seconds, rather than after grpc's default
backoff of up to two minutes. The connectivity watch and the calls use the same backoff,
so the channel never reports an endpoint READY while the connection calls would use is
still waiting out a long backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from resilientrpc.errors import ConfigError

__all__ = ["RECONNECT_OPTIONS", "ChannelOptions"]

Option = tuple[str, Any]

#: Reconnect backoff of endpoint channels, milliseconds (first, least, longest).
RECONNECT_OPTIONS: tuple[Option, ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """How to open a connection to one backend address."""

    options: tuple[Option, ...] = ()
    credentials: grpc.ChannelCredentials | None = None

    @classmethod
    def build(
        cls, options: Sequence[Option] | None, credentials: grpc.ChannelCredentials | None
    ) -> ChannelOptions:
        checked: list[Option] = []
        if options is not None:
            if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
                raise ConfigError("options", "expected a sequence of (name, value) pairs")
            for index, option in enumerate(options):
                if (
                    not isinstance(option, tuple)
                    or len(option) != 2
                    or not isinstance(option[0], str)
                ):
                    raise ConfigError(
                        f"options[{index}]", f"expected a (name, value) pair, got {option!r}"
                    )
                checked.append(option)
        if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
            raise ConfigError(
                "credentials", f"expected grpc.ChannelCredentials, got {type(credentials).__name__}"
            )
        named = {name for name, _value in checked}
        defaults = tuple(option for option in RECONNECT_OPTIONS if option[0] not in named)
        return cls(defaults + tuple(checked), credentials)

    def sync_channel(self, address: str) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(address, options=self.options)
        return grpc.secure_channel(address, self.credentials, options=self.options)

    def aio_channel(self, address: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=self.options)
        return grpc.aio.secure_channel(address, self.credentials, options=self.options)
