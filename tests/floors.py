"""The supported floors as CI pins them: constraints/floor.txt, read for the packaging tests.

``make test-floor`` sets ``RESILIENTRPC_FLOOR_RUN=1``: the suite then runs at the floors and
the checks that need the floor environment (exact versions, the pinned code generator)
fail instead of skipping.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR_CONSTRAINTS = ROOT / "constraints" / "floor.txt"
FLOOR_RUN = os.environ.get("RESILIENTRPC_FLOOR_RUN") == "1"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9.]*)$")


def normalize(name: str) -> str:
    """The distribution name as package indexes compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """``"9.0"`` and ``"9.0.0"`` as the same release: trailing zeros dropped."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def floor_pins() -> dict[str, str]:
    """Every ``name==version`` line of constraints/floor.txt, by normalized name."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(FLOOR_CONSTRAINTS.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{FLOOR_CONSTRAINTS.name}:{number}: not `name==version`: {raw!r}")
        pins[normalize(match["name"])] = match["version"]
    return pins
