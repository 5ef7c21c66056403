"""The example and the command line run as a user would run them."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import grpc

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


PUBLIC_MODULES = (
    "resilientrpc",
    "resilientrpc.aio",
    "resilientrpc.config",
    "resilientrpc.errors",
    "resilientrpc.endpoint",
    "resilientrpc.load_report",
    "resilientrpc.picker",
    "resilientrpc.balancer",
    "resilientrpc.strategies",
    "resilientrpc.targets",
    "resilientrpc.testing",
    "interceptors",
    "interceptors.aio",
)


#: Public names that deliberately re-export another library's object, and that object.
FOREIGN_REEXPORTS = {("resilientrpc.endpoint", "Connectivity"): grpc.ChannelConnectivity}


def test_public_names_import() -> None:
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert module.__doc__, f"{name} has no module docstring"
        package = name.split(".")[0]
        assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
        for public in module.__all__:
            assert hasattr(module, public), f"{name}.__all__ names {public!r}, which it lacks"
            value = getattr(module, public)
            if (name, public) in FOREIGN_REEXPORTS:
                assert value is FOREIGN_REEXPORTS[name, public], f"{name}.{public}"
            elif inspect.ismodule(value):
                assert value.__name__.partition(".")[0] == package, f"{name}.{public}: {value}"
            elif inspect.isclass(value) or inspect.isfunction(value):
                assert value.__module__.partition(".")[0] == package, (
                    f"{name}.{public} is {value.__module__}.{value.__qualname__}, "
                    f"not defined in {package}"
                )


def test_every_module_says_what_it_owns() -> None:
    for package in ("resilientrpc", "interceptors"):
        for path in (ROOT / package).rglob("*.py"):
            if "proto" in path.parts or path.name == "__main__.py":
                continue
            first = path.read_text().lstrip()
            assert first.startswith('"""'), f"{path.relative_to(ROOT)} has no module docstring"


def test_either_package_imports_first() -> None:
    for first in ("interceptors", "interceptors.aio", "resilientrpc", "resilientrpc.aio"):
        result = run(
            "-c", f"import {first}; import resilientrpc; print(resilientrpc.ResilientChannel)"
        )
        assert result.returncode == 0, (first, result.stderr)
