"""Job management on PostgreSQL: pkill over NOTIFY, and the caller's transaction.

Cancelling an executing job sends Elixir Oban's signal, ``{"action": "pkill",
"job_id": id}`` on ``<prefix>.oban_signal``, in the cancelling transaction: it
is delivered on commit and never on rollback, and every node's notifier hears
it. The running nodes here check the database for cancels only every 60 s,
so a stop within the test's deadline was caused by the notification.

The ``conn=`` tests that run on Lite as well are in
``tests/runtime/test_transactional_management.py``.
"""

from __future__ import annotations

import base64
import gzip
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import Session

from oban import Job, JobState, Oban
from oban.engines.basic import Basic
from oban.engines.signals import channel_name
from oban.job import utc_now
from tests.conftest import wait_for
from tests.introspection import notifier_of, runtime_of
from tests.postgres.support import table, wait_async
from tests.postgres.workers import Note
from tests.runtime.cancel_workers import STOPS, AsyncWaits, SyncPolls

SLOW = {"poll_interval": 60.0, "stage_interval": 60.0, "cancel_check_interval": 60.0}
"""Nothing but a notification (or the node's own enqueue) makes these runtimes act."""


@pytest.fixture(autouse=True)
def _stops() -> Iterator[None]:
    STOPS.reset()
    yield
    STOPS.release.set()
    STOPS.reset()


def _claim(instance: Oban, count: int) -> list[Job]:
    """Claim ``count`` available jobs as some other node would (no runtime here)."""
    engine = instance.engine
    with engine.transaction() as conn:
        return engine.fetch_jobs(conn, "default", count, ["elsewhere", "p-1"], utc_now())


@dataclass
class Listener:
    """A LISTEN connection of the test's own, handing out notices one at a time."""

    conn: psycopg.Connection[Any]
    received: deque[tuple[str, dict[str, Any]]]

    def next(self) -> tuple[str, dict[str, Any]]:
        if not self.received:
            # Consumed whole (stop_after returns early): leaving psycopg's
            # generator half-read would leave the connection unusable.
            notices = list(self.conn.notifies(timeout=20, stop_after=1))
            self.received.extend((n.channel, orjson.loads(n.payload)) for n in notices)
        if not self.received:
            pytest.fail("no notification within 20 s")
        return self.received.popleft()


@contextmanager
def _listening(instance: Oban, prefix: str) -> Iterator[Listener]:
    engine = cast("Basic", instance.engine)
    conn = psycopg.connect(**engine.connect_params(), autocommit=True)
    try:
        for name in ("signal", "insert"):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel_name(prefix, name))))
        yield Listener(conn, deque())
    finally:
        conn.close()


# -- what is sent -----------------------------------------------------------------------


@pytest.mark.postgres
def test_cancelling_executing_jobs_sends_pkill_on_commit_and_never_on_rollback(
    make_oban: Callable[..., Oban], pg_prefix: str
) -> None:
    oban = make_oban()  # not started: the test claims the jobs itself
    first, second, waiting = oban.enqueue_many([Note.new({"n": n}) for n in range(3)])
    assert sorted(job.id or 0 for job in _claim(oban, 2)) == [first.id, second.id]
    signal, insert = channel_name(pg_prefix, "signal"), channel_name(pg_prefix, "insert")

    with _listening(oban, pg_prefix) as listener:
        with Session(oban.bind) as session:
            assert oban.cancel_job(second.id or 0, conn=session) is True
            session.rollback()
        assert oban.cancel_job(waiting.id or 0) is True  # not executing: nothing to stop
        assert oban.cancel_job(first.id or 0) is True
        assert oban.cancel_many(ids=[second.id or 0]) == 1

        # Notices arrive in commit order: a leak of the rolled-back cancel, or a
        # pkill for the job that was not executing, would come first.
        assert listener.next() == (signal, {"action": "pkill", "job_id": first.id})
        assert listener.next() == (signal, {"action": "pkill", "job_id": second.id})

        # A retry wakes the queue's producers on every node.
        assert oban.retry_job(first.id or 0) is True
        assert listener.next() == (insert, {"queue": "default"})


