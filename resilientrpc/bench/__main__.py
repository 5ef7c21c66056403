"""``python -m resilientrpc.bench``: run the benchmark (see :mod:`resilientrpc.bench`)."""

from __future__ import annotations

from resilientrpc.bench.runner import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
