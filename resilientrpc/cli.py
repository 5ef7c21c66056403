"""The ``resilientrpc`` command line: ``demo`` and ``bench``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_USAGE = """usage: resilientrpc {demo,bench} [options]

  demo    local backends (one slow, one flaky), traffic through each strategy,
          a per-backend table of share and latency
  bench   side-by-side ratios against plain grpcio and grpcio's native round_robin

'resilientrpc COMMAND --help' describes a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from resilientrpc.demo import main as demo  # noqa: PLC0415 - load only what runs

        return demo(rest)
    if command == "bench":
        from resilientrpc.bench import main as bench  # noqa: PLC0415 - load only what runs

        return bench(rest)
    print(f"resilientrpc: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
