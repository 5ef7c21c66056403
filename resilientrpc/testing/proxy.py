"""A delaying TCP proxy on 127.0.0.1: slow networks made of real sockets.

:class:`DelayProxy` listens on a loopback port and forwards every connection to one
target address. It can hold each new connection before it answers a single byte
(``connect_delay``: a slow TLS handshake, a far region or a busy accept queue look like
this to a client) and delay every chunk of bytes one way (``latency``: a long link;
throughput is kept, only the arrival is later). Both can be changed while it runs.
One thread runs it, however many connections pass through.

>>> with Backend("b1") as backend, DelayProxy(backend.address, connect_delay=1.5) as proxy:
...     channel = grpc.insecure_channel(proxy.address)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

__all__ = ["DelayProxy"]

_CHUNK = 64 * 1024


class DelayProxy:
    """Forwards TCP connections from ``address`` to ``target``, late by design."""

    def __init__(self, target: str, *, connect_delay: float = 0.0, latency: float = 0.0) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host.strip("[]"), int(port))
        #: Seconds each new connection is held before it is forwarded (changeable).
        self.connect_delay = connect_delay
        #: Seconds every chunk of bytes is delayed, each way (changeable).
        self.latency = latency
        #: Connections accepted so far.
        self.accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> DelayProxy:
        self._loop = asyncio.new_event_loop()  # made here: a proxy never started holds none
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"delay-proxy-{self._target[1]}", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        port = future.result(timeout=10)
        self.address = f"127.0.0.1:{port}"
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        # Ends normally even when cancelled (stop()): asyncio's server callback asks a
        # finished handler task for its exception, which raises for a cancelled task.
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.sleep(self.connect_delay)
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            upstream = upstream_writer
            both = (
                asyncio.ensure_future(self._pipe(reader, upstream_writer)),
                asyncio.ensure_future(self._pipe(upstream_reader, writer)),
            )
            try:
                # One side reset (or failed): the other is aborted too, as a real network
                # path would be, instead of hanging open until stop().
                done, _pending = await asyncio.wait(both, return_when=asyncio.FIRST_EXCEPTION)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    writer.transport.abort()
                    upstream_writer.transport.abort()
                await asyncio.gather(*both, return_exceptions=True)
            finally:
                for pipe in both:
                    pipe.cancel()
        for stream in (writer, upstream):
            if stream is not None:
                stream.close()
        self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``latency`` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(_CHUNK)  # raises on a reset: the caller aborts both
                queue.put_nowait((time.monotonic() + self.latency, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    def stop(self) -> None:
        """Close the listener and every connection through it, and end the thread."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        loop = self._loop
        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        loop.close()

    @property
    def open_connections(self) -> int:
        """Connections being held or forwarded now."""
        return len(self._tasks)

    def __enter__(self) -> DelayProxy:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
