"""What a job's result, backoff and timeout write to its row, through the real runtime.

Every test runs on Lite (SQLite) and Basic (PostgreSQL, a fresh schema), under
asyncio and trio. Nothing sleeps for a result: tests poll the row with a
deadline, and workers that must overrun wait on events. Retries and snoozes
are scheduled far ahead, so a row holds still until the test looks at it, and
the test makes it due again (``make_due``) to drive the next attempt.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.to_thread
import pytest
import sqlalchemy as sa

from oban import Job, JobState, Oban
from oban.job import utc_now
from oban.schema import oban_jobs
from tests.conftest import SqlDatabase, wait_for
from tests.runtime import semantics_workers as w
from tests.runtime.conftest import FAST
from tests.runtime.semantics_checks import (
    FAILURE_TEXT,
    assert_backoff,
    assert_error_entry,
    assert_timed_out,
    check_attempt,
    default_window,
    parse_at,
)

pytestmark = pytest.mark.anyio

FINAL = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_workers() -> Iterator[None]:
    w.GATES.reset()
    w.RUNS.reset()
    yield
    w.GATES.reset()  # releases any worker thread a failed test left waiting
    w.RUNS.reset()


@pytest.fixture
def oban_options() -> dict[str, Any]:
    """Short intervals for every instance ``database.make_oban()`` builds here."""
    return dict(FAST)


async def wait_job(
    instance: Oban, job_id: int | None, condition: Callable[[Job], bool], what: str
) -> Job:
    """Poll the row until ``condition`` holds; fail the test at the deadline."""
    assert job_id is not None
    last: Job | None = None
    with anyio.move_on_after(20):
        while True:
            last = await instance.get_job_async(job_id)
            if last is not None and condition(last):
                return last
            await anyio.sleep(0.02)
    pytest.fail(f"job {job_id}: {what} not seen within 20s (last: {last!r})")


async def wait_state(instance: Oban, job_id: int | None, *states: JobState) -> Job:
    return await wait_job(instance, job_id, lambda job: job.state in states, f"state in {states}")


async def wait_event(condition: Callable[[], bool], what: str) -> None:
    with anyio.move_on_after(20):
        while not condition():  # noqa: ASYNC110 - set from worker threads
            await anyio.sleep(0.01)
        return
    pytest.fail(f"{what} not seen within 20s")


async def make_due(instance: Oban, job_id: int | None) -> datetime:
    """Move a scheduled or retryable job's ``scheduled_at`` to now; return it."""
    now = utc_now()
    engine: Any = instance.engine

    def update() -> None:
        with engine.transaction() as conn:
            statement = sa.update(oban_jobs).where(oban_jobs.c.id == job_id)
            engine.execute(conn, statement.values(scheduled_at=now))

    await anyio.to_thread.run_sync(update)
    return now


# -- every kind of result, attempt after attempt -----------------------------------------------


def recorded(attempt: int) -> Callable[[Job], bool]:
    """The row shows the end of ``attempt``."""
    return lambda job: job.attempt == attempt and job.state is not JobState.EXECUTING


PLANS: dict[str, tuple[list[str], int]] = {
    "mixed": (
        ["raise", "snooze", "bad_snooze", "record_too_big", "raise_runtime", "snooze", "record"],
        20,
    ),
    "snooze_then_none": (["snooze", "none"], 20),
    "raise_then_value": (["raise", "value"], 20),
    "raise_then_cancel": (["raise", "cancel"], 20),
    "out_of_attempts": (["snooze", "raise", "raise_runtime", "raise"], 3),
}


