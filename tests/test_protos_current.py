"""The checked-in generated code under resilientrpc/proto/ matches the .proto sources.

Regenerates everything with grpcio-tools into a temporary directory, exactly as
``make protos`` does, and compares byte for byte, so the generated code cannot go stale.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_SOURCES = ROOT / "protos"
PROTO_PACKAGE = Path("resilientrpc") / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _generated_files(root: Path) -> dict[str, bytes]:
    directory = root / PROTO_PACKAGE
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.name.endswith(GENERATED_SUFFIXES)
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    sources = sorted(
        str(path.relative_to(PROTO_SOURCES))
        for path in (PROTO_SOURCES / PROTO_PACKAGE).glob("*.proto")
    )
    assert sources, "no .proto sources found"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_SOURCES}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *(str(PROTO_SOURCES / source) for source in sources),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr

    expected = _generated_files(tmp_path)
    checked_in = _generated_files(ROOT)
    assert sorted(checked_in) == sorted(expected), "generated files differ; run `make protos`"
    stale = [name for name in expected if checked_in[name] != expected[name]]
    assert not stale, f"stale generated code in resilientrpc/proto: {stale}; run `make protos`"
    assert len(expected) == 3 * len(sources)
