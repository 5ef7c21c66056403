"""The example and the command line run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import resilientrpc
import resilientrpc.testing

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def test_echo_pool_example_runs() -> None:
    result = run("examples/echo_pool.py", "--calls", "20")
    assert result.returncode == 0, result.stderr
    assert "served by" in result.stdout
    assert result.stdout.count("READY") == 3


def test_demo_prints_a_table_per_strategy() -> None:
    result = run("-m", "resilientrpc.cli", "demo", "--calls", "60", "--threads", "3")
    assert result.returncode == 0, result.stderr
    for strategy in ("round_robin", "peak_ewma", "ring_hash", "pick_first"):
        assert f"== {strategy}" in result.stdout
    assert "slow" in result.stdout and "flaky" in result.stdout


def test_cli_rejects_unknown_command() -> None:
    result = run("-m", "resilientrpc.cli", "frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr


def test_public_names_import() -> None:
    for module in (resilientrpc, resilientrpc.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_either_package_imports_first() -> None:
    for first in ("interceptors", "interceptors.aio", "resilientrpc", "resilientrpc.aio"):
        result = run(
            "-c", f"import {first}; import resilientrpc; print(resilientrpc.ResilientChannel)"
        )
        assert result.returncode == 0, (first, result.stderr)
