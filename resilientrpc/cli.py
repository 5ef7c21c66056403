"""The ``resilientrpc`` command line: ``demo``, ``bench``, ``faults`` and ``--version``.

Each command's module is imported only when that command runs, so ``--help`` and
``--version`` start nothing.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence

__all__ = ["main", "version"]

_USAGE = """usage: resilientrpc [-h] [--version] {demo,bench,faults} [options]

  demo    three local backends (healthy, slow, flaky), the same bounded traffic
          through each strategy, a per-backend table of share, latency and errors
  bench   resilientrpc's channels against plain grpcio and grpcio's native
          round_robin, side by side, as ratios (a full run takes minutes; --quick)
  faults  read spans (OTLP JSON file, Jaeger JSON, or live: --listen 127.0.0.1:4317)
          and rank the endpoints most likely at fault, with the evidence

options:
  -h, --help  show this message and exit
  --version   print the installed resilientrpc version and exit

'resilientrpc COMMAND --help' describes a command's options and their defaults.
"""


def version() -> str:
    """The installed distribution's version, as ``pip show resilientrpc`` reports it."""
    return importlib.metadata.version("resilientrpc")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_USAGE, file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command in ("-h", "--help"):
        print(_USAGE)
        return 0
    if command in ("-V", "--version"):
        print(f"resilientrpc {version()}")
        return 0
    if command == "demo":
        from resilientrpc.demo import main as demo  # noqa: PLC0415 - load only what runs

        return demo(rest)
    if command == "bench":
        from resilientrpc.bench import main as bench  # noqa: PLC0415 - load only what runs

        return bench(rest)
    if command == "faults":
        from resilientrpc.faults_command import main as faults  # noqa: PLC0415 - load only what runs

        return faults(rest)
    print(f"resilientrpc: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
