"""The README's Observability blocks, run as a reader would copy them.

The logging and telemetry blocks run here; the OpenTelemetry and Prometheus
blocks run in a fresh interpreter, since they set process-wide state (the
global tracer provider, the default registry) that must not leak into other
tests. Each gets only a small prelude: a temporary directory as the working
directory, and what earlier README blocks define (``oban``, ``SendWelcome``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from oban import JobState, Oban, telemetry
from oban.observability import log
from tests.observability import workers
from tests.readme_snippets import snippet

ROOT = Path(__file__).resolve().parents[2]


def run_isolated(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_logging_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    try:
        with caplog.at_level(logging.INFO, logger=log.LOGGER):
            exec(snippet("observability-logging"), namespace)
            oban: Oban = namespace["oban"]
            oban.enqueue(workers.Succeed.new({}))
            oban.close()
        messages = [r.getMessage() for r in caplog.records if r.name == log.LOGGER]
        assert any(m.startswith("event=job.insert count=1 conflicts=0") for m in messages)
    finally:
        log.detach_logger()


def test_telemetry_block() -> None:
    namespace: dict[str, Any] = {}
    exec(snippet("observability-telemetry"), namespace)
    try:
        failed = Oban(testing="inline").enqueue(workers.Fail.new({"n": 5}))
        assert failed.state is JobState.RETRYABLE
        assert namespace["failures"] == [("tests.observability.workers.Fail", 1, "boom 5")]
    finally:
        telemetry.detach(namespace["handle"])


def test_otel_block(tmp_path: Path) -> None:
    prelude = textwrap.dedent(
        """
        from oban import Oban, Worker, worker

        @worker(queue="default")
        class SendWelcome(Worker):
            def process(self, job):
                return None

        oban = Oban(testing="inline")
        """
    )
    out = run_isolated(prelude + snippet("observability-otel"), tmp_path)
    assert '"name": "POST /signup"' in out
    assert '"name": "send default"' in out
    assert '"name": "process default"' in out
    trace_ids = {line.split('"')[3] for line in out.splitlines() if '"trace_id"' in line}
    assert len(trace_ids) == 1  # the job's spans joined the request's trace


def test_prometheus_block(tmp_path: Path) -> None:
    prelude = textwrap.dedent(
        """
        from oban import Job, Oban

        oban = Oban("sqlite:///jobs.db")
        oban.migrate()
        oban.enqueue_many([Job("app.Mail", queue="mailers") for _ in range(3)])
        """
    )
    out = run_isolated(prelude + snippet("observability-prometheus"), tmp_path)
    assert "oban_database_up 1.0" in out
    assert 'oban_jobs{queue="mailers",state="available"} 3.0' in out
    assert 'oban_queue_depth{queue="mailers"} 3.0' in out
