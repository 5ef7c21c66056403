"""Packaging: the floors pyproject.toml declares are the ones CI tests and the generated code needs.

pyproject.toml states each dependency's floor; constraints/floor.txt pins the same floors
for ``make test-floor``; the checked-in generated code refuses runtimes older than its
generator's. These tests keep the three in step, and check that the library itself needs
only the OpenTelemetry API (the SDK and exporter are the ``otlp`` extra).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from tests.floors import FLOOR_RUN, ROOT, floor_pins, normalize, release

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - CI runs 3.11; tomllib is the only reader in the stdlib
    pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)", allow_module_level=True)

GENERATOR = "grpcio-tools"
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>[^;]*)")
_FLOOR = re.compile(r">=\s*(?P<version>[0-9][0-9.]*)")
_PROTOBUF_GENCODE = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
    r"\s*(?P<major>\d+),\s*(?P<minor>\d+),\s*(?P<patch>\d+),"
)
_GRPC_GENCODE = re.compile(r"^GRPC_GENERATED_VERSION = '(?P<version>[0-9.]+)'$", re.MULTILINE)


def _declared_floors() -> dict[str, str]:
    """The ``>=`` floor of every runtime dependency and of the ``otlp`` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["otlp"]]
    floors: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        assert match is not None, requirement
        floor = _FLOOR.search(match["spec"])
        assert floor is not None, f"{requirement!r} declares no floor (`>=`)"
        floors[normalize(match["name"])] = floor["version"]
    return floors


def test_every_floor_is_pinned_exactly_for_ci() -> None:
    declared = _declared_floors()
    pins = floor_pins()
    assert GENERATOR in pins, f"constraints/floor.txt pins no {GENERATOR}"
    del pins[GENERATOR]
    assert sorted(pins) == sorted(declared), "constraints/floor.txt and pyproject.toml differ"
    wrong = {
        name: (declared[name], pins[name])
        for name in declared
        if release(declared[name]) != release(pins[name])
    }
    assert not wrong, f"pyproject floor vs constraints/floor.txt pin: {wrong}"


def test_generated_code_demands_exactly_the_declared_floors() -> None:
    declared = _declared_floors()
    proto = ROOT / "resilientrpc" / "proto"
    protobuf_gencode = set()
    for path in sorted(proto.glob("*_pb2.py")):
        match = _PROTOBUF_GENCODE.search(path.read_text())
        assert match is not None, f"{path.name}: no protobuf runtime version check"
        protobuf_gencode.add(f"{match['major']}.{match['minor']}.{match['patch']}")
    grpc_gencode = set()
    for path in sorted(proto.glob("*_pb2_grpc.py")):
        match = _GRPC_GENCODE.search(path.read_text())
        assert match is not None, f"{path.name}: no GRPC_GENERATED_VERSION"
        grpc_gencode.add(match["version"])

    assert {release(v) for v in protobuf_gencode} == {release(declared["protobuf"])}, (
        f"protobuf floor {declared['protobuf']} vs the gencode's check {protobuf_gencode}"
    )
    assert {release(v) for v in grpc_gencode} == {release(declared["grpcio"])}, (
        f"grpcio floor {declared['grpcio']} vs GRPC_GENERATED_VERSION {grpc_gencode}"
    )
    assert grpc_gencode == {floor_pins()[GENERATOR]}, f"{GENERATOR} pin vs the generated code"


def test_floor_run_runs_at_the_floors() -> None:
    if not FLOOR_RUN:
        pytest.skip("the newest releases are installed here; `make test-floor` checks the floors")
    installed = {name: metadata.version(name) for name in floor_pins()}
    wrong = {
        name: (version, floor_pins()[name])
        for name, version in installed.items()
        if release(version) != release(floor_pins()[name])
    }
    assert not wrong, f"installed vs constraints/floor.txt: {wrong}"


def test_library_imports_without_the_opentelemetry_sdk() -> None:
    # A library depends on the OpenTelemetry API only; the SDK and the exporter are the
    # application's choice (`resilientrpc[otlp]`). Hide them and import the library.
    program = textwrap.dedent(
        """
        import importlib.abc
        import sys

        HIDDEN = ("opentelemetry.sdk", "opentelemetry.exporter")

        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.startswith(HIDDEN):
                    raise ModuleNotFoundError(f"hidden by the test: {name}", name=name)
                return None

        sys.meta_path.insert(0, Hide())
        import interceptors
        import interceptors.aio
        import resilientrpc
        import resilientrpc.aio
        import resilientrpc.testing
        print(sorted(name for name in sys.modules if name.startswith(HIDDEN)))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