async def test_every_kind_of_result_writes_the_reference_row(
    database: SqlDatabase,
) -> None:
    async def drive(instance: Oban, worker: Any, plan: list[str], max_attempts: int) -> None:
        started = utc_now()
        before = await instance.enqueue_async(worker.new({"plan": plan}, max_attempts=max_attempts))
        for number, step in enumerate(plan, start=1):
            if number > 1:
                started = utc_now()
                before.scheduled_at = await make_due(instance, before.id)
            after = await wait_job(
                instance, before.id, recorded(number), f"attempt {number} ({step}) recorded"
            )
            check_attempt(before, after, step, started, utc_now())
            before = after
        assert before.state in FINAL
        assert w.RUNS.of(before.id) == list(range(1, len(plan) + 1))

    async with (
        database.make_oban(queues={"semantics": 10}) as instance,
        anyio.create_task_group() as tasks,
    ):
        for worker in (w.Scripted, w.AsyncScripted):
            for plan, max_attempts in PLANS.values():
                tasks.start_soon(drive, instance, worker, plan, max_attempts)


# -- backoff -----------------------------------------------------------------------------------


async def test_backoff_default_custom_fallback_and_clamped(
    database: SqlDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="oban")
    custom: dict[str, Any] = {
        "7": 7,
        "2.5": 2.5,  # rounded up to whole seconds
        "0": 0,
        "huge": "huge",  # 10**30 s: capped, never an overflow
        "raise": "raise",
        "negative": -1,
        "text": "soon",
        "bool": True,
        "null": None,
        "inf": "inf",
    }
    async with database.make_oban(queues={"semantics": 20}) as instance:
        default = await instance.enqueue_async(w.Fails.new({}))
        clamped_first = await instance.enqueue_async(w.Fails.new({}, max_attempts=1000))
        late = w.Fails.new({}, max_attempts=1000)
        late.attempt = 998  # its next attempt is 999 of 1000
        clamped_late = await instance.enqueue_async(late)
        jobs = {
            name: await instance.enqueue_async(w.CustomBackoff.new({"backoff": value}))
            for name, value in custom.items()
        }
        ran = {
            name: await wait_state(instance, job.id, JobState.RETRYABLE)
            for name, job in {
                "default": default,
                "clamped_first": clamped_first,
                "clamped_late": clamped_late,
                **jobs,
            }.items()
            if name != "0"
        }
        # Backoff 0: each retry is due at once, until the attempts run out.
        zero = await wait_state(instance, jobs["0"].id, *FINAL)

    def at(job: Job) -> datetime:
        return assert_error_entry(job.errors[-1], job.attempt, "RuntimeError", "Traceback")

    assert_backoff(ran["default"], at(ran["default"]), *default_window(1, 5))
    # max_attempts 1000: attempt 1 scales to 0 (16 s), attempt 999 to 20 (~12 days).
    assert_backoff(ran["clamped_first"], at(ran["clamped_first"]), 16, 16 * 1.1)
    assert ran["clamped_late"].attempt == 999
    assert_backoff(ran["clamped_late"], at(ran["clamped_late"]), *default_window(999, 1000))
    assert default_window(999, 1000)[0] == 15 + 2**20

    assert_backoff(ran["7"], at(ran["7"]), 7, 7)
    assert_backoff(ran["2.5"], at(ran["2.5"]), 3, 3)
    assert zero.state is JobState.DISCARDED
    assert [entry["attempt"] for entry in zero.errors] == [1, 2, 3, 4, 5]
    assert zero.scheduled_at == parse_at(zero.errors[3])  # the last retry: due at once
    assert_backoff(ran["huge"], at(ran["huge"]), 3650 * 86400, 3650 * 86400)
    fallbacks = ["raise", "negative", "text", "bool", "null", "inf"]
    for name in fallbacks:
        assert_backoff(ran[name], at(ran[name]), *default_window(ran[name].attempt, 5))

    messages = [record.getMessage() for record in caplog.records]
    worker = w.CustomBackoff.__oban_worker__.name
    assert sum(f"backoff() of {worker} failed; using the default" in m for m in messages) == 1
    for shown in ("-1", "'soon'", "True", "None", "inf"):
        assert any(f"backoff() of {worker} returned {shown}," in m for m in messages), shown


# -- timeouts ----------------------------------------------------------------------------------


