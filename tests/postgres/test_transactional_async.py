"""Transactional enqueue through SQLAlchemy's asyncio extension, on PostgreSQL.

``await oban.enqueue_async(job, conn=async_session)`` runs the insert inside
the caller's AsyncSession/AsyncConnection (``run_sync``). SQLAlchemy's
asyncio extension runs on asyncio only, so trio is skipped here; the runtime
itself is tested under trio everywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from oban import Job, JobState, Oban
from oban.engines import copy_rows
from tests.postgres.support import table, wait_async_for
from tests.postgres.workers import SEEN, AsyncNote, Note

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(
            "trio",
            id="trio",
            marks=pytest.mark.skip(
                reason="SQLAlchemy's asyncio extension (AsyncSession) runs on asyncio only"
            ),
        ),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def async_bind(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    bind = create_async_engine(postgres_url)
    yield bind
    await bind.dispose()


async def _stored(bind: AsyncEngine, prefix: str, job_id: int | None) -> int:
    async with bind.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM {table(prefix)} WHERE id = :id")
        return int((await conn.execute(query, {"id": job_id})).scalar_one())


async def _enqueue(instance: Oban, conn: AsyncSession | AsyncConnection, many: bool) -> list[Job]:
    if many:
        # Big enough for Basic's COPY path, which a user's async connection
        # cannot take: the batch must go in by INSERT in the same transaction.
        jobs = [Note.new({"n": 1}), AsyncNote.new({"n": 2})]
        jobs += [AsyncNote.new({"n": n}) for n in range(3, 3 + copy_rows.COPY_THRESHOLD)]
        return await instance.enqueue_many_async(jobs, conn=conn)
    return [await instance.enqueue_async(AsyncNote.new({"n": 0}), conn=conn)]


@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
async def test_async_session_commit_runs_and_rollback_leaves_none(
    make_oban: Callable[..., Oban], async_bind: AsyncEngine, pg_prefix: str, many: bool
) -> None:
    instance = make_oban(queues={"default": 5}, poll_interval=0.1)

    async def completed(jobs: list[Job]) -> bool:
        found = [await instance.get_job_async(job.id or 0) for job in jobs]
        return all(job is not None and job.state is JobState.COMPLETED for job in found)

    async with instance:
        async with AsyncSession(async_bind) as session:
            jobs = await _enqueue(instance, session, many)
            assert [await _stored(async_bind, pg_prefix, job.id) for job in jobs] == [0] * len(jobs)
            await session.commit()
        await wait_async_for(lambda: completed(jobs))

        async with AsyncSession(async_bind) as session:
            dropped = await _enqueue(instance, session, many)
            await session.rollback()
        assert [await _stored(async_bind, pg_prefix, job.id) for job in dropped] == [0] * len(
            dropped
        )
        assert not any(SEEN.has(job.id) for job in dropped)


@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
async def test_async_connection_commit_runs_and_rollback_leaves_none(
    make_oban: Callable[..., Oban], async_bind: AsyncEngine, pg_prefix: str, many: bool
) -> None:
    instance = make_oban(queues={"default": 5}, poll_interval=0.1)

    async def completed(jobs: list[Job]) -> bool:
        found = [await instance.get_job_async(job.id or 0) for job in jobs]
        return all(job is not None and job.state is JobState.COMPLETED for job in found)

    async with instance:
        async with async_bind.connect() as conn, conn.begin():
            jobs = await _enqueue(instance, conn, many)
        await wait_async_for(lambda: completed(jobs))

        async with async_bind.connect() as conn:
            transaction = await conn.begin()
            dropped = await _enqueue(instance, conn, many)
            await transaction.rollback()
        assert [await _stored(async_bind, pg_prefix, job.id) for job in dropped] == [0] * len(
            dropped
        )
        assert not any(SEEN.has(job.id) for job in dropped)
