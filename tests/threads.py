"""Thread leak checks that count every thread, whatever its name.

A check takes a snapshot of the live :class:`threading.Thread` objects (objects, not
idents: an ident is reused once its thread ends), and later waits, bounded in time,
until every thread started since has ended. Nothing is exempt by name: the threads grpc
starts for its own work (the ``grpc.aio`` poller, per-call helpers) come and go with the
channels and calls that need them, so they end too once everything is closed and
collected.

Threads that grpc's core created in C and that once ran Python code appear in
:func:`threading.enumerate` as ``Dummy-N`` records that Python never removes; on Linux
such a thread counts as alive while its OS thread (``/proc/self/task/<native id>``) is.
"""

from __future__ import annotations

import gc
import os
import threading
import time

__all__ = ["LEAK_TIMEOUT", "snapshot", "threads_left"]

#: Seconds threads started by a test have to end once it has closed everything.
LEAK_TIMEOUT = 5.0

_TASKS = "/proc/self/task"


def snapshot() -> frozenset[threading.Thread]:
    """The threads alive now."""
    return frozenset(threading.enumerate())


def _alive(thread: threading.Thread) -> bool:
    if not thread.is_alive():
        return False
    native_id = thread.native_id
    if native_id is None or not os.path.isdir(_TASKS):
        return True
    return os.path.exists(f"{_TASKS}/{native_id}")


def threads_left(before: frozenset[threading.Thread], timeout: float = LEAK_TIMEOUT) -> list[str]:
    """Names of the threads started since ``before`` that are still alive after ``timeout``.

    Collects garbage first (grpc objects caught in reference cycles keep grpc's poller
    thread running until they are freed), then polls, so threads that are ending anyway
    get time to finish.
    """
    gc.collect()
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in threading.enumerate() if t not in before and _alive(t)]
        if not extra or time.monotonic() >= deadline:
            return sorted(t.name for t in extra)
        time.sleep(0.01)
