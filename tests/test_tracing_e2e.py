"""End to end: a traced ResilientChannel exports over OTLP/gRPC to a real receiver.

`examples/jaeger_tracing.py` (the README's Jaeger example: the SDK, a batch span
processor and the real OTLP/gRPC exporter) runs against three backends of which one fails
30 % of its calls, and sends its spans not to Jaeger but to `resilientrpc faults --listen`,
a real OTLP/gRPC TraceService receiver on 127.0.0.1. The report it prints must see every
call and attempt, and name the failing backend, whose failures retries rescued.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESILIENTRPC = Path(sys.executable).with_name("resilientrpc")


def test_spans_of_the_jaeger_example_reach_a_real_otlp_receiver_and_name_the_culprit() -> None:
    receiver = subprocess.Popen(
        [str(RESILIENTRPC), "faults", "--listen", "127.0.0.1:0", "--seconds", "12", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert receiver.stdout is not None
        first = receiver.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first
        endpoint = first.split()[-1]
        example = subprocess.run(
            [
                sys.executable,
                "examples/jaeger_tracing.py",
                "--endpoint",
                endpoint,
                "--calls",
                "200",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert example.returncode == 0, example.stderr
        assert "200 calls traced" in example.stdout
        out, err = receiver.communicate(timeout=40)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
    report = json.loads(out)
    assert report["calls"] == 200, err
    figures = report["endpoints"]
    assert len(figures) == 3 and sum(f["attempts"] for f in figures) == report["attempts"]
    flaky = max(figures, key=lambda f: f["failures"])
    assert 0.1 <= flaky["failure_rate"] <= 0.5, flaky
    assert flaky["failures_by_code"] == {"UNAVAILABLE": flaky["failures"]}
    assert flaky["rescued_by_retry"] == flaky["failures"]  # maxAttempts 3: each was rescued
    assert report["attempts"] == 200 + flaky["failures"]
    assert report["suspects"][0]["endpoint"] == flaky["endpoint"]
    assert all(f["failures"] == 0 for f in figures if f is not flaky)
