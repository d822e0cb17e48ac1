"""Unique jobs through the public API, on Lite and on Basic.

``Worker.enqueue(..., unique=...)``, ``await Worker.enqueue_async(...)`` under
asyncio and trio, ``oban.enqueue_many``, function workers, and the caller's
own Session (``conn=``). No queue runs: these tests are about inserts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from oban import Job, JobState, Oban, Worker, job, worker
from oban.engines.sql import SqlEngine
from oban.schema import oban_jobs
from tests.conftest import SqlDatabase


@worker(queue="unique_api", unique=True)
class UniqueNote(Worker):
    def process(self, job: Job) -> None: ...


@worker(queue="unique_api")
class PlainNote(Worker):
    def process(self, job: Job) -> None: ...


@worker(
    queue="unique_api",
    unique={"keys": ["account"], "period": None},
    replace={"scheduled": ["scheduled_at", "args"]},
)
class Debounced(Worker):
    def process(self, job: Job) -> None: ...


@job(queue="unique_api", unique={"period": 300})
def ping(host: str) -> None: ...


@dataclass
class Setup:
    oban: Oban
    engine: SqlEngine

    def rows(self) -> int:
        with self.engine.transaction() as conn:
            query = sa.select(sa.func.count()).select_from(oban_jobs)
            return int(self.engine.execute(conn, query).scalar_one())


@pytest.fixture
def setup(database: SqlDatabase) -> Setup:
    """One instance (no queues) on the shared ``database``, Lite or Basic, and its engine."""
    instance = database.make_oban()
    assert isinstance(instance.engine, SqlEngine)
    return Setup(instance, instance.engine)


def test_enqueue_twice_returns_the_same_job_marked_conflict(setup: Setup) -> None:
    first = UniqueNote.enqueue({"id": 1})
    second = UniqueNote.enqueue({"id": 1})
    other = UniqueNote.enqueue({"id": 2})

    assert first.conflict is False
    assert second.conflict is True
    assert second.id == first.id
    assert other.conflict is False
    assert setup.rows() == 2


def test_per_job_unique_on_a_plain_worker(setup: Setup) -> None:
    first = PlainNote.enqueue({"id": 1}, unique={"period": 30})
    assert PlainNote.enqueue({"id": 1}, unique={"period": 30}).id == first.id
    # Without the option the worker's jobs are plain.
    assert PlainNote.enqueue({"id": 1}).conflict is False
    assert setup.rows() == 2


def test_per_job_unique_false_turns_the_workers_off(setup: Setup) -> None:
    UniqueNote.enqueue({"id": 1})
    assert UniqueNote.enqueue({"id": 1}, unique=False).conflict is False
    assert setup.rows() == 2


def test_function_worker(setup: Setup) -> None:
    first = ping.enqueue("db1")
    second = ping.enqueue("db1")
    assert second.conflict is True
    assert second.id == first.id


def test_debounce_with_replace(setup: Setup) -> None:
    """The classic debounce: each new event pushes the pending job later and
    replaces its args; one job stays scheduled per account."""
    first = Debounced.enqueue({"account": 1, "event": 1}, schedule_in=60)
    second = Debounced.enqueue({"account": 1, "event": 2}, schedule_in=120)

    assert second.conflict is True
    assert second.id == first.id
    assert second.args == {"account": 1, "event": 2}
    assert first.scheduled_at is not None
    assert second.scheduled_at is not None
    assert second.scheduled_at > first.scheduled_at
    stored = setup.oban.get_job(first.id or 0)
    assert stored is not None
    assert stored.state is JobState.SCHEDULED
    assert stored.args == {"account": 1, "event": 2}
    assert setup.rows() == 1


def test_enqueue_many_with_duplicates(setup: Setup) -> None:
    jobs = setup.oban.enqueue_many(
        [
            UniqueNote.new({"id": 1}),
            PlainNote.new({"id": 1}),
            UniqueNote.new({"id": 1}),
            UniqueNote.new({"id": 2}),
        ]
    )
    assert [found.conflict for found in jobs] == [False, False, True, False]
    assert jobs[2].id == jobs[0].id
    assert setup.rows() == 3


def test_20_threads_enqueue_through_oban(setup: Setup) -> None:
    barrier = threading.Barrier(20)
    results: list[Job] = []
    lock = threading.Lock()

    def enqueue() -> None:
        barrier.wait(timeout=30)
        found = UniqueNote.enqueue({"id": "threads"})
        with lock:
            results.append(found)

    threads = [threading.Thread(target=enqueue) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 20
    assert len({found.id for found in results}) == 1
    assert sum(not found.conflict for found in results) == 1
    assert setup.rows() == 1


@pytest.mark.anyio
async def test_20_concurrent_enqueue_async_tasks(setup: Setup) -> None:
    results: list[Job] = []

    async def enqueue() -> None:
        results.append(await UniqueNote.enqueue_async({"id": "tasks"}))

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(enqueue)

    assert len(results) == 20
    assert len({found.id for found in results}) == 1
    assert sum(not found.conflict for found in results) == 1
    assert setup.rows() == 1


@pytest.mark.anyio
async def test_enqueue_async_with_per_job_unique_and_many(setup: Setup) -> None:
    first = await PlainNote.enqueue_async({"id": 1}, unique={"keys": ["id"]})
    again = await PlainNote.enqueue_async({"id": 1, "x": 1}, unique={"keys": ["id"]})
    assert again.conflict is True
    assert again.id == first.id
    many = await setup.oban.enqueue_many_async(
        [UniqueNote.new({"id": 5}), UniqueNote.new({"id": 5})]
    )
    assert [found.conflict for found in many] == [False, True]


def test_in_the_callers_session_rollback_leaves_nothing_then_commit_counts(
    setup: Setup,
) -> None:
    bind = setup.engine.bind
    with Session(bind) as session:
        inside = setup.oban.enqueue(UniqueNote.new({"id": "tx"}), conn=session)
        assert inside.conflict is False
        session.rollback()
    assert setup.rows() == 0

    with Session(bind) as session, session.begin():
        committed = setup.oban.enqueue(UniqueNote.new({"id": "tx"}), conn=session)
        # Seen again inside the same transaction, before it commits.
        again = setup.oban.enqueue(UniqueNote.new({"id": "tx"}), conn=session)
        assert committed.conflict is False
        assert again.conflict is True
        assert again.id == committed.id
    assert UniqueNote.enqueue({"id": "tx"}).id == committed.id
    assert setup.rows() == 1
