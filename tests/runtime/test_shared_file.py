"""Several Oban runtimes on one SQLite file never run a job twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from oban import JobState, Oban
from tests.conftest import wait_for
from tests.runtime import workers
from tests.runtime.workers import Effects

REPO = Path(__file__).resolve().parents[2]


def count_states(oban: Oban) -> Counter[str]:
    assert oban.bind is not None
    with oban.bind.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM oban_jobs GROUP BY state"))
        return Counter({str(state): int(count) for state, count in rows})


def test_two_instances_in_one_process_run_each_job_once(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    total = 1_000
    one = make_oban(name="one", node="node-one", queues={"default": 10}, backend="asyncio")
    two = make_oban(name="two", node="node-two", queues={"default": 10}, backend="trio")
    jobs = one.enqueue_many(workers.Complete.new({"n": n}) for n in range(total))

    with one, two:
        wait_for(
            lambda: count_states(one)[JobState.COMPLETED.value] == total,
            timeout=60,
            message=f"{total} jobs completed",
        )

    assert count_states(one) == Counter({JobState.COMPLETED.value: total})
    assert len(effects.runs) == total, "a job ran twice"
    assert {job_id for _, job_id, _ in effects.runs} == {job.id for job in jobs}
    assert {attempt for _, _, attempt in effects.runs} == {1}
    assert one.bind is not None
    with one.bind.connect() as conn:
        nodes = conn.execute(
            sa.text("SELECT DISTINCT json_extract(attempted_by, '$[0]') FROM oban_jobs")
        )
        assert {node for (node,) in nodes} <= {"node-one", "node-two"}


def test_two_processes_on_one_file_run_each_job_once(
    make_oban: Callable[..., Oban], sqlite_url: str, tmp_path: Path
) -> None:
    total = 1_200
    database = sqlite_url.removeprefix("sqlite:///")
    log = tmp_path / "effects.log"
    inserter = make_oban()
    jobs = inserter.enqueue_many(
        workers.AppendLine.new({"log": str(log), "n": n}) for n in range(total)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tests.runtime.drain_helper", database, str(total), "60"]

    processes: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [process.communicate(timeout=90) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"drain_helper failed ({process.returncode}):\n{out}\n{err}"

    lines = log.read_text().splitlines()
    runs = [tuple(int(part) for part in line.split()) for line in lines]
    assert len(runs) == total, "a job ran twice or not at all"
    assert Counter(job_id for job_id, _, _ in runs) == Counter({job.id: 1 for job in jobs})
    assert {attempt for _, attempt, _ in runs} == {1}
    assert {pid for _, _, pid in runs} <= {process.pid for process in processes}
    assert count_states(inserter) == Counter({JobState.COMPLETED.value: total})
