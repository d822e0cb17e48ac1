"""Cancelling executing jobs reaches the runtime running them (SQLite file).

Under asyncio and trio: an ``async def`` job is cancelled at once; a ``def``
job sees ``job.cancelled()`` and stops at its next safe point; either way the
row stays ``cancelled`` (never written back as available or completed) and
the job never runs again. A cancel made in this process is delivered
directly; one made by another process is found by the runtime's periodic
check of its running jobs. Waits poll with deadlines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest
from sqlalchemy.orm import Session

from oban import Job, JobState, Oban
from tests.conftest import wait_for
from tests.introspection import runtime_of
from tests.runtime.cancel_workers import STOPS, AsyncWaits, Quick, SyncPolls, SyncStubborn

REPO = Path(__file__).resolve().parents[2]

NO_CHECK = {"cancel_check_interval": 60.0}
"""The periodic check never runs within a test: only direct delivery explains a stop."""
QUICK_CHECK = {"cancel_check_interval": 0.05}


@pytest.fixture(autouse=True)
def _stops() -> Iterator[None]:
    STOPS.reset()
    yield
    STOPS.release.set()  # a stubborn worker left behind ends now
    STOPS.reset()


async def wait_until(condition: Callable[[], object], *, within: float = 20.0, what: str) -> None:
    with anyio.move_on_after(within):
        while not condition():  # noqa: ASYNC110 - polling state another thread changes
            await anyio.sleep(0.01)
        return
    pytest.fail(f"not within {within}s: {what}")


async def stored(oban: Oban, job_id: int | None) -> Job:
    job = await oban.get_job_async(job_id or 0)
    assert job is not None
    return job


async def running(oban: Oban, job: Job) -> None:
    await wait_until(lambda: STOPS.started(job.id), what=f"job {job.id} started")
    assert (await stored(oban, job.id)).state is JobState.EXECUTING


async def assert_cancelled_for_good(oban: Oban, job: Job) -> None:
    """The row says cancelled, nothing was appended, and the job never ran again."""
    row = await stored(oban, job.id)
    assert row.state is JobState.CANCELLED
    assert row.cancelled_at is not None
    assert row.completed_at is None
    assert row.attempt == 1
    assert row.errors == [], "no interrupted/cancelled entry was written over the cancel"
    assert STOPS.runs(job.id) == 1


async def queue_still_runs(oban: Oban) -> None:
    """A later job runs to completion: the cancelled job's slot was given back."""
    later = await oban.enqueue_async(Quick.new({}))
    await wait_until(lambda: STOPS.how(later.id) == "done", what="a later job ran")


# -- in this process: delivered directly ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["cancel_job", "cancel_many"])
async def test_an_executing_async_job_is_cancelled_at_once(
    make_oban: Callable[..., Oban], how: str
) -> None:
    oban = make_oban(queues={"default": 1}, **NO_CHECK)
    async with oban:
        job = await oban.enqueue_async(AsyncWaits.new({}))
        await running(oban, job)

        if how == "cancel_job":
            assert await oban.cancel_job_async(job.id or 0) is True
        else:
            assert await oban.cancel_many_async(worker=AsyncWaits, state="executing") == 1

        await wait_until(lambda: STOPS.how(job.id) is not None, what="the job stopped")
        assert STOPS.how(job.id) == "cancelled", "job.cancelled() was true as it stopped"
        await queue_still_runs(oban)  # limit 1: the slot came back
        assert await oban.cancel_job_async(job.id or 0) is False, "already cancelled"
    await assert_cancelled_for_good(oban, job)


@pytest.mark.anyio
async def test_an_executing_def_job_sees_cancelled_and_its_result_is_ignored(
    make_oban: Callable[..., Oban],
) -> None:
    oban = make_oban(queues={"default": 1}, **NO_CHECK)
    async with oban:
        job = await oban.enqueue_async(SyncPolls.new({}))
        await running(oban, job)

        assert await oban.cancel_job_async(job.id or 0) is True

        await wait_until(lambda: STOPS.how(job.id) is not None, what="the job stopped")
        assert STOPS.how(job.id) == "noticed"
        # It returned None (completed) after the cancel: that must not win.
        await queue_still_runs(oban)
    await assert_cancelled_for_good(oban, job)


@pytest.mark.anyio
async def test_cancel_many_stops_every_executing_job_it_matches(
    make_oban: Callable[..., Oban],
) -> None:
    oban = make_oban(queues={"default": 6}, **NO_CHECK)
    async with oban:
        jobs = await oban.enqueue_many_async(
            [AsyncWaits.new({"n": n}) for n in range(3)]
            + [SyncPolls.new({"n": n}) for n in range(3)]
        )
        for job in jobs:
            await running(oban, job)

        assert await oban.cancel_many_async(queue="default") == 6

        for job in jobs:
            await wait_until(partial(STOPS.how, job.id), what=f"job {job.id} stopped")
        assert (
            sorted(STOPS.how(job.id) or "" for job in jobs) == ["cancelled"] * 3 + ["noticed"] * 3
        )
    for job in jobs:
        await assert_cancelled_for_good(oban, job)


