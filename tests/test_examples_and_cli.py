"""The example and the command line run as a user would run them."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from resilientrpc.demo import BACKEND_NAMES, STRATEGIES, _reading, run_strategy
from resilientrpc.testing import serve, start_backends

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def test_echo_pool_example_runs() -> None:
    result = run("examples/echo_pool.py", "--calls", "20")
    assert result.returncode == 0, result.stderr
    assert "served by" in result.stdout
    assert result.stdout.count("READY") == 3
    table = result.stdout.splitlines()
    for name in ("alpha", "beta", "slow"):  # each backend by name, next to its address
        assert any(re.match(rf"{name} +127\.0\.0\.1:\d+ +READY", line) for line in table), name
    assert "ewma ms: the latency" in result.stdout  # the legend under the table


@pytest.mark.parametrize("example", ["echo_pool.py", "per_method_retries.py", "fault_report.py"])
def test_example_docstrings_use_the_venv_python(example: str) -> None:
    text = (ROOT / "examples" / example).read_text()
    commands = [line.split("#")[0] for line in text.splitlines() if f"examples/{example}" in line]
    assert commands and all(".venv/bin/python examples/" in line for line in commands)


def test_per_method_retries_example_runs_from_its_config_file() -> None:
    result = run("examples/per_method_retries.py", "--calls", "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Each method shows the policy read from examples/retry_service_config.json, then how
    # many of its calls succeeded (not all of them until the retry engine is in).
    expected = {
        "ServerStream": "retryPolicy: 4 attempts on UNAVAILABLE",
        "ClientStream": "no retries, timeout 1.0 s",
        "Echo": "hedgingPolicy: 3 attempts",
    }
    for method, policy in expected.items():
        assert any(
            re.search(rf" {method} +{re.escape(policy)} +\d+/20 succeeded", line) for line in lines
        ), (method, result.stdout)
    received = re.search(
        r"alpha (\d+), beta (\d+), flaky (\d+) \((\d+) for 60 calls", result.stdout
    )
    assert received is not None, result.stdout
    assert int(received[4]) == sum(int(received[i]) for i in (1, 2, 3)) >= 60


# -- the README's programs ------------------------------------------------------------


def readme_blocks(language: str) -> list[str]:
    """The text of every fenced ``language`` block of the README, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


README_PORT = re.compile(r"127\.0\.0\.1:(5\d{4})")


def test_readme_python_blocks_are_programs_that_run(tmp_path: Path) -> None:
    """Every python block runs as written, against local backends on the ports it names.

    Only the port numbers are changed (the backends take free ports); everything else is
    the README's text, run with this interpreter, as a user would run a saved file.
    """
    blocks = readme_blocks("python")
    assert len(blocks) >= 2  # the sync and the asyncio quick start
    ports = sorted({port for block in blocks for port in README_PORT.findall(block)})
    names = [f"b{port}" for port in ports]  # as the README's start-up command names them
    with start_backends(len(ports), names=names) as backends:
        for index, block in enumerate(blocks):
            program = block
            for port, backend in zip(ports, backends, strict=True):
                program = program.replace(f"127.0.0.1:{port}", backend.address)
            path = tmp_path / f"readme_{index}.py"
            path.write_text(program)
            result = run(str(path))
            assert result.returncode == 0, f"README python block {index}:\n{result.stderr}"
            served = set(re.findall(r"from (b5\d{4})$", result.stdout, flags=re.M))
            if README_PORT.search(block):  # a block that calls the backends hears from them
                assert served, f"README python block {index} printed no reply:\n{result.stdout}"
            assert served <= set(names), served


def test_readme_starts_the_backends_its_programs_call() -> None:
    (shell,) = [block for block in readme_blocks("sh") if "resilientrpc.testing" in block]
    ports_line = re.search(r"^for port in ([\d ]+); do$", shell, flags=re.M)
    assert ports_line is not None, shell
    started = ports_line.group(1).split()
    called = {port for block in readme_blocks("python") for port in README_PORT.findall(block)}
    assert called <= set(started), (called, started)
    (command,) = [line for line in shell.splitlines() if "-m resilientrpc.testing" in line]
    words = shlex.split(command.split("-m resilientrpc.testing", 1)[1])
    assert command.strip().startswith(".venv/bin/python ") and words[-1] == "&"
    for port in started:
        argv = [word.replace("$port", port) for word in words[:-1]]
        args = serve.build_parser().parse_args(argv)  # exits 2 if the README's flags are wrong
        assert (args.port, args.name) == (int(port), f"b{port}")


