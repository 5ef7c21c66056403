"""Per-backend connection settings: the user's ``options`` and ``credentials``, validated.

Every endpoint gets its own grpc channel built from these. The background control channel
that watches an endpoint's connectivity adds :func:`control_options` so a backend that
comes back is noticed within seconds rather than after grpc's default backoff of up to
two minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from resilientrpc.errors import ConfigError

__all__ = ["ChannelOptions", "control_options"]

#: Reconnect backoff of the connectivity watch, milliseconds (first, longest).
CONTROL_INITIAL_BACKOFF_MS = 250
CONTROL_MAX_BACKOFF_MS = 2_000

Option = tuple[str, Any]


def control_options() -> tuple[Option, ...]:
    return (
        ("grpc.initial_reconnect_backoff_ms", CONTROL_INITIAL_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", CONTROL_INITIAL_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", CONTROL_MAX_BACKOFF_MS),
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
        return cls(tuple(checked), credentials)

    def sync_channel(self, address: str, extra: tuple[Option, ...] = ()) -> grpc.Channel:
        options = self.options + extra
        if self.credentials is None:
            return grpc.insecure_channel(address, options=options)
        return grpc.secure_channel(address, self.credentials, options=options)

    def aio_channel(self, address: str, extra: tuple[Option, ...] = ()) -> grpc.aio.Channel:
        # Later settings win in grpc, so the extras override the user's reconnect backoff
        # on the control connection only.
        options = self.options + extra
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self.credentials, options=options)