@pytest.mark.anyio
async def test_a_cancelled_def_job_still_running_at_shutdown_stays_cancelled(
    make_oban: Callable[..., Oban],
) -> None:
    """Shutdown cancels what still runs and puts it back as available, except a
    job that was cancelled: its row is already final."""
    oban = make_oban(queues={"default": 2}, **NO_CHECK)
    with anyio.fail_after(30):
        await oban.start_async()
        try:
            stubborn = await oban.enqueue_async(SyncStubborn.new({}))
            other = await oban.enqueue_async(AsyncWaits.new({}))
            await running(oban, stubborn)
            await running(oban, other)
            assert await oban.cancel_job_async(stubborn.id or 0) is True
        finally:
            await oban.stop_async(grace=0)
    await assert_cancelled_for_good(oban, stubborn)
    # The job nobody cancelled was interrupted by shutdown and put back.
    back = await stored(oban, other.id)
    assert back.state is JobState.AVAILABLE
    assert back.attempt == 0
    assert STOPS.how(other.id) == "interrupted"


@pytest.mark.anyio
async def test_a_stop_signal_alone_ends_the_attempt_as_cancelled(
    make_oban: Callable[..., Oban],
) -> None:
    """A ``pkill`` for a job whose row was not cancelled (a peer may send one):
    the attempt is recorded as cancelled, never put back as available to run again."""
    oban = make_oban(queues={"default": 1}, **NO_CHECK)
    async with oban:
        job = await oban.enqueue_async(AsyncWaits.new({}))
        await running(oban, job)
        runtime = runtime_of(oban)
        runtime.notify_cancel([job.id or 0])
        await wait_until(lambda: STOPS.how(job.id) is not None, what="the job stopped")
        assert STOPS.how(job.id) == "cancelled"
        await queue_still_runs(oban)
    row = await stored(oban, job.id)
    assert row.state is JobState.CANCELLED
    assert [entry["error"] for entry in row.errors] == ["cancelled while executing"]
    assert STOPS.runs(job.id) == 1


# -- from elsewhere: found by the runtime's check -----------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("source", ["another process", "another instance"])
@pytest.mark.parametrize("kind", [AsyncWaits, SyncPolls], ids=["async", "def"])
async def test_a_cancel_from_elsewhere_is_found_by_the_check(
    make_oban: Callable[..., Oban], sqlite_url: str, source: str, kind: type
) -> None:
    oban = make_oban(queues={"default": 2}, node="runner", **QUICK_CHECK)
    async with oban:
        job = await oban.enqueue_async(kind.new({}))  # type: ignore[attr-defined]
        await running(oban, job)

        if source == "another process":
            script = (
                "import sys; from oban import Oban; "
                "print(Oban(sys.argv[1]).cancel_job(int(sys.argv[2])))"
            )
            result = await anyio.run_process(
                [sys.executable, "-c", script, sqlite_url, str(job.id)], cwd=REPO
            )
            assert result.stdout.decode().strip() == "True"
        else:
            other = make_oban(name="other")  # never started: its cancel reaches no runtime
            assert await other.cancel_job_async(job.id or 0) is True

        await wait_until(lambda: STOPS.how(job.id) is not None, what="the job stopped")
        assert STOPS.how(job.id) == ("cancelled" if kind is AsyncWaits else "noticed")
        await queue_still_runs(oban)
    await assert_cancelled_for_good(oban, job)


# -- in the caller's transaction ------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancel_in_the_callers_session_acts_on_commit_only(
    make_oban: Callable[..., Oban], sqlite_url: str, backend: str
) -> None:
    """Rolled back, the job keeps running; committed, it stops (the runtime
    asks the database rather than trusting an uncommitted cancel)."""
    oban = make_oban(queues={"default": 2}, backend=backend, **NO_CHECK)
    assert oban.bind is not None
    with oban:
        job = oban.enqueue(AsyncWaits.new({}))
        wait_for(lambda: STOPS.started(job.id), message="the job started")

        runtime = runtime_of(oban)
        checks = runtime.cancel_checks
        with Session(oban.bind) as session:
            assert oban.cancel_job(job.id or 0, conn=session) is True
            session.rollback()
        # The check the cancel asked for has run, and found the job still executing.
        wait_for(lambda: runtime.cancel_checks > checks, message="the runtime checked")
        found = oban.get_job(job.id or 0)
        assert found is not None
        assert found.state is JobState.EXECUTING
        assert STOPS.how(job.id) is None

        with Session(oban.bind) as session:
            assert oban.cancel_many(ids=[job.id or 0], conn=session) == 1
            session.commit()
        wait_for(lambda: STOPS.how(job.id) is not None, message="the job stopped")
        assert STOPS.how(job.id) == "cancelled"
    found = oban.get_job(job.id or 0)
    assert found is not None
    assert found.state is JobState.CANCELLED
    assert found.errors == []