async def quick_jobs_complete(instance: Oban) -> None:
    """The queue still runs jobs, ``def`` and ``async def``."""
    for worker in (w.QuickSync, w.QuickAsync):
        key = uuid.uuid4().hex
        job = await instance.enqueue_async(worker.new({"key": key}))
        done = await wait_state(instance, job.id, *FINAL)
        assert done.state is JobState.COMPLETED, done.errors


async def test_an_async_job_is_cancelled_at_its_timeout(database: SqlDatabase) -> None:
    async with database.make_oban(queues={"timeouts": 2}) as instance:
        by_option = await instance.enqueue_async(w.AsyncOverrun.new({"key": "option"}))
        by_method = await instance.enqueue_async(
            w.AsyncOverrunByMethod.new({"key": "method", "limit": 0.25})
        )
        swallowed = await instance.enqueue_async(w.SwallowsCancellation.new({"key": "swallow"}))
        within = await instance.enqueue_async(w.WithinTimeout.new({}))

        assert_timed_out(await wait_state(instance, by_option.id, JobState.RETRYABLE), w.TIMEOUT)
        assert w.GATES["option"].interrupted.is_set()  # cancelled, not left running
        assert_timed_out(await wait_state(instance, by_method.id, JobState.RETRYABLE), 0.25)
        # It caught the cancellation and returned a value: still a timeout.
        assert_timed_out(await wait_state(instance, swallowed.id, JobState.RETRYABLE), w.TIMEOUT)
        assert w.GATES["swallow"].interrupted.is_set()

        done = await wait_state(instance, within.id, *FINAL)
        assert done.state is JobState.COMPLETED
        assert done.meta == {"recorded": True, "return": {"ok": True}}
        await quick_jobs_complete(instance)


async def test_a_sync_job_fails_at_its_timeout_and_its_late_result_is_ignored(
    database: SqlDatabase,
) -> None:
    gate = w.GATES["sync"]
    async with database.make_oban(queues={"timeouts": 1}) as instance:
        job = await instance.enqueue_async(w.SyncOverrun.new({"key": "sync"}))
        failed = await wait_state(instance, job.id, *FINAL, JobState.RETRYABLE)
        assert_timed_out(failed, w.TIMEOUT, thread=True)
        # Inside the thread, job.cancelled() turned true: a cooperative loop stops.
        await wait_event(gate.saw_cancelled.is_set, "job.cancelled() inside the thread")
        assert not gate.returned.is_set()

        # The thread still runs and keeps the queue's only thread slot: an async
        # job runs meanwhile; a def job is claimed but starts only after it ends.
        await wait_state(
            instance,
            (await instance.enqueue_async(w.QuickAsync.new({"key": "async"}))).id,
            JobState.COMPLETED,
        )
        waiting = await instance.enqueue_async(w.QuickSync.new({"key": "after"}))
        await wait_state(instance, waiting.id, JobState.EXECUTING)
        assert not w.GATES["after"].started.is_set()

        gate.release.set()
        await wait_event(gate.returned.is_set, "the late return")
        done = await wait_state(instance, waiting.id, *FINAL)
        assert done.state is JobState.COMPLETED
        assert w.GATES.events == ["sync returned", "after started"]

        # The late "late result" changed nothing: the row is as recorded at the deadline.
        after = await instance.get_job_async(job.id or 0)
        assert after is not None
        assert (after.state, after.attempt, after.errors, after.meta, after.scheduled_at) == (
            failed.state,
            failed.attempt,
            failed.errors,
            failed.meta,
            failed.scheduled_at,
        )
        assert after.completed_at is None


