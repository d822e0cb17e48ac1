"""Smoke run of the benchmark harness (benchmarks/bench.py), so it keeps working.

A few hundred jobs, no peers (their venvs are the full run's business), Basic
on OBAN_TEST_DATABASE_URL's server (in an ``oban_bench_smoke_*`` database the
harness creates and drops) and Lite on a temporary file. It checks that the
harness exits 0, that every row is valid (each run completed all its jobs)
and that the tables were printed; never a timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Once, on one Python (the nox `slow` session): it measures the harness, not the interpreter.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_run_completes_every_job(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.setdefault(
        "OBAN_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/oban_test"
    )
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench.py"),
        "--quick",
        "--peers",
        "none",
        "--rounds",
        "1",
        "--workload",
        "W1,W2,W3,W4",
        "--engine",
        "basic,lite",
        "--db-prefix",
        "oban_bench_smoke_",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "INVALID" not in done.stdout, output
    summary = [line for line in done.stdout.splitlines() if line.startswith("rows: ")]
    assert summary, output
    assert " 0 invalid" in summary[-1], output
    assert "W3: " in done.stdout, output
    assert "ours lite" in done.stdout, output
    written = list(tmp_path.glob("*.md"))
    assert len(written) == 1, output
    assert "| system |" in written[0].read_text()
