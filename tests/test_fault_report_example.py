"""``examples/fault_report.py`` runs real faults, and the README shows what it printed.

The example is run as a user runs it (a subprocess, a small call count): its report must
name the failing backend first and the hung one second, its ``--spans`` file must give
``resilientrpc faults`` the same report, and the output the README shows must have the
same structure as what the program prints now (same lines and columns; numbers and the
random ports may differ), so the README cannot drift from the program. Ctrl-C stops it
with every backend child gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilientrpc.errors import ConfigError
from resilientrpc.testing.fault_run import MAX_CALLS, run_fault_scenario
from tests.test_examples_and_cli import run
from tests.test_faults_report import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/fault_report.py"
CALLS = "150"
COMMAND = f"$ .venv/bin/python {EXAMPLE}"
_ADDRESS = r"127\.0\.0\.1:\d+"
_PLURALS = (
    ("heartbeat misses", "heartbeat miss"),
    ("slow attempts", "slow attempt"),
    ("timeouts", "timeout"),
    ("ejections", "ejection"),
    ("attempts", "attempt"),
    ("calls", "call"),
)
# Evidence that comes and goes with chance: a slow attempt on any backend (and the p99
# comparison it brings), a call that failed after all its attempts.
_CHANCE_CLAUSES = ("N slow attempt", "p99 N ms vs best peer N ms")


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return run(EXAMPLE, *args)


def _line_shape(line: str) -> str:
    shape = re.sub(_ADDRESS, "ADDR", line)
    shape = re.sub(r"\d[\d,]*(\.\d+)?", "N", shape)
    shape = re.sub(r"; N succeeded(, N [A-Z_]+)*$", "; N succeeded", shape)
    for plural, singular in _PLURALS:
        shape = shape.replace(f"N {plural}", f"N {singular}")
    shape = re.sub(r" +", " ", shape)
    head, colon, evidence = shape.partition("): ")
    if re.match(r"N\. ADDR \(score N$", head) and colon:
        clauses = [one for one in evidence.split("; ") if not one.startswith(_CHANCE_CLAUSES)]
        shape = head + colon + "; ".join(clauses)
    return shape


def shape(output: str) -> list[list[str]]:
    """The output's structure: blocks of line shapes; order within a block only for suspects."""
    blocks = [[_line_shape(line) for line in block.splitlines()] for block in output.split("\n\n")]
    return [block if block[0].startswith("Suspects") else sorted(block) for block in blocks]


def roles(output: str) -> list[str]:
    """Which backends the suspects are, in rank order, by the names the first line gives."""
    names = dict(
        (address, name)
        for name, address in re.findall(rf"(healthy|flaky|hung) ({_ADDRESS})", output)
    )
    ranked = re.findall(rf"^\d+\. ({_ADDRESS}) \(score", output, flags=re.MULTILINE)
    return [names[address] for address in ranked]


def readme_output() -> str:
    """The output the README shows after the example's command, up to the block's end."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(COMMAND + "\n") + len(COMMAND) + 1
    return readme[start : readme.index("\n```", start)]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    spans = tmp_path_factory.mktemp("fault_report") / "traces.jsonl"
    result = run_example("--calls", CALLS, "--spans", str(spans))
    assert result.returncode == 0, result.stderr
    return result.stdout, spans


def test_the_example_names_the_failing_backend_then_the_hung_one(
    example: tuple[str, Path],
) -> None:
    output, _ = example
    assert output.startswith(f"{CALLS} calls: healthy 127.0.0.1:"), output
    assert roles(output) == ["flaky", "hung"], output


def test_the_spans_file_gives_resilientrpc_faults_the_same_report(
    example: tuple[str, Path],
) -> None:
    output, spans = example
    result = run_cli(str(spans))
    assert result.returncode == 0, result.stderr
    assert output.split("\n\n", 1)[1] == result.stdout
    first = spans.read_text().splitlines()[0]
    assert re.search(r'"traceId": "[0-9a-f]{32}"', first), first[:300]  # OTLP JSON: hex ids


def test_the_readme_shows_real_output_of_the_example(example: tuple[str, Path]) -> None:
    output, _ = example
    shown = readme_output()
    assert roles(shown) == ["flaky", "hung"], shown
    assert shape(shown) == shape(output), (shown, output)


def test_the_example_refuses_an_out_of_range_call_count() -> None:
    result = run_example("--calls", "10001")
    assert result.returncode == 2 and "outside the allowed range" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("endpoint", "calls", "path"),
    [
        ("127.0.0.1:4317", 0, "calls"),
        ("127.0.0.1:4317", MAX_CALLS + 1, "calls"),
        ("127.0.0.1:4317", True, "calls"),
        ("10.0.0.1:4317", 10, "otlp_endpoint"),
    ],
)
def test_the_run_refuses_bad_input_before_starting_anything(
    endpoint: str, calls: int, path: str
) -> None:
    with pytest.raises(ConfigError) as error:
        run_fault_scenario(endpoint, calls)
    assert error.value.path == path


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_stops_every_backend_child() -> None:
    process = subprocess.Popen(
        [sys.executable, EXAMPLE, "--calls", "10000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the hung backend is frozen: traffic runs
            children = _children(process.pid)
            if len(children) == 3 and any(_state(child) == "T" for child in children):
                break
            time.sleep(0.05)
        assert len(children) == 3 and any(_state(child) == "T" for child in children)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole group gets SIGINT
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
        survivors = [child for child in children if _state(child) not in (None, "Z")]
        for child in survivors:  # a failing run must not leave frozen orphans behind
            os.kill(child, signal.SIGKILL)
    assert survivors == []
    assert process.returncode == 130, stderr
    assert "every backend stopped" in stderr
