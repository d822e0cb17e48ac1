"""Concurrent inserts of one unique job create exactly one row, on every engine that
declares ``Capability.UNIQUE`` and ``Capability.SHARED`` (Basic and Lite).

Threads are released together by a ``threading.Barrier``; the two OS
processes (``tests/engines/unique_race_process.py``) are released together
by a line on their stdin. Every insert must return the same job id, and
exactly one of them must be the insert (``conflict`` False).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import orjson
import pytest
import sqlalchemy as sa

from oban import Capability, Engine, Job
from oban.engines.sql import SqlEngine
from oban.job import utc_now
from oban.schema import oban_jobs
from tests.engines.unique_race_process import race_job

pytestmark = pytest.mark.requires(Capability.UNIQUE, Capability.SHARED)

REPO = Path(__file__).resolve().parents[2]
THREADS = 20


def rows(engine: Engine) -> int:
    sql = cast("SqlEngine", engine)
    with sql.transaction() as conn:
        query = sa.select(sa.func.count()).select_from(oban_jobs)
        return int(sql.execute(conn, query).scalar_one())


def race(insert: Callable[[], Job], threads: int = THREADS) -> list[Job]:
    """Run ``insert`` in ``threads`` threads released at once; every result, or raise."""
    barrier = threading.Barrier(threads)
    results: list[Job] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            job = insert()
            with lock:
                results.append(job)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == threads
    return results


def assert_one_row(engine: Engine, results: list[tuple[int | None, bool]]) -> None:
    ids = {job_id for job_id, _ in results}
    inserts = [job_id for job_id, conflict in results if not conflict]
    assert len(ids) == 1, f"{len(ids)} different jobs came back: {sorted(map(str, ids))}"
    assert len(inserts) == 1, f"{len(inserts)} inserts claimed to be the first"
    assert rows(engine) == 1


def test_20_threads_in_obans_transactions_insert_one_row(engine: Engine) -> None:
    def insert() -> Job:
        with engine.transaction() as conn:
            (job,) = engine.insert_jobs(conn, [race_job()], utc_now())
        return job

    results = race(insert)
    assert_one_row(engine, [(job.id, job.conflict) for job in results])


def test_20_threads_in_the_callers_own_transactions_insert_one_row(engine: Engine) -> None:
    """``conn=``: each thread's own SQLAlchemy connection and transaction.

    On SQLite nothing of Oban's serialises these (no in-process lock, no
    ``BEGIN IMMEDIATE``); the write lock taken before the lookup does.
    """
    bind = cast("SqlEngine", engine).bind

    def insert() -> Job:
        with bind.connect() as conn, conn.begin():
            (job,) = engine.insert_jobs(conn, [race_job()], utc_now())
        return job

    results = race(insert)
    assert_one_row(engine, [(job.id, job.conflict) for job in results])


def test_20_threads_enqueue_many_with_duplicates_in_each_batch(engine: Engine) -> None:
    def insert() -> Job:
        with engine.transaction() as conn:
            first, second = engine.insert_jobs(conn, [race_job(), race_job()], utc_now())
        assert second.conflict is True
        assert second.id == first.id
        return first

    results = race(insert)
    assert_one_row(engine, [(job.id, job.conflict) for job in results])


def test_two_os_processes_insert_one_row(engine: Engine) -> None:
    sql = cast("SqlEngine", engine)
    kind = engine.name
    url = sql.bind.url.render_as_string(hide_password=False)
    prefix = sql.prefix or "-"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "tests.engines.unique_race_process",
        kind,
        url,
        prefix,
        "10",  # threads per process
        "5",  # inserts per thread
    ]
    processes = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip() == "ready", (line, process.stderr and process.stderr.read())
        for process in processes:  # release both at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    results: list[tuple[int | None, bool]] = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        results.extend((job_id, conflict) for job_id, conflict in orjson.loads(out))
    assert len(results) == 2 * 10 * 5
    assert_one_row(engine, results)
