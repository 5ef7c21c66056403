"""In-process fault-injecting backends: :class:`Backend` and :func:`start_backends`.

This module owns the life cycle of a backend's gRPC server inside the calling process:
binding to ``127.0.0.1`` (port 0 unless told otherwise), starting, reconfiguring and
stopping. Stopping is abrupt by default, which is the in-process way to "crash" a
backend: in-flight calls are cancelled and every handler thread is released. What
happens inside a call is :mod:`resilientrpc.testing.servicer`'s business.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent import futures
from types import TracebackType

import grpc

from resilientrpc.errors import ConfigError
from resilientrpc.health import HeartbeatHealthServicer
from resilientrpc.testing.faults import Faults
from resilientrpc.testing.instrumented import ServerTracing, otlp_endpoint_value
from resilientrpc.testing.servicer import BackendState, add_backend_services

__all__ = ["DEFAULT_MAX_WORKERS", "HOST", "Backend", "Backends", "start_backends"]

HOST = "127.0.0.1"
"""The only interface test backends listen on."""

DEFAULT_MAX_WORKERS = 32
"""Handler threads per backend; a hung call holds one until it is released."""


class Backend:
    """A fault-injecting Echo backend served from a thread pool in this process.

    It serves ``resilientrpc.echo.v1.Echo``, ``resilientrpc.faults.v1.Faults`` and
    ``grpc.health.v1.Health`` (for ``""`` and the Echo service) on ``127.0.0.1``.

    >>> with Backend("b1", faults=Faults(latency=0.01)) as backend:  # doctest: +SKIP
    ...     channel = grpc.insecure_channel(backend.address)
    ...     backend.configure(error_rate=1.0)

    A stopped backend cannot be started again; to bring one "back", start a new
    ``Backend(name, port=old.port)``.

    With ``otlp_endpoint="127.0.0.1:PORT"`` (loopback only) the backend is instrumented:
    each call it serves is a server span, the child of the client span whose context the
    call's metadata carries, exported over OTLP/gRPC to that endpoint
    (:mod:`resilientrpc.testing.instrumented`; needs opentelemetry-instrumentation-grpc).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        faults: Faults | None = None,
        port: int = 0,
        max_workers: int = DEFAULT_MAX_WORKERS,
        seed: int | None = None,
        otlp_endpoint: str | None = None,
    ) -> None:
        if faults is not None and not isinstance(faults, Faults):
            raise ConfigError("faults", f"expected a Faults value, got {faults!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("port", f"expected a port number in [0, 65535], got {port!r}")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError("max_workers", f"expected an integer >= 1, got {max_workers!r}")
        self._otlp_endpoint = None if otlp_endpoint is None else otlp_endpoint_value(otlp_endpoint)
        self._tracing: ServerTracing | None = None
        self._requested_name = name
        self._requested_port = port
        self._max_workers = max_workers
        self._state = BackendState(
            name=name or "",
            faults=faults if faults is not None else Faults(),
            seed=seed,
            health_servicer=HeartbeatHealthServicer(),
        )
        self._lifecycle_lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._port: int | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self.address if self._port is not None else "not started"
        return f"Backend(name={self._state.name or None!r}, address={where!r})"

    def start(self) -> Backend:
        """Bind and start serving; returns ``self``."""
        with self._lifecycle_lock:
            if self._stopped:
                raise RuntimeError(f"{self!r} was stopped and cannot be started again")
            if self._server is not None:
                raise RuntimeError(f"{self!r} is already started")
            tracing = None if self._otlp_endpoint is None else ServerTracing(self._otlp_endpoint)
            executor = futures.ThreadPoolExecutor(
                self._max_workers, thread_name_prefix=f"backend-{self._requested_name or 'anon'}"
            )
            server = grpc.server(
                executor,
                options=[("grpc.so_reuseport", 0)],
                interceptors=None if tracing is None else [tracing.interceptor],
            )
            try:
                port = server.add_insecure_port(f"{HOST}:{self._requested_port}")
                if port == 0:
                    raise RuntimeError(f"could not bind {HOST}:{self._requested_port}")
                if not self._requested_name:
                    self._state.name = f"{HOST}:{port}"
                add_backend_services(server, self._state)
                server.start()
            except BaseException:
                server.stop(None).wait()
                executor.shutdown(wait=True)
                if tracing is not None:
                    tracing.shutdown()
                raise
            self._server, self._executor, self._port = server, executor, port
            self._tracing = tracing
            return self

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving. Idempotent.

        With the default ``grace=0`` (or ``None``) in-flight calls are cancelled at once:
        a crash as the clients see it. With ``grace > 0`` the health status turns
        NOT_SERVING, new calls are refused and in-flight ones get ``grace`` seconds to
        finish. Either way every handler thread, hung ones included, has returned when
        this returns. An instrumented backend then exports the spans it still holds
        (for up to :data:`~resilientrpc.testing.instrumented.SHUTDOWN_TIMEOUT` seconds).
        """
        with self._lifecycle_lock:
            self._stopped = True
            server, executor, tracing = self._server, self._executor, self._tracing
            self._server = self._executor = self._tracing = None
        if server is None or executor is None:
            return
        if grace:
            self._state.health_servicer.enter_graceful_shutdown()
        server.stop(grace).wait()
        self._state.stop()
        executor.shutdown(wait=True)
        if tracing is not None:
            tracing.shutdown()

    def __enter__(self) -> Backend:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (never 0 once started)."""
        if self._port is None:
            raise RuntimeError("the backend is not started yet; call start() first")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, the target to dial."""
        return f"{HOST}:{self.port}"

    @property
    def name(self) -> str:
        """The name replies carry; defaults to :attr:`address`."""
        return self._state.name if self._state.name else self.address

    @property
    def faults(self) -> Faults:
        """The faults in effect now."""
        return self._state.faults

    @property
    def calls(self) -> int:
        """How many Echo-service calls this backend has received."""
        return self._state.calls

    def previous_attempts(self) -> list[int | None]:
        """The ``resilientrpc-previous-rpc-attempts`` header of each received call.

        Oldest first, the last :data:`~resilientrpc.testing.servicer.RECORD_LIMIT` calls;
        None where the header was absent (a first attempt) or not a decimal number.
        """
        return self._state.previous_attempts()

    def configure(self, **changes: object) -> Faults:
        """Replace fields of :attr:`faults` (and the served health); returns the new faults.

        >>> backend.configure(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL)
        ... # doctest: +SKIP
        """
        return self._state.configure(changes)


class Backends(list[Backend]):
    """The list :func:`start_backends` returns; also a context manager that stops them."""

    @property
    def addresses(self) -> list[str]:
        """Each backend's ``"127.0.0.1:PORT"``, in order."""
        return [backend.address for backend in self]

    def calls(self) -> dict[str, int]:
        """Calls received so far, by backend name."""
        return {backend.name: backend.calls for backend in self}

    def stop(self, grace: float | None = 0) -> None:
        """Stop every backend (see :meth:`Backend.stop`)."""
        for backend in self:
            backend.stop(grace)

    def __enter__(self) -> Backends:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_backends(
    count: int,
    *,
    faults: Faults | None = None,
    names: Sequence[str] | None = None,
    seed: int | None = None,
) -> Backends:
    """Start ``count`` in-process backends with the same faults.

    ``names`` defaults to the addresses; with ``seed``, backend ``i`` is seeded
    ``seed + i``. If one fails to start, the ones already started are stopped.

    >>> with start_backends(3, faults=Faults(latency=0.01)) as backends:  # doctest: +SKIP
    ...     targets = backends.addresses
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError("count", f"expected an integer >= 1, got {count!r}")
    if names is not None and len(names) != count:
        raise ConfigError("names", f"expected {count} names, got {len(names)}")
    backends = Backends()
    try:
        for index in range(count):
            backend = Backend(
                names[index] if names is not None else None,
                faults=faults,
                seed=None if seed is None else seed + index,
            )
            backends.append(backend.start())
    except BaseException:
        backends.stop()
        raise
    return backends
