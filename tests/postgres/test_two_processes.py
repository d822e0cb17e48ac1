"""Two OS processes, each running Oban with a queue limit of 10, drain 5,000 jobs.

Every execution writes a row to a side table (no unique key), so a job that
ran twice would leave two rows: the test counts side effects, not just states.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from oban import Oban
from tests.postgres.support import table
from tests.postgres.workers import SideEffect

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
TOTAL = 5_000


def test_two_processes_drain_5000_jobs_each_exactly_once(
    postgres_url: str, pg_prefix: str, pg_bind: sa.Engine
) -> None:
    with pg_bind.begin() as conn:
        conn.execute(
            sa.text(
                f'CREATE TABLE "{pg_prefix}".side_effects (job_id bigint NOT NULL, '
                "attempt integer NOT NULL, node text NOT NULL)"
            )
        )
    inserter = Oban(postgres_url, prefix=pg_prefix, name="inserter")
    try:
        jobs = inserter.enqueue_many(SideEffect.new({"n": n}) for n in range(TOTAL))
    finally:
        inserter.close()
    assert len(jobs) == TOTAL

    processes: list[subprocess.Popen[str]] = []
    try:
        for node in ("node-a", "node-b"):
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
                "OBAN_TEST_NODE": node,
                "OBAN_TEST_SIDE_URL": postgres_url,
                "OBAN_TEST_SIDE_SCHEMA": pg_prefix,
            }
            command = [
                sys.executable,
                "-m",
                "tests.postgres.drain_process",
                postgres_url,
                pg_prefix,
                str(TOTAL),
                "150",
            ]
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
        outputs = [process.communicate(timeout=180) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (
            f"drain_process failed ({process.returncode}):\n{out}\n{err}"
        )

    with pg_bind.connect() as conn:
        effects = conn.execute(
            sa.text(f'SELECT job_id, attempt, node FROM "{pg_prefix}".side_effects')
        ).all()
        states = conn.execute(
            sa.text(
                f"SELECT state::text AS state, attempt, attempted_by[1] AS node, count(*) AS n "
                f"FROM {table(pg_prefix)} GROUP BY 1, 2, 3"
            )
        ).all()

    executions = Counter(row.job_id for row in effects)
    assert len(effects) == TOTAL, "a job ran twice or not at all"
    assert executions == Counter({job.id: 1 for job in jobs})
    assert {row.attempt for row in effects} == {1}
    assert {(row.state, row.attempt) for row in states} == {("completed", 1)}
    assert sum(row.n for row in states) == TOTAL
    # Each job was claimed by the node that executed it.
    by_node = Counter(row.node for row in effects)
    assert {row.node: row.n for row in states} == dict(by_node)
    print(f"executions per node: {dict(by_node)}")
