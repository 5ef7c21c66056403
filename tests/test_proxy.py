"""DelayProxy, the slow network of the tests: holds connections, delays bytes, passes a
reset on, and leaves nothing behind."""

from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from resilientrpc.testing import DelayProxy
from tests.waiting import eventually


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[socket.socket]]]:
    """A plain TCP server on 127.0.0.1 that echoes, and the connections it accepted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)  # so the accept loop sees the stop
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def echo(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(4096):
                connection.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            accepted.append(connection)
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join(5)
    server.close()
    for connection in accepted:
        connection.close()


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def test_each_connection_is_held_then_forwarded_with_latency(
    upstream: tuple[str, list[socket.socket]],
) -> None:
    with DelayProxy(upstream[0], connect_delay=0.3, latency=0.1) as proxy:
        started = time.monotonic()
        with _connect(proxy.address) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
        elapsed = time.monotonic() - started
    assert 0.3 + 2 * 0.1 <= elapsed < 2.0, elapsed  # held, then 0.1 s each way
    assert proxy.accepted == 1


def test_a_client_reset_closes_the_upstream_side_too(
    upstream: tuple[str, list[socket.socket]],
) -> None:
    address, accepted = upstream
    with DelayProxy(address) as proxy:
        for _ in range(3):
            client = _connect(proxy.address)
            client.sendall(b"x")
            assert client.recv(16) == b"x"
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST
        assert eventually(lambda: proxy.open_connections == 0), proxy.open_connections
    assert len(accepted) == 3


def test_a_proxy_never_started_leaves_no_loop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proxy = DelayProxy("127.0.0.1:1")
        proxy.stop()
        del proxy
        gc.collect()  # an unclosed event loop would warn (ResourceWarning) here
