"""Transactional enqueue: a job enqueued in the caller's Session or Connection
commits or rolls back with the caller's own work.

Runs on Lite (a SQLite file) and on Basic (PostgreSQL) alike; the
AsyncSession/AsyncConnection variants, PostgreSQL only, are in
``tests/postgres/test_transactional_async.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from oban import Job, JobState, Oban
from tests.conftest import SqlDatabase, wait_for
from tests.postgres.workers import SEEN, Note


@dataclass
class Setup:
    """A running-capable Oban and a separate engine for the caller's own transactions."""

    oban: Oban
    bind: sa.Engine
    jobs_table: str

    def stored(self, job_id: int | None) -> int:
        """Rows with this id, read on a connection of its own (outside any open transaction)."""
        with self.bind.connect() as conn:
            query = sa.text(f"SELECT count(*) FROM {self.jobs_table} WHERE id = :id")
            return int(conn.execute(query, {"id": job_id}).scalar_one())

    def completed(self, job_id: int | None) -> bool:
        job = self.oban.get_job(job_id or 0)
        return job is not None and job.state is JobState.COMPLETED


pytestmark = pytest.mark.usefixtures("forget_seen")


@pytest.fixture
def setup(database: SqlDatabase) -> Setup:
    """An instance with a ``default`` queue on the shared ``database``, Lite or Basic."""
    instance = database.make_oban(queues={"default": 5}, poll_interval=0.1)
    return Setup(instance, database.bind, database.jobs_table)


def _enqueue(instance: Oban, conn: Session | sa.Connection, many: bool) -> list[Job]:
    if many:
        return instance.enqueue_many([Note.new({"n": 1}), Note.new({"n": 2})], conn=conn)
    return [instance.enqueue(Note.new({"n": 0}), conn=conn)]


@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
def test_session_commit_runs_the_jobs_and_rollback_leaves_none(setup: Setup, many: bool) -> None:
    with setup.oban:
        with Session(setup.bind) as session:
            jobs = _enqueue(setup.oban, session, many)
            assert all(job.id is not None for job in jobs)
            assert [setup.stored(job.id) for job in jobs] == [0] * len(jobs)  # not committed yet
            session.commit()
        wait_for(lambda: all(setup.completed(job.id) for job in jobs), message="committed jobs ran")

        with Session(setup.bind) as session:
            dropped = _enqueue(setup.oban, session, many)
            session.rollback()
        assert [setup.stored(job.id) for job in dropped] == [0] * len(dropped)
        assert not any(SEEN.has(job.id) for job in dropped)


@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
def test_connection_commit_runs_the_jobs_and_rollback_leaves_none(setup: Setup, many: bool) -> None:
    with setup.oban:
        with setup.bind.connect() as conn, conn.begin():
            jobs = _enqueue(setup.oban, conn, many)
            assert [setup.stored(job.id) for job in jobs] == [0] * len(jobs)
        # leaving the block committed
        wait_for(lambda: all(setup.completed(job.id) for job in jobs), message="committed jobs ran")

        with setup.bind.connect() as conn:
            transaction = conn.begin()
            dropped = _enqueue(setup.oban, conn, many)
            transaction.rollback()
        assert [setup.stored(job.id) for job in dropped] == [0] * len(dropped)
        assert not any(SEEN.has(job.id) for job in dropped)


def test_the_job_commits_together_with_the_callers_own_rows(setup: Setup) -> None:
    """Business row and job: both or neither."""
    with setup.bind.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS signups (email TEXT PRIMARY KEY)"))
    with Session(setup.bind) as session:
        session.execute(sa.text("INSERT INTO signups (email) VALUES ('a@example.com')"))
        kept = setup.oban.enqueue(Note.new({"email": "a@example.com"}), conn=session)
        session.commit()
    with Session(setup.bind) as session:
        session.execute(sa.text("INSERT INTO signups (email) VALUES ('b@example.com')"))
        dropped = setup.oban.enqueue(Note.new({"email": "b@example.com"}), conn=session)
        session.rollback()
    with setup.bind.begin() as conn:
        emails = conn.execute(sa.text("SELECT email FROM signups")).scalars().all()
        conn.execute(sa.text("DROP TABLE signups"))
    assert emails == ["a@example.com"]
    assert (setup.stored(kept.id), setup.stored(dropped.id)) == (1, 0)
