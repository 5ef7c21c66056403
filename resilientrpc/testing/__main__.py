"""Entry point of ``python -m resilientrpc.testing``: serve one backend until SIGTERM.

The child process of :class:`~resilientrpc.testing.BackendProcess`; the command line
itself lives in :mod:`resilientrpc.testing.serve`. Run with ``--help`` for the flags.
"""

from __future__ import annotations

from resilientrpc.testing.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
