"""Job management in the caller's transaction: ``cancel_*``, ``retry_*`` and
``delete_*`` with ``conn=`` commit or roll back with the caller's own work.

Runs on Lite (a SQLite file) and on Basic (PostgreSQL) alike; the
PostgreSQL-only parts (pkill over NOTIFY, AsyncSession) are in
``tests/postgres/test_management.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from oban import Job, Oban
from tests.conftest import SqlDatabase
from tests.postgres.workers import Note


@dataclass
class Setup:
    oban: Oban
    bind: sa.Engine
    jobs_table: str

    def state(self, job: Job) -> str | None:
        """The stored state, read on a connection of its own (outside any open transaction)."""
        with self.bind.connect() as conn:
            query = sa.text(f"SELECT state FROM {self.jobs_table} WHERE id = :id")
            found = conn.execute(query, {"id": job.id}).scalar()
        return None if found is None else str(found)


@pytest.fixture
def setup(database: SqlDatabase) -> Setup:
    """An instance (no queues) on the shared ``database``, Lite or Basic."""
    return Setup(database.make_oban(), database.bind, database.jobs_table)


Operation = Callable[[Oban, int, Any], object]

OPERATIONS: dict[str, tuple[Operation, str, str | None]] = {
    # name: (the call, the job's state before, its stored state after a commit)
    "cancel_job": (lambda o, job_id, c: o.cancel_job(job_id, conn=c), "available", "cancelled"),
    "cancel_many": (
        lambda o, job_id, c: o.cancel_many(ids=[job_id], conn=c),
        "available",
        "cancelled",
    ),
    "retry_job": (lambda o, job_id, c: o.retry_job(job_id, conn=c), "cancelled", "available"),
    "retry_many": (
        lambda o, job_id, c: o.retry_many(worker=Note, state="cancelled", conn=c),
        "cancelled",
        "available",
    ),
    "delete_job": (lambda o, job_id, c: o.delete_job(job_id, conn=c), "available", None),
    "delete_many": (lambda o, job_id, c: o.delete_many(queue="default", conn=c), "available", None),
}


def _prepared(setup: Setup, state: str) -> Job:
    job = setup.oban.enqueue(Note.new({}))
    if state == "cancelled":
        assert setup.oban.cancel_job(job.id or 0) is True
    assert setup.state(job) == state
    return job


@pytest.mark.parametrize("name", list(OPERATIONS))
@pytest.mark.parametrize("kind", ["session", "connection"])
def test_management_in_the_callers_transaction(setup: Setup, name: str, kind: str) -> None:
    call, before, after = OPERATIONS[name]
    job = _prepared(setup, before)

    @contextmanager
    def transaction() -> Iterator[Session | sa.Connection]:
        if kind == "session":
            with Session(setup.bind) as session:
                yield session
        else:
            with setup.bind.connect() as conn:
                yield conn

    with transaction() as conn:
        assert call(setup.oban, job.id or 0, conn) in (True, 1)
        assert setup.state(job) == before, "not visible before commit"
        conn.rollback()
    assert setup.state(job) == before, "rolled back"

    with transaction() as conn:
        assert call(setup.oban, job.id or 0, conn) in (True, 1)
        conn.commit()
    assert setup.state(job) == after


@pytest.mark.anyio
async def test_async_twins_with_a_sync_session(setup: Setup) -> None:
    """The ``_async`` methods accept a sync Session too (run in a worker thread)."""
    oban = setup.oban
    job = await oban.enqueue_async(Note.new({}))
    assert job.id is not None
    with Session(setup.bind) as session:
        assert await oban.cancel_job_async(job.id, conn=session) is True
        assert [
            found.id for found in await oban.list_jobs_async(state="cancelled", conn=session)
        ] == [job.id]
        session.rollback()
    assert setup.state(job) == "available"

    with Session(setup.bind) as session:
        assert await oban.cancel_many_async(worker=Note, conn=session) == 1
        session.commit()
    assert setup.state(job) == "cancelled"
    with Session(setup.bind) as session:
        assert await oban.retry_many_async(ids=[job.id or 0], conn=session) == 1
        assert await oban.retry_job_async(job.id or 0, conn=session) is False, "already available"
        session.commit()
    assert setup.state(job) == "available"
    with Session(setup.bind) as session:
        assert await oban.delete_many_async(state="available", conn=session) == 1
        assert await oban.delete_job_async(job.id or 0, conn=session) is False, "already gone"
        session.commit()
    assert setup.state(job) is None
