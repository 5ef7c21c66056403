"""The backends a network scenario runs against, in child processes or in this process.

A :class:`Fleet` starts named fault-injecting Echo backends on ``127.0.0.1`` and stops
them all however the scenario ends. Child processes (the default) keep the servers'
Python work off the client's GIL, so what is measured is the client; in-process servers
(``inproc``) start faster but share the GIL with the client threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Literal, Protocol

from resilientrpc.testing import Backend, BackendProcess, Faults

__all__ = ["BACKEND_MODES", "BackendMode", "Fleet", "native_target"]

BackendMode = Literal["process", "inproc"]
BACKEND_MODES: tuple[BackendMode, ...] = ("process", "inproc")


class _Server(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def calls(self) -> int: ...

    def configure(self, **changes: object) -> Faults: ...


def native_target(addresses: Sequence[str]) -> str:
    """The one grpc target naming every address, for grpcio's own load balancing."""
    return "ipv4:" + ",".join(addresses)


class Fleet:
    """Named backends, each with its own faults; a context manager that stops them all.

    >>> with Fleet(["b0", "slow"], mode="process",
    ...            faults={"slow": Faults(latency=0.02)}) as fleet:  # doctest: +SKIP
    ...     fleet.addresses, fleet.names
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        mode: BackendMode,
        faults: dict[str, Faults] | None = None,
    ) -> None:
        self.mode = mode
        self._stack = contextlib.ExitStack()
        self._servers: list[_Server] = []
        try:
            for name in names:
                chosen = (faults or {}).get(name)
                if mode == "process":
                    self._servers.append(
                        self._stack.enter_context(BackendProcess(name, faults=chosen))
                    )
                else:
                    self._servers.append(self._stack.enter_context(Backend(name, faults=chosen)))
        except BaseException:
            self._stack.close()
            raise

    @property
    def addresses(self) -> list[str]:
        """Each backend's ``127.0.0.1:PORT``, in the order of ``names``."""
        return [server.address for server in self._servers]

    @property
    def processes(self) -> list[BackendProcess]:
        """The child processes, in the order of ``names`` (``mode="process"`` only)."""
        return [server for server in self._servers if isinstance(server, BackendProcess)]

    @property
    def names(self) -> list[str]:
        """The names replies carry, in order."""
        return [server.name for server in self._servers]

    def calls(self) -> int:
        """Echo calls every backend received so far, added up (each a server execution)."""
        return sum(server.calls for server in self._servers)

    def configure(self, changes: Mapping[str, Mapping[str, object]]) -> None:
        """Reconfigure backends by name: ``{"b1": {"error_rate": 0.3}}``."""
        by_name = {server.name: server for server in self._servers}
        for name, change in changes.items():
            by_name[name].configure(**change)

    def reset(self) -> None:
        """Every backend back to the default :class:`Faults` (no fault at all)."""
        default = Faults()
        fields = {field.name: getattr(default, field.name) for field in dataclasses.fields(default)}
        self.configure(dict.fromkeys(self.names, fields))

    def close(self) -> None:
        """Stop every backend (idempotent)."""
        self._stack.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
