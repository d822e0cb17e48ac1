"""``oban start`` in a real subprocess: it runs jobs, and stops on signals with exit 0."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

import oban
from oban import Job
from tests.cli.conftest import CliDatabase
from tests.cli.support import read_log, serving
from tests.conftest import wait_for

IMPORT = ["--import", "tests.cli.workers"]


def _enqueue_records(db: CliDatabase, log: Path, count: int) -> list[int]:
    made = db.make_oban()
    saved = made.enqueue_many(
        [Job("tests.cli.workers.Record", args={"log": str(log), "n": n}) for n in range(count)]
    )
    return [job.id or 0 for job in saved]


def _states(db: CliDatabase, ids: list[int]) -> set[str]:
    made = db.make_oban()
    return {str(getattr(made.get_job(job_id), "state", None)) for job_id in ids}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_start_runs_jobs_and_stops_on_a_signal(
    migrated: CliDatabase, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    log = tmp_path / "runs.log"
    ids = _enqueue_records(migrated, log, 5)
    args = [*migrated.flags, "--queues", "default:3,other:1", *IMPORT, "--node", "cli-node"]
    with serving(*args, cwd=migrated.cwd) as server:
        started = server.wait_line("oban started")
        assert "node cli-node" in started
        assert "default:3, other:1" in started
        wait_for(lambda: len(read_log(log)) == 5, message="5 jobs run by oban start")
        assert sorted(read_log(log)) == sorted(f"ran {job_id}" for job_id in ids)
        wait_for(lambda: _states(migrated, ids) == {"completed"}, message="acks written")
        made = migrated.make_oban()
        late = made.enqueue(Job("tests.cli.workers.Record", args={"log": str(log), "n": 99}))
        wait_for(lambda: f"ran {late.id}" in read_log(log), message="a job inserted later")
        server.signal(stop_signal)
        assert server.wait() == 0, server.stderr()
    assert server.seen[-1] == "oban stopped"
    assert any("oban stopping" in line for line in server.seen)
    job = made.get_job(late.id or 0)
    assert job is not None
    assert job.attempted_by[0] == "cli-node"


def test_settings_from_the_environment_and_pyproject(migrated: CliDatabase, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    ids = _enqueue_records(migrated, log, 2)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.oban]\n"
        "queues = { default = 2 }\n"
        'import = ["tests.cli.workers"]\n'
        'node = "file-node"\n'
    )
    env = {**migrated.env, "OBAN_NODE": "env-node"}
    with serving(cwd=tmp_path, env=env) as server:
        started = server.wait_line("oban started")
        assert "node env-node" in started
        assert "default:2" in started
        wait_for(lambda: len(read_log(log)) == 2, message="jobs run with settings from files")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert sorted(read_log(log)) == sorted(f"ran {job_id}" for job_id in ids)


def test_a_second_signal_stops_at_once(lite: CliDatabase, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    made = lite.make_oban()
    sleeper = made.enqueue(Job("tests.cli.workers.Sleep", queue="slow", args={"log": str(log)}))
    with serving(
        *lite.flags, "--queues", "slow:1", *IMPORT, "--grace", "600", cwd=lite.cwd
    ) as server:
        server.wait_line("oban started")
        wait_for(lambda: f"started {sleeper.id}" in read_log(log), message="the sleeper runs")
        server.signal(signal.SIGTERM)
        server.wait_line("oban stopping: running jobs get 600s")
        server.signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0, server.stderr()
    assert "oban stopping now" in " ".join(server.seen)
    assert server.seen[-1] == "oban stopped"
    back = made.get_job(sleeper.id or 0)
    assert back is not None
    assert back.state == "available"  # put back, not lost or left executing
    assert back.attempt == 0


def test_grace_lets_a_short_job_finish(lite: CliDatabase, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    made = lite.make_oban()
    job = made.enqueue(
        Job("tests.cli.workers.Sleep", queue="slow", args={"log": str(log), "seconds": 1})
    )
    with serving(
        *lite.flags, "--queues", "slow:1", *IMPORT, "--grace", "30", cwd=lite.cwd
    ) as server:
        server.wait_line("oban started")
        wait_for(lambda: f"started {job.id}" in read_log(log), message="the job runs")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert f"finished {job.id}" in read_log(log)
    done = made.get_job(job.id or 0)
    assert done is not None
    assert done.state == "completed"


def test_start_with_app(migrated: CliDatabase, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    ids = _enqueue_records(migrated, log, 3)
    env = {"OBAN_TEST_CLI_DB": migrated.url, "OBAN_TEST_CLI_PREFIX": migrated.prefix or ""}
    with serving("--app", "tests.cli.app:oban", cwd=migrated.cwd, env=env) as server:
        started = server.wait_line("oban started")
        assert "node app-node" in started
        wait_for(lambda: len(read_log(log)) == 3, message="jobs run by the app's Oban")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert _states(migrated, ids) == {"completed"}


def test_serve_stops_and_raises_when_the_runtime_dies_on_its_own(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose runtime crashed must not sit there looking alive: ``oban
    start`` ends with the runtime's error (and a non-zero exit)."""
    from oban.cli.serve import serve
    from oban.runtime.runtime import Runtime

    async def dies(self: Runtime, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise RuntimeError("the runtime died")

    monkeypatch.setattr(Runtime, "serve", dies)
    oban.migrate(sqlite_url)
    instance = oban.Oban(sqlite_url, queues={"default": 1})
    said: list[str] = []
    try:
        with pytest.raises(RuntimeError, match="the runtime died"):
            serve(
                instance,
                0,
                on_started=lambda: said.append("started"),
                on_stopping=lambda: said.append("stopping"),
                on_hurry=lambda: said.append("hurry"),
            )
    finally:
        instance.close()
    assert said == ["started", "stopping"]
    assert not instance.is_running
