"""Fault-injecting backends in real child processes: :class:`BackendProcess`.

This module owns the child's life cycle as the parent sees it: launching
``python -m resilientrpc.testing``, waiting for its ``LISTENING`` line, real process
faults (``kill -9``, ``SIGSTOP`` / ``SIGCONT``), reconfiguring it through the Faults RPC,
and always reaping it, even when the object is dropped without being stopped. POSIX only.

A signal takes effect when the kernel next schedules the child, not when ``kill`` returns,
so :meth:`BackendProcess.pause` and :meth:`BackendProcess.resume` return only once the
kernel reports every thread of the child stopped / running again (``/proc``, on Linux;
elsewhere they return as soon as the signal is sent).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO

import grpc

from resilientrpc.errors import ConfigError
from resilientrpc.proto import faults_pb2, faults_pb2_grpc
from resilientrpc.testing.faults import (
    Faults,
    changes_to_fault_config,
    faults_from_fault_config,
)
from resilientrpc.testing.instrumented import otlp_endpoint_value
from resilientrpc.testing.serve import LISTENING_PREFIX, faults_to_argv

__all__ = [
    "CONFIGURE_TIMEOUT",
    "SIGNAL_TIMEOUT",
    "STARTUP_TIMEOUT",
    "STOP_TIMEOUT",
    "BackendProcess",
    "BackendStartError",
    "thread_states",
]

STARTUP_TIMEOUT = 10.0
"""Seconds a child has to print its ``LISTENING`` line."""

STOP_TIMEOUT = 5.0
"""Seconds a child has to exit after SIGTERM before it is killed."""

CONFIGURE_TIMEOUT = 5.0
"""Deadline of the Faults RPCs (``Configure``, ``Stats``) a :class:`BackendProcess` sends."""

SIGNAL_TIMEOUT = 5.0
"""Seconds a child has to stop after SIGSTOP, or to run again after SIGCONT."""

#: Scheduler states of a thread stopped by a signal (``T``) or for a tracer (``t``).
_STOPPED = frozenset("Tt")
#: Scheduler states of a thread that is exiting: it neither runs nor stops any more.
_EXITING = frozenset("ZX")

# The directory that holds the ``resilientrpc`` package, so the child imports the same
# code as the parent whatever its working directory.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


def thread_states(pid: int) -> list[str] | None:
    """The kernel's scheduler state (``R``, ``S``, ``T``, ...) of every thread of ``pid``.

    Read from ``/proc/<pid>/task/*/stat``; None where there is no such directory (no
    ``/proc``, or the process is gone).
    """
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return None
    states = []
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue  # the thread ended meanwhile
        # "tid (comm) state ...": comm may hold spaces and parentheses, so split after it.
        fields = text.rpartition(")")[2].split()
        if fields:
            states.append(fields[0])
    return states


class BackendStartError(RuntimeError):
    """A backend child process did not come up; the message carries its stderr."""


def _reap(process: subprocess.Popen[bytes], files: tuple[IO[bytes], ...]) -> None:
    """Kill the child if it still runs, wait for it and close the pipes (idempotent)."""
    if process.poll() is None:
        process.kill()
    process.wait()
    for file in files:
        file.close()


class BackendProcess:
    """A fault-injecting Echo backend running in its own Python process.

    The same services and faults as :class:`~resilientrpc.testing.Backend`, but the
    process can really die (:meth:`kill`) or freeze with its connections open
    (:meth:`pause`).

    >>> with BackendProcess("b1", faults=Faults(latency=0.01)) as child:  # doctest: +SKIP
    ...     child.pause()  # calls to child.address now hang
    ...     child.resume()
    ...     child.configure(error_rate=1.0)

    ``otlp_endpoint="127.0.0.1:PORT"`` makes the child an instrumented backend (see
    :class:`~resilientrpc.testing.Backend`); :meth:`stop` lets it export its last spans,
    :meth:`kill` does not.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        faults: Faults | None = None,
        port: int = 0,
        seed: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        otlp_endpoint: str | None = None,
    ) -> None:
        if faults is not None and not isinstance(faults, Faults):
            raise ConfigError("faults", f"expected a Faults value, got {faults!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("port", f"expected a port number in [0, 65535], got {port!r}")
        self._otlp_endpoint = None if otlp_endpoint is None else otlp_endpoint_value(otlp_endpoint)
        self._requested_name = name
        self._initial_faults = faults if faults is not None else Faults()
        self._requested_port = port
        self._seed = seed
        self._startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., BackendProcess] | None = None
        self._address: str | None = None
        self._paused = False

    def __repr__(self) -> str:
        where = self._address or "not started"
        return f"BackendProcess(name={self._requested_name!r}, address={where!r})"

    def start(self) -> BackendProcess:
        """Launch the child and wait for it to listen; returns ``self``."""
        with self._lock:
            if self._process is not None:
                raise RuntimeError(f"{self!r} was already started")
            argv = [
                sys.executable,
                "-m",
                "resilientrpc.testing",
                "--port",
                str(self._requested_port),
            ]
            if self._requested_name is not None:
                argv += ["--name", self._requested_name]
            if self._seed is not None:
                argv += ["--seed", str(self._seed)]
            if self._otlp_endpoint is not None:
                argv.append(f"--otlp-endpoint={self._otlp_endpoint}")
            argv += faults_to_argv(self._initial_faults)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                path for path in (_IMPORT_ROOT, env.get("PYTHONPATH")) if path
            )
            # Closed by _reap (through the finalizer) together with the child's stdout pipe.
            stderr = tempfile.TemporaryFile()  # noqa: SIM115
            try:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
                )
            except BaseException:
                stderr.close()
                raise
            assert process.stdout is not None
            self._process = process
            self._finalizer = weakref.finalize(self, _reap, process, (process.stdout, stderr))
            try:
                line = self._read_listening_line(process, process.stdout, stderr)
            except BaseException:
                self._finalizer()
                raise
            self._address = line.removeprefix(LISTENING_PREFIX).strip()
            return self

    def _read_listening_line(
        self, process: subprocess.Popen[bytes], stdout: IO[bytes], stderr: IO[bytes]
    ) -> str:
        deadline = time.monotonic() + self._startup_timeout
        received = b""
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail_start(
                    process, stderr, f"printed no LISTENING line in {self._startup_timeout} s"
                )
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                process.wait()
                self._fail_start(process, stderr, f"exited with status {process.returncode}")
            received += chunk
        line = received.split(b"\n", 1)[0].decode(errors="replace")
        if not line.startswith(LISTENING_PREFIX):
            self._fail_start(process, stderr, f"printed {line!r} instead of a LISTENING line")
        return line

    def _fail_start(self, process: subprocess.Popen[bytes], stderr: IO[bytes], what: str) -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        stderr.seek(0)
        output = stderr.read().decode(errors="replace").strip()
        raise BackendStartError(
            f"backend child {self._requested_name or ''} (pid {process.pid}) {what}; "
            f"stderr:\n{output or '(empty)'}"
        )

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the backend process is not started yet; call start() first")
        return self._process

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, the target to dial."""
        if self._address is None:
            raise RuntimeError("the backend process is not started yet; call start() first")
        return self._address

    @property
    def port(self) -> int:
        """The port the child bound."""
        return int(self.address.rsplit(":", 1)[1])

    @property
    def name(self) -> str:
        """The name replies carry; defaults to :attr:`address`."""
        return self._requested_name if self._requested_name else self.address

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._running().pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status once reaped, else None."""
        return self._running().poll()

    @property
    def faults(self) -> Faults:
        """The faults in effect in the child now (asked over the Faults RPC)."""
        return self._send_fault_config(faults_pb2.FaultConfig())

    @property
    def calls(self) -> int:
        """How many Echo-service calls the child has received (asked over the Stats RPC)."""
        return int(self._stats().calls)

    def previous_attempts(self) -> list[int | None]:
        """The child's :meth:`~resilientrpc.testing.Backend.previous_attempts` (Stats RPC)."""
        return [None if n < 0 else n for n in self._stats().previous_rpc_attempts]

    def _stats(self) -> faults_pb2.BackendStats:
        with grpc.insecure_channel(self.address) as channel:
            stub = faults_pb2_grpc.FaultsStub(channel)
            reply: faults_pb2.BackendStats = stub.Stats(
                faults_pb2.StatsRequest(), timeout=CONFIGURE_TIMEOUT
            )
        return reply

    def configure(self, **changes: object) -> Faults:
        """Replace fields of the child's faults through the Faults RPC; the new faults.

        Values are validated here first (ConfigError naming the field).
        """
        return self._send_fault_config(changes_to_fault_config(changes))

    def _send_fault_config(self, config: faults_pb2.FaultConfig) -> Faults:
        with grpc.insecure_channel(self.address) as channel:
            stub = faults_pb2_grpc.FaultsStub(channel)
            reply: faults_pb2.FaultConfig = stub.Configure(config, timeout=CONFIGURE_TIMEOUT)
        return faults_from_fault_config(reply)

    def kill(self) -> None:
        """SIGKILL the child and reap it: the backend vanishes mid-call."""
        process = self._running()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP the child: connections stay open but nothing is answered.

        Returns once the kernel reports every thread of the child stopped, so a call made
        right after is not answered.
        """
        process = self._running()
        if process.poll() is None:
            process.send_signal(signal.SIGSTOP)
            self._paused = True
            self._wait_for_threads(process, stopped=True)

    def resume(self) -> None:
        """SIGCONT a paused child; returns once the kernel reports it running again."""
        process = self._running()
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            self._wait_for_threads(process, stopped=False)
        self._paused = False

    def _wait_for_threads(self, process: subprocess.Popen[bytes], *, stopped: bool) -> None:
        """Poll ``/proc`` until every live thread of the child is (or none is) stopped."""
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while process.poll() is None:
            states = thread_states(process.pid)
            if states is None:
                return  # no /proc here: nothing to wait on
            live = [state for state in states if state not in _EXITING]
            if all((state in _STOPPED) is stopped for state in live):
                return
            if time.monotonic() >= deadline:
                what = "stop after SIGSTOP" if stopped else "run again after SIGCONT"
                raise RuntimeError(
                    f"backend child (pid {process.pid}) did not {what} within "
                    f"{SIGNAL_TIMEOUT} s; its threads are in states {states}"
                )
            time.sleep(0.001)

    def stop(self) -> None:
        """SIGTERM the child, SIGKILL it after 5 s, and reap it. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            if self._paused:
                process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM later
                self._paused = False
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._paused = False

    def __enter__(self) -> BackendProcess:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
