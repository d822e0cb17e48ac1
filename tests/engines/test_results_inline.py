"""Inline (``Oban(testing="inline")``): ``enqueue`` runs the job and returns it as it ended.

Every kind of result, from ``def`` and ``async def`` workers, through sync
``enqueue`` and through ``enqueue_async`` under asyncio and trio; the returned
job obeys the same rules as a stored row (``tests.runtime.semantics_checks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from oban import Job, JobState, Oban
from oban.job import utc_now
from tests.runtime import semantics_workers as w
from tests.runtime.semantics_checks import assert_timed_out, check_attempt

STEPS = [
    "none",
    "value",
    "record",
    "record_too_big",
    "snooze",
    "bad_snooze",
    "raise",
    "raise_runtime",
    "cancel",
]
WORKERS = [w.Scripted, w.AsyncScripted]
EXPECTED_STATE = {
    "none": JobState.COMPLETED,
    "value": JobState.COMPLETED,
    "record": JobState.COMPLETED,
    "record_too_big": JobState.RETRYABLE,
    "snooze": JobState.SCHEDULED,
    "bad_snooze": JobState.RETRYABLE,
    "raise": JobState.RETRYABLE,
    "raise_runtime": JobState.RETRYABLE,
    "cancel": JobState.CANCELLED,
}
FAILURES = [step for step, state in EXPECTED_STATE.items() if state is JobState.RETRYABLE]


@pytest.fixture(autouse=True)
def _clean_workers() -> Iterator[None]:
    w.GATES.reset()
    w.RUNS.reset()
    yield
    w.GATES.reset()
    w.RUNS.reset()


@pytest.fixture
def inline() -> Oban:
    return Oban(testing="inline")


def unsaved(worker: type, plan: list[str], started: datetime, max_attempts: int = 20) -> Job:
    job: Job = worker.new(  # type: ignore[attr-defined]
        {"plan": plan}, max_attempts=max_attempts, scheduled_at=started
    )
    return job


def check_ran_once(before: Job, after: Job, step: str, started: datetime) -> None:
    check_attempt(before, after, step, started, utc_now())
    assert after.state is EXPECTED_STATE[step] or (
        step in FAILURES and after.max_attempts == 1 and after.state is JobState.DISCARDED
    )
    assert w.RUNS.of(after.id) == [1]


@pytest.mark.parametrize("worker", WORKERS, ids=["def", "async_def"])
@pytest.mark.parametrize("step", STEPS)
def test_enqueue_returns_the_job_as_it_ended(inline: Oban, worker: type, step: str) -> None:
    started = utc_now()
    before = unsaved(worker, [step], started)
    after = inline.enqueue(before)
    check_ran_once(before, after, step, started)


@pytest.mark.parametrize("worker", WORKERS, ids=["def", "async_def"])
@pytest.mark.parametrize("step", FAILURES)
def test_a_failure_on_the_last_attempt_is_discarded(inline: Oban, worker: type, step: str) -> None:
    started = utc_now()
    before = unsaved(worker, [step], started, max_attempts=1)
    after = inline.enqueue(before)
    assert after.state is JobState.DISCARDED
    assert after.discarded_at is not None
    check_ran_once(before, after, step, started)


@pytest.mark.anyio
async def test_enqueue_async_returns_the_job_as_it_ended(inline: Oban) -> None:
    for worker in WORKERS:
        for step in STEPS:
            w.RUNS.reset()
            started = utc_now()
            before = unsaved(worker, [step], started)
            after = await inline.enqueue_async(before)
            check_ran_once(before, after, step, started)
        last = unsaved(worker, ["raise"], utc_now(), max_attempts=1)
        assert (await inline.enqueue_async(last)).state is JobState.DISCARDED


@pytest.mark.anyio
async def test_an_async_worker_raising_runtime_error_runs_once(inline: Oban) -> None:
    """A RuntimeError from the job is the job's error, never mistaken for "no event
    loop here", which would run the job a second time."""
    job = await inline.enqueue_async(w.AsyncScripted.new({"plan": ["raise_runtime"]}))
    assert job.state is JobState.RETRYABLE
    assert w.RUNS.of(job.id) == [1]


def test_enqueue_many_runs_each_job(inline: Oban) -> None:
    started = utc_now()
    jobs = inline.enqueue_many([unsaved(w.Scripted, [step], started) for step in STEPS])
    assert [job.state for job in jobs] == [EXPECTED_STATE[step] for step in STEPS]
    assert len({job.id for job in jobs}) == len(STEPS)


# -- timeouts --------------------------------------------------------------------------------------


def test_an_async_job_past_its_timeout(inline: Oban) -> None:
    job = inline.enqueue(w.AsyncOverrun.new({"key": "inline"}))
    assert_timed_out(job, w.TIMEOUT, clock_at_enqueue=True)
    assert w.GATES["inline"].interrupted.is_set()


@pytest.mark.anyio
async def test_an_async_job_past_its_timeout_from_async_code(inline: Oban) -> None:
    job = await inline.enqueue_async(w.AsyncOverrun.new({"key": "inline"}))
    assert_timed_out(job, w.TIMEOUT, clock_at_enqueue=True)
    assert w.GATES["inline"].interrupted.is_set()
    swallowed = await inline.enqueue_async(w.SwallowsCancellation.new({"key": "swallow"}))
    assert_timed_out(swallowed, w.TIMEOUT, clock_at_enqueue=True)


def test_a_sync_job_past_its_timeout_sees_cancelled_and_its_result_is_ignored(
    inline: Oban,
) -> None:
    gate = w.GATES["inline-sync"]
    gate.release.set()  # the caller's thread runs the job: let it return once it stopped
    job = inline.enqueue(w.SyncOverrun.new({"key": "inline-sync"}))
    assert gate.saw_cancelled.is_set()
    assert gate.returned.is_set()
    assert_timed_out(job, w.TIMEOUT, thread=True, clock_at_enqueue=True)


@pytest.mark.anyio
async def test_a_sync_job_past_its_timeout_from_async_code(inline: Oban) -> None:
    w.GATES["inline-sync"].release.set()
    job = await inline.enqueue_async(w.SyncOverrun.new({"key": "inline-sync"}))
    assert w.GATES["inline-sync"].saw_cancelled.is_set()
    assert_timed_out(job, w.TIMEOUT, thread=True, clock_at_enqueue=True)


def test_within_its_timeout_a_job_completes(inline: Oban) -> None:
    job = inline.enqueue(w.WithinTimeout.new({}))
    assert job.state is JobState.COMPLETED
    assert job.meta == {"recorded": True, "return": {"ok": True}}


@pytest.mark.parametrize("limit", ["soon", -1, 0, True], ids=repr)
def test_a_bad_timeout_is_a_job_error(inline: Oban, limit: object) -> None:
    job = inline.enqueue(w.AsyncOverrunByMethod.new({"key": "bad", "limit": limit}))
    assert job.state is JobState.RETRYABLE
    assert "must return a finite number of seconds > 0" in job.errors[0]["error"]
    assert not w.GATES["bad"].started.is_set()