# -- a running node hears it --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("kind", [AsyncWaits, SyncPolls], ids=["async", "def"])
async def test_a_cancel_on_another_node_stops_the_job_where_it_runs(
    make_oban: Callable[..., Oban], kind: type
) -> None:
    runner = make_oban(queues={"default": 2}, node=f"r-{uuid.uuid4().hex[:8]}", **SLOW)
    other = make_oban(name="other-node")  # never started: its cancel reaches no runtime directly
    async with runner:
        runtime = runtime_of(runner)
        notifier = notifier_of(runner)
        await wait_async(lambda: notifier.listening)
        job = await runner.enqueue_async(kind.new({}))  # type: ignore[attr-defined]
        await wait_async(lambda: STOPS.started(job.id))

        assert await other.cancel_job_async(job.id or 0) is True

        await wait_async(lambda: STOPS.how(job.id) is not None)
        assert STOPS.how(job.id) == ("cancelled" if kind is AsyncWaits else "noticed")
        assert runtime.cancel_checks == 0, "the database check did not run: NOTIFY did it"
    row = await runner.get_job_async(job.id or 0)
    assert row is not None
    assert row.state is JobState.CANCELLED
    assert row.errors == []
    assert STOPS.runs(job.id) == 1


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("form", ["json", "gzip"])
async def test_a_peers_cancel_and_pkill_stop_the_job(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine, pg_prefix: str, form: str
) -> None:
    """As Elixir Oban cancels: UPDATE the row, pg_notify the signal (peers may compress it)."""
    runner = make_oban(queues={"default": 1}, node=f"p-{uuid.uuid4().hex[:8]}", **SLOW)
    async with runner:
        notifier = notifier_of(runner)
        await wait_async(lambda: notifier.listening)
        job = await runner.enqueue_async(AsyncWaits.new({}))
        await wait_async(lambda: STOPS.started(job.id))

        payload = orjson.dumps({"action": "pkill", "job_id": job.id})
        text = (payload if form == "json" else base64.b64encode(gzip.compress(payload))).decode()
        with pg_bind.begin() as conn:
            conn.execute(
                sa.text(
                    f"UPDATE {table(pg_prefix)} SET state = 'cancelled', "
                    "cancelled_at = timezone('UTC', now()) WHERE id = :id"
                ),
                {"id": job.id},
            )
            conn.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel_name(pg_prefix, "signal"), "payload": text},
            )

        await wait_async(lambda: STOPS.how(job.id) is not None)
        assert STOPS.how(job.id) == "cancelled"
    row = await runner.get_job_async(job.id or 0)
    assert row is not None
    assert row.state is JobState.CANCELLED
    assert row.errors == []


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancel_in_the_callers_session_reaches_the_node_on_commit_only(
    make_oban: Callable[..., Oban], backend: str
) -> None:
    runner = make_oban(
        queues={"default": 2}, node=f"s-{uuid.uuid4().hex[:8]}", backend=backend, **SLOW
    )
    other = make_oban(name="other-node")
    with runner:
        notifier = notifier_of(runner)
        wait_for(lambda: notifier.listening, message="the runner listens")
        kept, marker = runner.enqueue_many([AsyncWaits.new({"n": 1}), AsyncWaits.new({"n": 2})])
        wait_for(lambda: STOPS.started(kept.id) and STOPS.started(marker.id), message="both run")

        with Session(other.bind) as session:
            assert other.cancel_job(kept.id or 0, conn=session) is True
            session.rollback()
        # Committed after the rollback: once this one stopped, a pkill from the
        # rolled-back cancel would have arrived before it.
        assert other.cancel_job(marker.id or 0) is True
        wait_for(lambda: STOPS.how(marker.id) is not None, message="the marker stopped")
        assert STOPS.how(kept.id) is None

        with Session(other.bind) as session:
            assert other.cancel_many(ids=[kept.id or 0], conn=session) == 1
            session.commit()
        wait_for(lambda: STOPS.how(kept.id) is not None, message="the job stopped")
        assert STOPS.how(kept.id) == "cancelled"


# -- AsyncSession (asyncio only) -----------------------------------------------------------


@pytest.fixture
async def async_bind(postgres_url: str) -> AsyncIterator[Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    bind = create_async_engine(postgres_url)
    yield bind
    await bind.dispose()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_management_in_an_async_session(
    make_oban: Callable[..., Oban], async_bind: Any, anyio_backend: str
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("SQLAlchemy's asyncio extension (AsyncSession) runs on asyncio only")
    from sqlalchemy.ext.asyncio import AsyncSession

    oban = make_oban()
    job = await oban.enqueue_async(Note.new({}))

    async def state() -> JobState | None:
        found = await oban.get_job_async(job.id or 0)
        return None if found is None else found.state

    async with AsyncSession(async_bind) as session:
        assert await oban.cancel_job_async(job.id or 0, conn=session) is True
        inside = await oban.list_jobs_async(ids=[job.id or 0], conn=session)
        assert [found.state for found in inside] == [JobState.CANCELLED]
        assert await state() is JobState.AVAILABLE
        await session.rollback()
    assert await state() is JobState.AVAILABLE

    async with AsyncSession(async_bind) as session:
        assert await oban.cancel_many_async(queue="default", conn=session) == 1
        await session.commit()
    assert await state() is JobState.CANCELLED

    async with async_bind.connect() as conn, conn.begin():
        assert await oban.retry_job_async(job.id or 0, conn=conn) is True
    assert await state() is JobState.AVAILABLE

    async with AsyncSession(async_bind) as session:
        assert await oban.delete_job_async(job.id or 0, conn=session) is True
        await session.commit()
    assert await state() is None
