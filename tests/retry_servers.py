"""Scripted gRPC servers for the retry tests: each execution follows the next step of a script.

A :class:`ScriptedServer` is a real grpc server on 127.0.0.1 (port 0) serving the four
call shapes of ``retry.test.Svc`` on raw bytes. Every execution a server receives is
recorded (:attr:`ScriptedServer.executions`: method, request metadata, requests read),
so a test counts exactly what reached each backend. What an execution does is the next
:class:`Step` of the server's script, or its ``default`` once the script is used up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc

from resilientrpc.retry import PREVIOUS_ATTEMPTS_HEADER

SERVICE = "retry.test.Svc"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"


@dataclass(frozen=True)
class Step:
    """What one execution does.

    ``code`` None answers OK (with ``replies`` messages on a response stream, each the
    request echoed with its index). ``code`` set fails with it after ``replies`` messages,
    with ``trailers`` as trailing metadata. ``delay`` seconds are slept first; ``hang``
    never answers (until the client gives up or the server stops).
    """

    code: grpc.StatusCode | None = None
    details: str = "scripted"
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    replies: int = 1
    delay: float = 0.0
    hang: bool = False


OK = Step()


def fail(code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, **kwargs: Any) -> Step:
    return Step(code=code, replies=kwargs.pop("replies", 0), **kwargs)


@dataclass
class Execution:
    method: str
    metadata: dict[str, str | bytes]
    requests: list[bytes] = field(default_factory=list)
    cancelled: bool = False
    answered: bool = False


class ScriptedServer:
    """A grpc server whose executions follow ``script``, then ``default``."""

    def __init__(self, script: Sequence[Step] = (), default: Step = OK, workers: int = 8) -> None:
        self._lock = threading.Lock()
        self._script = list(script)
        self.default = default
        self.executions: list[Execution] = []
        self._stopping = threading.Event()
        self._pool = futures.ThreadPoolExecutor(workers)
        self._server = grpc.server(self._pool)
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self._server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self._client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def script(self, *steps: Step) -> None:
        """Replace what the next executions do."""
        with self._lock:
            self._script = list(steps)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.executions)

    def previous_attempts(self) -> list[str | None]:
        """The ``resilientrpc-previous-rpc-attempts`` header of every execution, in order."""
        with self._lock:
            return [
                e.metadata.get(PREVIOUS_ATTEMPTS_HEADER)  # type: ignore[misc]
                for e in self.executions
            ]

    def _begin(self, method: str, context: grpc.ServicerContext) -> tuple[Step, Execution]:
        execution = Execution(method, dict(context.invocation_metadata()))
        with self._lock:
            self.executions.append(execution)
            step = self._script.pop(0) if self._script else self.default
        # Ended before the handler answered: cancelled (by the client, or its deadline).
        context.add_callback(lambda: setattr(execution, "cancelled", not execution.answered))
        if step.delay:
            end = time.monotonic() + step.delay
            while context.is_active() and not self._stopping.wait(min(0.01, step.delay)):
                if time.monotonic() >= end:
                    break
        if step.hang:
            while context.is_active() and not self._stopping.wait(0.01):
                pass
        return step, execution

    @staticmethod
    def _end(step: Step, execution: Execution, context: grpc.ServicerContext) -> None:
        execution.answered = context.is_active()
        if step.trailers:
            context.set_trailing_metadata(step.trailers)
        if step.code is not None:
            context.abort(step.code, step.details)

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        step, execution = self._begin(UNARY, context)
        execution.requests.append(request)
        self._end(step, execution, context)
        return request

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        step, execution = self._begin(SERVER_STREAM, context)
        execution.requests.append(request)
        for index in range(step.replies):
            yield request + b"#%d" % index
        self._end(step, execution, context)

    def _client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        step, execution = self._begin(CLIENT_STREAM, context)
        for request in requests:
            execution.requests.append(request)
        self._end(step, execution, context)
        return b",".join(execution.requests)

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        step, execution = self._begin(BIDI, context)
        for request in requests:
            execution.requests.append(request)
        for index in range(step.replies):
            yield b"%d" % index
        self._end(step, execution, context)

    def stop(self) -> None:
        """Stop serving and end the worker threads (idle workers would otherwise live
        until the server object is collected, past the tests' thread-leak check)."""
        self._stopping.set()
        self._server.stop(0).wait(5)
        self._pool.shutdown(wait=True)  # its worker threads end with the server

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def retry_config(
    *,
    max_attempts: int = 3,
    codes: Sequence[str] = ("UNAVAILABLE",),
    initial_backoff: str = "0.01s",
    max_backoff: str = "0.05s",
    multiplier: float = 2,
    method: str | None = None,
    extra: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A service config with one retryPolicy for ``SERVICE`` (or one of its methods)."""
    policy: dict[str, Any] = {
        "maxAttempts": max_attempts,
        "initialBackoff": initial_backoff,
        "maxBackoff": max_backoff,
        "backoffMultiplier": multiplier,
        "retryableStatusCodes": list(codes),
    }
    policy.update(extra or {})
    name: dict[str, str] = {"service": SERVICE}
    if method is not None:
        name["method"] = method
    return {"methodConfig": [{"name": [name], "retryPolicy": policy}], **top}


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())
