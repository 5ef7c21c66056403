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

One connection per backend (sync twin): the synchronous channel makes its calls on a
sync grpc channel and watches the endpoint through a ``grpc.aio`` one
(:meth:`ChannelOptions.watch_channel`). grpc's global subchannel pool lets two channels
share one connection only when their channel arguments are identical. Probed with
grpcio 1.68.1 and 1.85.3 through a counting proxy: a sync and an aio channel with the
same options opened two connections, because their arguments differ in exactly two
ways: the primary user agent grpc appends (``grpc._channel._USER_AGENT``
"grpc-python/V" against ``grpc.aio._channel._USER_AGENT`` "grpc-python-asyncio/V"; a
user's ``grpc.primary_user_agent`` is put *before* it, so options alone cannot make the
two equal), and, from grpcio 1.82 on, ``grpc.fork_epoch`` = 0, which the sync channel's
arguments carry and the aio one's do not. Bisected by counting the established sockets
to a server: with the user agents made equal, 1.68, 1.74, 1.76, 1.78, 1.80 and 1.81
share one connection *without* ``grpc.fork_epoch`` (and open two with it); 1.82, 1.83,
1.84 and 1.85 share one only *with* it. So the aio module's user agent is set to the
sync one while the aio channel is built, and ``("grpc.fork_epoch", 0)`` is added to its
options on grpcio 1.82 and later: one connection, and the heartbeat watches the very
connection the calls use.

Values are checked the way grpc's channel arguments take them (an ``int`` or a
``str``/``bytes``; nothing else), so a bad one raises :class:`ConfigError` naming
``options[i]`` when the channel is built instead of a ``TypeError`` later.
"""

from __future__ import annotations

import logging
import threading
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

_log = logging.getLogger(__name__)


def _grpc_version() -> tuple[int, int]:
    major, minor = [*grpc.__version__.split("."), "0", "0"][:2]
    try:
        return int(major), int(minor)
    except ValueError:
        return (0, 0)


#: The channel argument a sync channel's arguments carry from grpcio 1.82 on (bisected,
#: see above), and an aio one's never do; none before 1.82.
_FORK_EPOCH: tuple[Option, ...] = (("grpc.fork_epoch", 0),) if _grpc_version() >= (1, 82) else ()
#: Held while grpc.aio's user agent is swapped for the sync one (see the module notes).
_USER_AGENT_LOCK = threading.Lock()
_fallback_logged = False

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


#: grpc's channel argument for the bytes of requests one call buffers for retries; the
#: retry step honours it (A6: a client setting, not a service config one).
RETRY_BUFFER_OPTION = "grpc.per_rpc_retry_buffer_size"
#: Its default, gRPC's: 256 KiB.
DEFAULT_RETRY_BUFFER = 256 * 1024


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
                if option[0] == RETRY_BUFFER_OPTION and (
                    not isinstance(option[1], int) or option[1] < 0
                ):
                    raise ConfigError(
                        f"options[{index}]",
                        f"the value of {RETRY_BUFFER_OPTION!r} must be a number of bytes "
                        f"(an int >= 0), got {option[1]!r}",
                    )
                checked.append(option)
        if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
            raise ConfigError(
                "credentials", f"expected grpc.ChannelCredentials, got {type(credentials).__name__}"
            )
        named = {name for name, _value in checked}
        defaults = tuple(option for option in DEFAULT_OPTIONS if option[0] not in named)
        return cls(defaults + tuple(checked), credentials)

    @property
    def retry_buffer_limit(self) -> int:
        """Bytes of requests one call keeps for replay (``grpc.per_rpc_retry_buffer_size``)."""
        for name, value in self.options:
            if name == RETRY_BUFFER_OPTION:
                return int(value)
        return DEFAULT_RETRY_BUFFER

    def sync_channel(self, address: str) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(address, options=self.options)
        return grpc.secure_channel(address, self.credentials, options=self.options)

    def aio_channel(
        self, address: str, options: tuple[Option, ...] | None = None
    ) -> grpc.aio.Channel:
        if options is None:
            options = self.options
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self.credentials, options=options)

    def watch_channel(self, address: str) -> grpc.aio.Channel:
        """An aio channel that shares its connection with :meth:`sync_channel` of ``address``.

        Its channel arguments are made equal to the sync channel's (see the module notes):
        grpc.aio's private user agent is the sync one only for the constructor call, under
        a lock. Without those private names (another grpcio), a plain aio channel: two
        connections per backend, logged once at debug level. Call it on the event loop's
        thread, as any grpc.aio channel.
        """
        try:
            from grpc import _channel as sync_module  # noqa: PLC0415 - private, probed here
            from grpc.aio import _channel as aio_module  # noqa: PLC0415

            sync_agent = sync_module._USER_AGENT
            aio_agent = aio_module._USER_AGENT
        except (ImportError, AttributeError):
            global _fallback_logged  # noqa: PLW0603 - log once per process
            if not _fallback_logged:
                _fallback_logged = True
                _log.debug("grpc's user agent names are not there: two connections per backend")
            return self.aio_channel(address)
        with _USER_AGENT_LOCK:
            aio_module._USER_AGENT = sync_agent
            try:
                return self.aio_channel(address, (*self.options, *_FORK_EPOCH))
            finally:
                aio_module._USER_AGENT = aio_agent