async def test_stopping_does_not_wait_for_a_timed_out_thread(
    database: SqlDatabase,
) -> None:
    """The timed-out ``def`` job's thread is abandoned: ``stop`` returns while it still
    runs, and when it ends later nothing breaks and its result is still ignored."""
    gate = w.GATES["stop"]
    instance = database.make_oban(queues={"timeouts": 1})
    with anyio.fail_after(20):
        await instance.start_async()
        try:
            job = await instance.enqueue_async(w.SyncOverrun.new({"key": "stop"}))
            failed = await wait_state(instance, job.id, *FINAL, JobState.RETRYABLE)
            await wait_event(gate.saw_cancelled.is_set, "job.cancelled() inside the thread")
        finally:
            await instance.stop_async(grace=30)
    assert not gate.returned.is_set()  # stopped while the thread still ran

    gate.release.set()
    await wait_event(gate.returned.is_set, "the late return")
    assert_timed_out(failed, w.TIMEOUT, thread=True)
    after = await instance.get_job_async(job.id or 0)
    assert after is not None
    assert (after.state, after.errors, after.completed_at) == (failed.state, failed.errors, None)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_timed_out_thread_outliving_a_background_runtime(
    database: SqlDatabase, backend: str
) -> None:
    """``start()``/``stop()`` in a background thread: the abandoned thread ends after
    the runtime's event loop is gone, quietly, and changes nothing."""
    gate = w.GATES["gone"]
    errors: list[BaseException | None] = []
    previous_hook = threading.excepthook

    def hook(hook_args: Any) -> None:
        errors.append(hook_args.exc_value)

    threading.excepthook = hook
    try:
        instance = database.make_oban(queues={"timeouts": 1}, backend=backend)
        with instance:
            job = instance.enqueue(w.SyncOverrun.new({"key": "gone"}))

            def retryable() -> Job | None:
                row = instance.get_job(job.id or 0)
                return row if row is not None and row.state is JobState.RETRYABLE else None

            failed = wait_for(retryable, message="the timeout recorded")
            assert gate.saw_cancelled.wait(20), "job.cancelled() in the thread"
        gate.release.set()
        wait_for(gate.returned.is_set, message="the late return")
    finally:
        threading.excepthook = previous_hook
    assert isinstance(failed, Job)
    assert_timed_out(failed, w.TIMEOUT, thread=True)
    after = instance.get_job(job.id or 0)
    assert after is not None
    assert (after.state, after.errors, after.completed_at) == (failed.state, failed.errors, None)
    assert errors == []


async def test_a_bad_timeout_or_a_wrong_return_fails_the_job_and_the_queue_runs_on(
    database: SqlDatabase,
) -> None:
    limits: list[object] = ["soon", -1, 0, True, [1]]
    async with database.make_oban(queues={"timeouts": 1, "semantics": 1}) as instance:
        for number, limit in enumerate(limits):
            key = f"bad-{number}"
            job = await instance.enqueue_async(
                w.AsyncOverrunByMethod.new({"key": key, "limit": limit})
            )
            failed = await wait_state(instance, job.id, JobState.RETRYABLE, *FINAL)
            assert failed.state is JobState.RETRYABLE
            assert_error_entry(
                failed.errors[0],
                1,
                "ValueError",
                f"timeout() of {failed.worker} must return a finite number of seconds > 0",
                repr(limit),
            )
            assert not w.GATES[key].started.is_set()  # process never ran
            assert_backoff(failed, parse_at(failed.errors[0]), 3600, 3600)
        await quick_jobs_complete(instance)

        # Snooze(-5), built past its own check: a job error, not a crash of the queue.
        for worker in (w.Scripted, w.AsyncScripted):
            job = await instance.enqueue_async(worker.new({"plan": ["bad_snooze"]}))
            failed = await wait_state(instance, job.id, JobState.RETRYABLE, *FINAL)
            assert failed.state is JobState.RETRYABLE
            assert failed.max_attempts == job.max_attempts  # not counted as a snooze
            assert "snoozed" not in failed.meta
            assert_error_entry(failed.errors[0], 1, *FAILURE_TEXT["bad_snooze"])
            next_one = await instance.enqueue_async(worker.new({"plan": ["none"]}))
            assert (await wait_state(instance, next_one.id, *FINAL)).state is JobState.COMPLETED


def test_errors_at_is_iso_8601_utc() -> None:
    """The format, checked once against a fixed time (the runtime tests parse real ones)."""
    from oban.outcomes import error_entry

    entry = error_entry(2, datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "why")
    assert entry == {"attempt": 2, "at": "2030-01-02T03:04:05.000006Z", "error": "why"}