# -- the command line -----------------------------------------------------------------


def test_demo_prints_a_table_per_strategy() -> None:
    result = run(
        "-m", "resilientrpc.cli", "demo", "--calls", "30", "--threads", "3", "--slow-ms", "5"
    )
    assert result.returncode == 0, result.stderr
    assert "slow 127.0.0.1:" in result.stdout and "(+5 ms per reply)" in result.stdout
    assert result.stdout.count("legend: share = ") == 1
    sections = result.stdout.split("\n== ")[1:]
    assert [section.split()[0] for section in sections] == list(STRATEGIES)
    for section in sections:
        lines = section.splitlines()
        assert lines[1].split() == [
            "backend",
            "address",
            "share",
            "p50",
            "ms",
            "p99",
            "ms",
            "errors",
        ]
        for line, name in zip(lines[2:5], BACKEND_NAMES, strict=True):
            assert re.match(rf" +{name} +127\.0\.0\.1:\d+ +\d+\.\d%", line), line
        assert lines[5].startswith("   reading: of 30 calls, slow (+5 ms) took "), lines[5]
    assert "weighted_round_robin (static weights: healthy 3, slow 1, flaky 1)" in result.stdout


def test_demo_counts_failures_no_backend_returned_under_their_code() -> None:
    addresses: dict[str, str]
    with start_backends(3, names=list(BACKEND_NAMES)) as backends:
        for backend in backends:
            backend.configure(hang=True)  # every call ends in the client's DEADLINE_EXCEEDED
        addresses = {backend.name: backend.address for backend in backends}
        result = run_strategy(
            "round_robin", {}, addresses, calls=3, threads=3, seconds=10, timeout=0.3
        )
    assert [stats.calls for stats in result.backends] == [0, 0, 0]
    assert result.unattributed == {"DEADLINE_EXCEEDED": 3}
    assert result.calls == 3
    assert _reading(result, 0.0, 0.0).endswith("; 3 failed on no backend (DEADLINE_EXCEEDED 3).")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slow", "20"], "argument --slow: 20 is outside the allowed range [0.0, 0.5] s"),
        (["--slow-ms", "501"], "argument --slow-ms: 501 is outside the allowed range"),
        (["--slow-ms", "-1"], "argument --slow-ms: -1 is outside the allowed range"),
        (["--slow-ms", "nan"], "argument --slow-ms: nan is outside the allowed range"),
        (["--slow-ms", "20", "--slow", "0.02"], "not allowed with argument"),
        (["--flaky", "1.5"], "argument --flaky: 1.5 is outside the allowed range [0.0, 1.0]"),
        (["--threads", "0"], "argument --threads: 0 is outside the allowed range [1, 32]"),
        (["--calls", "many"], "argument --calls: 'many' is not a number"),
        (["--seconds", "0"], "argument --seconds: 0 is outside the allowed range (0.0, 300.0]"),
    ],
)
def test_demo_rejects_out_of_range_options_before_starting(argv: list[str], message: str) -> None:
    result = run("-m", "resilientrpc.cli", "demo", *argv)
    assert result.returncode == 2
    assert result.stdout == ""  # nothing started, nothing printed
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


#: Options whose help must state a default, per command.
DEFAULTED_OPTIONS = {
    "demo": ("--calls", "--threads", "--seconds", "--slow-ms", "--flaky"),
    "bench": ("--calls", "--seconds", "--twin", "--scenario", "--backends", "--output", "--seed"),
}


