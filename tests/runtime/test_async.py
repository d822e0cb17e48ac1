"""The runtime through the public API, inside the caller's event loop.

Each test runs under asyncio and under trio (the ``anyio_backend`` fixture).
Results are awaited by polling with a deadline, never by fixed sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

from oban import Job, JobState, Oban
from tests.runtime import workers
from tests.runtime.workers import Effects

pytestmark = pytest.mark.anyio

FINAL = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)


async def wait_job(
    oban: Oban,
    job_id: int | None,
    condition: Callable[[Job], bool],
    *,
    within: float = 20.0,
    message: str = "",
) -> Job:
    """Poll the job until ``condition`` holds; fail the test at the deadline."""
    assert job_id is not None
    deadline = anyio.current_time() + within
    job = None
    while True:
        job = await oban.get_job_async(job_id)
        if job is not None and condition(job):
            return job
        if anyio.current_time() > deadline:
            pytest.fail(
                f"job {job_id} not as expected within {within}s: {message} (last seen: {job!r})"
            )
        await anyio.sleep(0.02)


async def wait_state(
    oban: Oban, job_id: int | None, *states: JobState, within: float = 20.0
) -> Job:
    return await wait_job(
        oban, job_id, lambda job: job.state in states, within=within, message=f"state in {states}"
    )


async def wait_until(
    condition: Callable[[], object], *, within: float = 20.0, message: str = ""
) -> None:
    deadline = anyio.current_time() + within
    while not condition():
        if anyio.current_time() > deadline:
            pytest.fail(f"condition not met within {within}s: {message}")
        await anyio.sleep(0.02)


async def test_def_and_async_def_workers_complete(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 5}) as oban:
        jobs = [
            await oban.enqueue_async(workers.Complete.new({"n": 1})),
            await oban.enqueue_async(workers.AsyncComplete.new({"n": 2})),
            await oban.enqueue_async(workers.add.new(1, 2)),
            await oban.enqueue_async(workers.async_add.new(3, 4)),
        ]
        done = [await wait_state(oban, job.id, *FINAL) for job in jobs]

    for job in done:
        assert job.state is JobState.COMPLETED, job.errors
        assert job.attempt == 1
        assert job.completed_at is not None
        assert job.attempted_at is not None
        assert job.errors == []
    assert sorted(effects.runs) == sorted([("sync", jobs[0].id, 1), ("async", jobs[1].id, 1)])


async def test_an_exception_retries_until_discarded(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 2}) as oban:
        job = await oban.enqueue_async(workers.AlwaysFails.new({}))
        done = await wait_state(oban, job.id, *FINAL)

    assert done.state is JobState.DISCARDED
    assert done.attempt == 3
    assert done.discarded_at is not None
    assert [entry["attempt"] for entry in done.errors] == [1, 2, 3]
    for number, entry in enumerate(done.errors, start=1):
        assert f"RuntimeError: failure number {number}" in entry["error"]
    assert effects.runs_of(job.id) == [
        ("fail", job.id, 1),
        ("fail", job.id, 2),
        ("fail", job.id, 3),
    ]


async def test_snooze_cancel_and_record_end_states(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 5}) as oban:
        snoozed = await oban.enqueue_async(workers.SnoozeOnce.new({}))
        long_snooze = await oban.enqueue_async(workers.SnoozeLong.new({}))
        cancelled = await oban.enqueue_async(workers.Cancels.new({}))
        recorded = await oban.enqueue_async(workers.Records.new({"a": 2, "b": 3}))

        snoozed_done = await wait_state(oban, snoozed.id, *FINAL)
        long_done = await wait_job(oban, long_snooze.id, lambda job: job.meta.get("snoozed") == 1)
        cancelled_done = await wait_state(oban, cancelled.id, *FINAL)
        recorded_done = await wait_state(oban, recorded.id, *FINAL)

    # Snooze(0) once, then completed: the snooze did not use up an attempt.
    assert snoozed_done.state is JobState.COMPLETED
    assert snoozed_done.max_attempts == 6
    assert snoozed_done.meta["snoozed"] == 1
    assert snoozed_done.errors == []
    assert [attempt for _, _, attempt in effects.runs_of(snoozed.id)] == [1, 2]

    assert long_done.state is JobState.SCHEDULED
    assert long_done.max_attempts == long_snooze.max_attempts + 1
    assert long_done.attempted_at is not None
    assert long_done.scheduled_at is not None
    assert long_done.scheduled_at >= long_done.attempted_at + timedelta(seconds=3600)

    assert cancelled_done.state is JobState.CANCELLED
    assert cancelled_done.cancelled_at is not None
    assert [entry["error"] for entry in cancelled_done.errors] == ["no longer needed"]
    assert len(effects.runs_of(cancelled.id)) == 1

    assert recorded_done.state is JobState.COMPLETED
    assert recorded_done.meta["return"] == {"sum": 5, "echo": {"a": 2, "b": 3}}


async def test_a_scheduled_job_runs_when_due_and_not_before(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 2}) as oban:
        job = await oban.enqueue_async(workers.Complete.new({}, schedule_in=0.5))
        assert job.state is JobState.SCHEDULED
        right_after = await oban.get_job_async(job.id or 0)
        assert right_after is not None
        assert right_after.state is JobState.SCHEDULED
        assert not effects.started(job.id)

        done = await wait_state(oban, job.id, *FINAL)

    assert done.state is JobState.COMPLETED
    assert done.attempted_at is not None
    assert done.scheduled_at is not None
    assert done.attempted_at >= done.scheduled_at
    assert done.scheduled_at == job.scheduled_at
    assert len(effects.runs_of(job.id)) == 1


async def test_the_queue_limit_is_never_exceeded(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    limit, count = 3, 24
    async with make_oban(queues={"limited": limit, "limited_async": limit}) as oban:
        jobs = await oban.enqueue_many_async(
            [workers.Tracked.new({"n": n}) for n in range(count)]
            + [workers.AsyncTracked.new({"n": n}) for n in range(count)]
        )
        for job in jobs:
            await wait_state(oban, job.id, *FINAL)

    assert 1 <= effects.max_running["sync"] <= limit
    assert 1 <= effects.max_running["async"] <= limit
    assert len(effects.runs) == 2 * count
    assert len({job_id for _, job_id, _ in effects.runs}) == 2 * count


async def test_an_unknown_worker_is_retried_not_lost(make_oban: Callable[..., Oban]) -> None:
    async with make_oban(queues={"default": 2}) as oban:
        job = await oban.enqueue_async(Job("tests.nowhere.Missing", args={"keep": "me"}))
        failed = await wait_state(oban, job.id, JobState.RETRYABLE, *FINAL)

    assert failed.state is JobState.RETRYABLE
    assert failed.attempt == 1
    assert failed.args == {"keep": "me"}
    assert len(failed.errors) == 1
    assert "unknown worker" in failed.errors[0]["error"]
    assert failed.scheduled_at is not None
    assert failed.attempted_at is not None
    assert failed.scheduled_at > failed.attempted_at


async def test_enqueue_async_and_enqueue_many_async(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 10}) as oban:
        one = await oban.enqueue_async(workers.Complete.new({"n": -1}))
        many = await oban.enqueue_many_async(workers.Complete.new({"n": n}) for n in range(20))
        through_worker = await workers.AsyncComplete.enqueue_async({"n": 99})

        assert [job.args["n"] for job in many] == list(range(20))
        assert all(isinstance(job.id, int) for job in [one, *many, through_worker])
        for job in [one, *many, through_worker]:
            done = await wait_state(oban, job.id, *FINAL)
            assert done.state is JobState.COMPLETED

    assert len(effects.runs) == 22
    assert {job_id for _, job_id, _ in effects.runs} == {
        job.id for job in [one, *many, through_worker]
    }


async def test_jobs_enqueued_before_start_run_after_start(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    oban = make_oban(queues={"default": 5})
    jobs = await oban.enqueue_many_async([workers.Complete.new({"n": n}) for n in range(5)])
    jobs.append(oban.enqueue(workers.AsyncComplete.new({})))
    assert not effects.runs

    async with oban:
        for job in jobs:
            assert (await wait_state(oban, job.id, *FINAL)).state is JobState.COMPLETED

    assert sorted(job_id for _, job_id, _ in effects.runs) == sorted(job.id or 0 for job in jobs)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_stop_with_grace_lets_running_jobs_finish(
    make_oban: Callable[..., Oban], effects: Effects, kind: str
) -> None:
    worker = workers.Slow if kind == "async" else workers.SlowSync
    oban = make_oban(queues={"default": 2})
    await oban.start_async()
    try:
        job = await oban.enqueue_async(worker.new({"seconds": 0.3}))
        await wait_until(lambda: effects.started(job.id), message="the job started")
    finally:
        await oban.stop_async(grace=30)

    assert effects.finished == [job.id]
    done = await oban.get_job_async(job.id or 0)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert done.attempt == 1


async def test_a_job_running_past_grace_is_put_back_available(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    oban = make_oban(queues={"default": 2})
    # The deadline scope opens before start_async(): the runtime's task group
    # lives inside it, so stop_async() can exit that group.
    with anyio.fail_after(20):
        await oban.start_async()
        try:
            job = await oban.enqueue_async(workers.Forever.new({}))
            await wait_until(lambda: effects.started(job.id), message="the job started")
            running = await oban.get_job_async(job.id or 0)
            assert running is not None
            assert running.state is JobState.EXECUTING
            assert running.attempt == 1
        finally:
            await oban.stop_async(grace=0)

    assert effects.finished == []
    back = await oban.get_job_async(job.id or 0)
    assert back is not None
    assert back.state is JobState.AVAILABLE
    assert back.attempt == 0
    assert [entry["attempt"] for entry in back.errors] == [1]
    assert "interrupted" in back.errors[0]["error"]


async def test_a_worker_can_enqueue_another_job(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    async with make_oban(queues={"default": 4}) as oban:
        sync_parent = await oban.enqueue_async(workers.Parent.new({}))
        async_parent = await oban.enqueue_async(workers.AsyncParent.new({}))
        for parent in (sync_parent, async_parent):
            assert (await wait_state(oban, parent.id, *FINAL)).state is JobState.COMPLETED
        assert len(effects.children) == 2
        for child_id in list(effects.children):
            child = await wait_state(oban, child_id, *FINAL)
            assert child.state is JobState.COMPLETED
            assert child.args["parent"] in (sync_parent.id, async_parent.id)


async def test_stopping_at_once_with_grace_zero_never_hangs(
    make_oban: Callable[..., Oban], effects: Effects
) -> None:
    """Stop racing with fetches and job start-up: nothing outlives shutdown.

    Jobs claimed while the runtime stops, or started but not yet running when
    the grace period ends, are put back too; restarting fetches them again.
    """
    oban = make_oban(queues={"default": 20})
    jobs: list[Job] = []
    with anyio.fail_after(30):
        for _ in range(3):
            await oban.start_async()
            try:
                jobs += await oban.enqueue_many_async([workers.Forever.new({}) for _ in range(10)])
            finally:
                await oban.stop_async(grace=0)

    assert effects.finished == []
    for job in jobs:
        back = await oban.get_job_async(job.id or 0)
        assert back is not None
        assert back.state is JobState.AVAILABLE, back
        assert back.attempt == 0
