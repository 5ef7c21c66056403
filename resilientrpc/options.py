"""Per-backend connection settings: the user's ``options`` and ``credentials``, validated.

Every endpoint gets its own grpc channel(s) built from these, with the defaults of
:data:`DEFAULT_OPTIONS` unless the user sets the same option:

``grpc.initial_reconnect_backoff_ms`` = 250, ``grpc.max_reconnect_backoff_ms`` = 2000
    A backend that comes back is noticed and used within about two seconds, instead of
    after grpc's default backoff of 1 s growing to two minutes. The connectivity watch
    and the calls use the same backoff, so the channel never reports an endpoint READY
    while the connection calls would use is still waiting out a long backoff.
``grpc.min_reconnect_backoff_ms`` = 20000: the **connect timeout**
    Despite its name this is the least time grpc gives one connection attempt (its
    ``MIN_CONNECT_TIMEOUT``; the attempt's deadline is the later of this and the next
    backoff), 20 s by default. Probed with grpcio 1.85 through a proxy that holds each
    new connection: set to 250 (as short backoffs tempt one to), a backend 1.5 s away
    took 3.9 s and five connection attempts to reach, and one 3 s away was never
    reached; left at 20 s, both connect at the first attempt. It is set explicitly so
    the figure is ours, not an accident of grpc's defaults: to change the connect
    timeout, pass ``("grpc.min_reconnect_backoff_ms", milliseconds)`` in ``options``.

Values are checked the way grpc's channel arguments take them (an ``int`` or a
``str``/``bytes``; nothing else), so a bad one raises :class:`ConfigError` naming
``options[i]`` when the channel is built instead of a ``TypeError`` later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from resilientrpc.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT_OPTION",
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_OPTIONS",
    "ChannelOptions",
]

Option = tuple[str, Any]

#: The connect timeout grpc gives each connection attempt, milliseconds (gRPC's default).
DEFAULT_CONNECT_TIMEOUT_MS = 20_000
#: The option that sets it (grpc's name: the *minimum* time for one connection attempt).
CONNECT_TIMEOUT_OPTION = "grpc.min_reconnect_backoff_ms"

#: Options every endpoint channel gets unless the user sets the same name.
DEFAULT_OPTIONS: tuple[Option, ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    (CONNECT_TIMEOUT_OPTION, DEFAULT_CONNECT_TIMEOUT_MS),
)


def _check_value(index: int, name: str, value: object) -> None:
    """Refuse what grpc's channel arguments would not take, naming the option."""
    # grpc's channel arguments are integers (C ints) or strings; anything else makes
    # grpc.insecure_channel raise TypeError, or grpc.aio fail later on its loop.
    # (grpc would even take any object with __int__, a float included, as a raw C pointer.)
    if not isinstance(value, (int, str, bytes)):
        raise ConfigError(
            f"options[{index}]",
            f"the value of {name!r} must be an int or a str, got {type(value).__name__}",
        )
    if isinstance(value, int) and not -(2**31) <= value < 2**31:
        raise ConfigError(
            f"options[{index}]", f"the value of {name!r} must fit a 32-bit int, got {value}"
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
                _check_value(index, option[0], option[1])
                checked.append(option)
        if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
            raise ConfigError(
                "credentials", f"expected grpc.ChannelCredentials, got {type(credentials).__name__}"
            )
        named = {name for name, _value in checked}
        defaults = tuple(option for option in DEFAULT_OPTIONS if option[0] not in named)
        return cls(defaults + tuple(checked), credentials)

    def sync_channel(self, address: str) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(address, options=self.options)
        return grpc.secure_channel(address, self.credentials, options=self.options)

    def aio_channel(self, address: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=self.options)
        return grpc.aio.secure_channel(address, self.credentials, options=self.options)
