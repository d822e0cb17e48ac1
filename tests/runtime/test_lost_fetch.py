"""A fetch the server committed but whose reply the node never got (the
connection cut between the two: a restart, ``pg_terminate_backend``, a
network fault) leaves its rows ``executing`` for a node that is alive and
heart-beating, so the lifeline, which rescues the jobs of dead nodes, never
takes them back. The node itself must put them back, and run each once.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy.engine import Connection

from oban import Job, JobState
from oban.errors import DatabaseError
from tests.conftest import SqlDatabase, wait_for
from tests.runtime.workers import EFFECTS, Complete


def test_a_fetch_committed_but_whose_reply_was_lost_still_runs_its_jobs_once(
    database: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = database.make_oban(queues={"default": 2}, poll_interval=0.05, stage_interval=0.05)
    real = node.engine.fetch_jobs
    cut = threading.Event()

    def fetch_then_lose_the_reply(
        conn: Connection, queue: str, demand: int, by: list[str], now: datetime
    ) -> list[Job]:
        jobs = real(conn, queue, demand, by, now)
        if jobs and not cut.is_set():
            cut.set()
            conn.commit()  # the server committed the claim...
            raise DatabaseError("database error: server closed the connection unexpectedly")
        return jobs  # ...and its reply never reached the node

    monkeypatch.setattr(node.engine, "fetch_jobs", fetch_then_lose_the_reply)
    jobs = node.enqueue_many([Complete.new({"n": n}) for n in range(2)])

    def completed() -> bool:
        found = [node.get_job(job.id or 0) for job in jobs]
        return all(job is not None and job.state is JobState.COMPLETED for job in found)

    node.start()
    wait_for(completed, timeout=15, message="the jobs of the lost fetch run")
    node.stop()
    assert cut.is_set()
    for job in jobs:
        assert EFFECTS.runs_of(job.id) == [("sync", job.id, 1)], "once, as attempt 1"
        done = node.get_job(job.id or 0)
        assert done is not None
        assert done.attempt == 1, "the attempt that never ran is not counted"
        assert "reply was lost" in done.errors[0]["error"]