def option_helps(help_text: str) -> dict[str, str]:
    """Each option of an argparse help text and its (joined) help paragraph."""
    options_part = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    helps: dict[str, str] = {}
    current = ""
    for line in options_part.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            if current == "-h":
                current = "--help"
            helps[current] = line
        else:
            helps[current] += " " + line.strip()
    return {option: " ".join(text.split()) for option, text in helps.items()}


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_command_help_is_plain_text_with_defaults(command: str) -> None:
    result = run("-m", "resilientrpc.cli", command, "--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout and not re.search(r":[a-z]+:`", result.stdout)
    helps = option_helps(result.stdout)
    for option in DEFAULTED_OPTIONS[command]:
        assert "default: " in helps[option], (option, helps[option])
    if command == "demo":
        assert "milliseconds" in helps["--slow-ms"] and "seconds" in helps["--slow"]


def test_cli_prints_its_version() -> None:
    for flag in ("--version", "-V"):
        result = run("-m", "resilientrpc.cli", flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"resilientrpc {importlib.metadata.version('resilientrpc')}\n"


def test_cli_usage_names_every_command_and_option() -> None:
    result = run("-m", "resilientrpc.cli", "--help")
    assert result.returncode == 0
    for word in ("demo", "bench", "--version", "--help"):
        assert word in result.stdout
    bare = run("-m", "resilientrpc.cli")
    assert bare.returncode == 2 and "usage: resilientrpc" in bare.stderr


def test_cli_rejects_unknown_command() -> None:
    result = run("-m", "resilientrpc.cli", "frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr


PUBLIC_MODULES = (
    "resilientrpc",
    "resilientrpc.aio",
    "resilientrpc.config",
    "resilientrpc.errors",
    "resilientrpc.endpoint",
    "resilientrpc.health",
    "resilientrpc.load_report",
    "resilientrpc.picker",
    "resilientrpc.balancer",
    "resilientrpc.strategies",
    "resilientrpc.targets",
    "resilientrpc.testing",
    "resilientrpc.testing.fault_run",
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


# -- the faults scenario: real child processes and signals, timeline x0.2 ------------


def _faults_demo(*argv: str) -> list[str]:
    result = run("-m", "resilientrpc.cli", "demo", "--time-scale", "0.2", *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _index(lines: list[str], pattern: str, start: int = 0) -> int:
    return next(i for i in range(start, len(lines)) if re.search(pattern, lines[i]))


def test_demo_faults_plays_its_timeline_and_prints_events_and_tables() -> None:
    lines = _faults_demo("--no-detection", "--threads", "4")
    assert "detection off" in "\n".join(lines[:4])
    steps = [line.split("==>", 1)[1].strip() for line in lines if "==>" in line]
    assert steps == [
        "hang: SIGSTOP: frozen, its connections open",
        "hang: SIGCONT: running again",
        "fail: every call fails with UNAVAILABLE",
        "fail: answers again",
        "slow: +150 ms per reply",
        "slow: fast again",
        "flip: reports NOT_SERVING",
        "flip: reports SERVING",
        "fail,slow,flip: all three report NOT_SERVING",
        "fail,slow,flip: all three report SERVING",
        "end",
    ]
    for name in ("steady", "hang", "fail", "slow", "flip"):  # the events API, replayed or live
        assert any(
            re.search(rf"event  127\.0\.0\.1:\d+ {name}: connectivity: READY", line)
            for line in lines
        ), name
    # Without detection the hung backend keeps its share, and its calls time out.
    stopped = _index(lines, "==> +hang: SIGSTOP")
    resumed = _index(lines, "==> +hang: SIGCONT", stopped)
    after = _index(lines, r"^\s+hang\s+\d+ ", resumed)
    hang_rows = [
        line.split() for line in lines[stopped : after + 1] if re.match(r"^\s+hang\s", line)
    ]
    assert any(int(row[6]) > 0 for row in hang_rows), hang_rows  # fails/s


def test_demo_faults_shows_each_backend_leave_and_come_back() -> None:
    lines = _faults_demo()
    stopped = _index(lines, "==> +hang: SIGSTOP")
    missed = _index(lines, r"event .* hang: heartbeat_missed", stopped)
    resumed = _index(lines, "==> +hang: SIGCONT", missed)
    _index(lines, r"event .* hang: health", resumed)
    failing = _index(lines, "==> +fail: every call fails")
    _index(lines, r"event .* fail: readmitted", _index(lines, r"event .* fail: ejected", failing))
    flipped = _index(lines, "==> +flip: reports NOT_SERVING")
    _index(lines, r"event .* flip: health", _index(lines, r"event .* flip: health", flipped))
    panic = _index(lines, "event  channel: panic_entered")
    _index(lines, "event  channel: panic_left", panic)
    # (A table says "panic mode: ON" only if one is printed during the 0.6 s of panic at
    # this time scale: not asserted, the events are.)


@pytest.mark.parametrize(
    "argv",
    [
        ["--scenario", "faults", "--calls", "5"],
        ["--time-scale", "0.5", "--flaky", "0.1"],
        ["--scenario", "strategies", "--no-detection"],
        ["--time-scale", "0.01"],
    ],
)
def test_demo_refuses_the_other_scenarios_options(argv: list[str]) -> None:
    result = run("-m", "resilientrpc.cli", "demo", *argv)
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr
    assert "not an option of the" in result.stderr or "allowed range" in result.stderr
