"""One backend as a program: its command line and its serve-until-signalled loop.

This module owns the command line of ``python -m resilientrpc.testing`` (the child that
:class:`~resilientrpc.testing.BackendProcess` runs, also usable by hand): parsing the
flags into :class:`~resilientrpc.testing.Faults`, writing ``Faults`` back as flags, and
serving until SIGTERM or SIGINT. Once serving it prints exactly one line to stdout,
``LISTENING 127.0.0.1:PORT``, and flushes it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import grpc

from resilientrpc.errors import ConfigError
from resilientrpc.testing.backend import Backend
from resilientrpc.testing.faults import (
    HEALTH_STATUSES,
    PLAIN_FIELDS,
    Faults,
    LoadReport,
    replace_faults,
)
from resilientrpc.testing.instrumented import otlp_endpoint_value

__all__ = ["LISTENING_PREFIX", "build_parser", "faults_from_args", "faults_to_argv", "main"]

LISTENING_PREFIX = "LISTENING "
"""Start of the line a serving child prints, followed by its address."""

_LOAD_FLAGS = (
    ("cpu_utilization", "--cpu-utilization"),
    ("application_utilization", "--application-utilization"),
    ("mem_utilization", "--mem-utilization"),
    ("rps_fractional", "--rps"),
    ("eps", "--eps"),
)

#: Faults fields whose flag is ``--`` and the name with dashes, its value as is.
_PLAIN_FLAGS = tuple((name, "--" + name.replace("_", "-")) for name in PLAIN_FIELDS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m resilientrpc.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m resilientrpc.testing",
        description="Serve one fault-injecting Echo backend on 127.0.0.1 until SIGTERM.",
    )
    parser.add_argument("--name", help="name carried in replies (default: the address)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the error draws")
    parser.add_argument(
        "--otlp-endpoint",
        metavar="HOST:PORT",
        default=None,
        help="instrument the server: export a span per call over OTLP/gRPC to this loopback "
        "address (needs opentelemetry-instrumentation-grpc)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before a reply")
    parser.add_argument(
        "--latency-jitter", type=float, default=0.0, help="extra uniform delay in [0, J)"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="failure probability")
    parser.add_argument(
        "--error-code",
        default=Faults().error_code.name,
        metavar="NAME",
        help="grpc status code name of injected failures (default: %(default)s)",
    )
    parser.add_argument("--hang", action="store_true", help="never answer Echo calls")
    parser.add_argument(
        "--health", default=Faults().health, choices=HEALTH_STATUSES, help="health status"
    )
    parser.add_argument(
        "--fail-next", type=int, default=0, metavar="N", help="fail the next N calls"
    )
    parser.add_argument(
        "--pushback-ms",
        default="",
        metavar="TEXT",
        help="grpc-retry-pushback-ms trailer of injected failures (default: none)",
    )
    parser.add_argument(
        "--retry-info-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="google.rpc.RetryInfo delay of injected failures (default: none)",
    )
    parser.add_argument(
        "--stall-rate", type=float, default=0.0, help="probability that a call stalls first"
    )
    parser.add_argument(
        "--stall-seconds", type=float, default=0.0, metavar="S", help="length of a stall"
    )
    parser.add_argument(
        "--fail-after-messages",
        type=int,
        default=0,
        metavar="N",
        help="fail server and bidi streams after N replies (default: never)",
    )
    parser.add_argument(
        "--load-report", action="store_true", help="attach a load report even if all zero"
    )
    for field, flag in _LOAD_FLAGS:
        parser.add_argument(
            flag, dest=field, type=float, default=None, metavar="X", help="load report value"
        )
    return parser


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The :class:`Faults` the parsed flags describe (ConfigError on a bad value)."""
    try:
        error_code = grpc.StatusCode[args.error_code.upper()]
    except KeyError:
        raise ConfigError(
            "faults.error_code", f"no grpc status code is named {args.error_code!r}"
        ) from None
    load_values = {
        field: getattr(args, field)
        for field, _flag in _LOAD_FLAGS
        if getattr(args, field) is not None
    }
    load_report = LoadReport(**load_values) if args.load_report or load_values else None
    faults = Faults(
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        error_rate=args.error_rate,
        error_code=error_code,
        hang=args.hang,
        health=args.health,
        load_report=load_report,
    )
    return replace_faults(faults, {name: getattr(args, name) for name in PLAIN_FIELDS})


def faults_to_argv(faults: Faults) -> list[str]:
    """Flags that make the child start with ``faults`` (defaults are left out)."""
    default = Faults()
    argv: list[str] = []
    if faults.latency != default.latency:
        argv += ["--latency", repr(faults.latency)]
    if faults.latency_jitter != default.latency_jitter:
        argv += ["--latency-jitter", repr(faults.latency_jitter)]
    if faults.error_rate != default.error_rate:
        argv += ["--error-rate", repr(faults.error_rate)]
    if faults.error_code is not default.error_code:
        argv += ["--error-code", faults.error_code.name]
    if faults.hang:
        argv.append("--hang")
    if faults.health != default.health:
        argv += ["--health", faults.health]
    for field, flag in _PLAIN_FLAGS:
        value = getattr(faults, field)
        if value != getattr(default, field):
            # "--flag=value": a pushback such as "-abc" must not read as an option.
            argv.append(f"{flag}={value if isinstance(value, str) else repr(value)}")
    if faults.load_report is not None:
        argv.append("--load-report")
        for field, flag in _LOAD_FLAGS:
            argv += [flag, repr(float(getattr(faults.load_report, field)))]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one backend until SIGTERM or SIGINT; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = faults_from_args(args)
        if args.otlp_endpoint is not None:
            otlp_endpoint_value(args.otlp_endpoint, "--otlp-endpoint")
        backend = Backend(
            args.name,
            faults=faults,
            port=args.port,
            seed=args.seed,
            otlp_endpoint=args.otlp_endpoint,
        )
    except ConfigError as error:
        parser.error(str(error))

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        backend.start()
    except ConfigError as error:  # an instrumented backend without the instrumentation
        parser.error(str(error))
    with backend:
        sys.stdout.write(f"{LISTENING_PREFIX}{backend.address}\n")
        sys.stdout.flush()
        while not stopping.wait(0.5):
            pass
    return 0
