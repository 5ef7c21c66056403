"""A child-process server for thread-count tests: one Health service on N loopback ports.

``python -m tests.many_ports N`` serves a :class:`~resilientrpc.health.HeartbeatHealthServicer`
on N ports of 127.0.0.1, prints them on one line, and serves until its stdin closes. Its
threads (one per open Watch) are in its own process, so they do not count against the
client's.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2_grpc

from resilientrpc.health import HeartbeatHealthServicer


def main(argv: list[str]) -> int:
    count = int(argv[0])
    executor = futures.ThreadPoolExecutor(count + 16)
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    health = HeartbeatHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(count)]
    server.start()
    sys.stdout.write(" ".join(map(str, ports)) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    health.close()
    server.stop(None).wait()
    executor.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
