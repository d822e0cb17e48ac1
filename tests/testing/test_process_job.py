"""``process_job``: one attempt through the real execution path, no database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from oban import (
    EngineError,
    Job,
    JobState,
    JobValidationError,
    UnknownWorkerError,
)
from oban.testing import process_job, process_job_async
from tests.testing import workers
from tests.testing.workers import (
    AsyncOk,
    Canceller,
    Fails,
    Hangs,
    Ok,
    Recorder,
    Snoozer,
    add,
)


def test_a_completed_job_looks_like_its_row_after_one_attempt() -> None:
    ran = process_job(Ok, {"user_id": 1}, queue="mailers", priority=3, tags=["Email"])
    assert ran.state is JobState.COMPLETED
    assert (ran.attempt, ran.queue, ran.priority, ran.tags) == (1, "mailers", 3, ["email"])
    assert ran.args == {"user_id": 1}
    assert ran.attempted_at is not None
    assert ran.completed_at is not None
    assert ran.attempted_by == ["oban.testing"]
    assert ran.errors == []


def test_a_failure_is_retryable_after_the_workers_backoff_with_an_errors_entry() -> None:
    ran = process_job(Fails, {"n": 1})
    assert ran.state is JobState.RETRYABLE
    assert ran.attempted_at is not None
    assert ran.scheduled_at is not None
    assert ran.scheduled_at - ran.attempted_at >= timedelta(seconds=30)
    [entry] = ran.errors
    assert entry["attempt"] == 1
    assert "ValueError: boom 1" in entry["error"]


def test_a_failure_on_the_last_attempt_is_discarded() -> None:
    ran = process_job(Fails, max_attempts=1)
    assert ran.state is JobState.DISCARDED
    assert ran.discarded_at is not None


def test_snooze_cancel_and_record_end_as_a_queue_would_end_them() -> None:
    snoozed = process_job(Snoozer)
    assert snoozed.state is JobState.SCHEDULED
    assert snoozed.meta["snoozed"] == 1
    assert snoozed.max_attempts == 21
    cancelled = process_job(Canceller)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.errors[-1]["error"] == "not wanted"
    recorded = process_job(Recorder, {"a": [1, 2]})
    assert recorded.meta["return"] == {"echo": {"a": [1, 2]}}


def test_a_timeout_fails_the_attempt() -> None:
    ran = process_job(Hangs)
    assert ran.state is JobState.RETRYABLE
    assert "JobTimeoutError" in ran.errors[-1]["error"]


def test_an_async_worker_runs_from_sync_code() -> None:
    assert process_job(AsyncOk).meta["return"] == "async"


def test_a_job_function_takes_a_dict_of_its_parameters() -> None:
    ran = process_job(add, {"a": 1})
    assert ran.args == {"a": 1, "b": 2}
    assert ran.queue == "math"
    assert ran.meta["return"] == 3


def test_a_worker_name_and_a_built_job_work_too() -> None:
    assert process_job("tests.testing.workers.Ok").state is JobState.COMPLETED
    assert process_job(Ok.new({"x": 1})).args == {"x": 1}


def test_schedule_in_is_kept_but_the_job_runs_now() -> None:
    ran = process_job(Ok, schedule_in=3600)
    assert ran.state is JobState.COMPLETED
    assert ran.scheduled_at is not None
    assert ran.attempted_at is not None
    assert ran.scheduled_at > ran.attempted_at


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: process_job("tests.testing.workers.Nope"), UnknownWorkerError, "Nope"),
        (lambda: process_job("no_such_module.Worker"), UnknownWorkerError, "no_such_module"),
        (lambda: process_job(object()), UnknownWorkerError, "not a worker"),  # type: ignore[arg-type]  # the wrong type under test
        (lambda: process_job(Ok, priority=12), JobValidationError, "priority"),
        (lambda: process_job(Ok, colour="red"), JobValidationError, "colour"),
        (lambda: process_job(Ok, ["not", "a", "dict"]), JobValidationError, "args"),  # type: ignore[arg-type]  # the wrong type under test
        (lambda: process_job(add, {"b": 1}), JobValidationError, "'a'"),
        (lambda: process_job(add, {"a": 1, "c": 2}), JobValidationError, "'c'"),
        (lambda: process_job(add, [1]), JobValidationError, "dict of its parameters"),  # type: ignore[arg-type]  # the wrong type under test
        (lambda: process_job(Ok.new(), {"x": 1}), JobValidationError, "Job alone"),
    ],
    ids=[
        "unknown-name",
        "unknown-module",
        "not-a-worker",
        "bad-option",
        "unknown-option",
        "args-not-a-dict",
        "function-missing-parameter",
        "function-unknown-parameter",
        "function-args-not-a-dict",
        "job-with-args",
    ],
)
def test_bad_input_raises_a_clear_error(call: object, error: type[Exception], words: str) -> None:
    assert callable(call)
    with pytest.raises(error, match=words):
        call()


def test_nothing_is_stored_or_registered() -> None:
    before = list(workers.RUNS)
    ran = process_job(workers.Counter, {"n": "x"})
    assert ran.id is None
    assert [*before, "x"] == workers.RUNS
    workers.RUNS.clear()


@pytest.mark.anyio
async def test_the_async_twin_runs_async_and_sync_workers_on_the_loop() -> None:
    assert (await process_job_async(AsyncOk)).meta["return"] == "async"
    assert (await process_job_async(Ok)).state is JobState.COMPLETED
    assert (await process_job_async(Fails)).state is JobState.RETRYABLE
    assert (await process_job_async(add, {"a": 5, "b": 5})).meta["return"] == 10
    timed_out = await process_job_async(Hangs)
    assert "JobTimeoutError" in timed_out.errors[-1]["error"]


@pytest.mark.anyio
async def test_the_sync_helper_inside_an_event_loop_points_at_the_async_twin() -> None:
    with pytest.raises(EngineError, match="_async"):
        process_job(AsyncOk)


def test_a_job_built_by_hand_keeps_its_fields() -> None:
    ran = process_job(Job("tests.testing.workers.Ok", args={"k": "v"}, max_attempts=2))
    assert (ran.max_attempts, ran.args, ran.state) == (2, {"k": "v"}, JobState.COMPLETED)
