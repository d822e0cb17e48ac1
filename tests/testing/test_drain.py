"""``drain_queue``: a queue's jobs run in the caller, through the engine, on Lite and Basic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

import oban
from oban import EngineError, JobState, JobValidationError
from oban.testing import RESULT_KEYS, drain_queue, drain_queue_async
from tests.conftest import SqlDatabase, wait_for
from tests.testing import workers
from tests.testing.workers import (
    AsyncOk,
    Canceller,
    Counter,
    Enqueuer,
    Fails,
    Hangs,
    Ok,
    Recorder,
    Snoozer,
)

NONE = dict.fromkeys(RESULT_KEYS, 0)


@pytest.fixture
def runs() -> Iterator[list[object]]:
    workers.RUNS.clear()
    yield workers.RUNS
    workers.RUNS.clear()


def states(instance: oban.Oban, queue: str = "default") -> list[str]:
    return sorted(job.state.value for job in instance.list_jobs(queue=queue, limit=1000))


def test_every_outcome_is_counted_and_every_key_is_present(database: SqlDatabase) -> None:
    instance = database.make_oban()
    for worker in (Ok, Recorder, Fails, Snoozer, Canceller):
        worker.enqueue({})
    Fails.enqueue({}, max_attempts=1)
    assert drain_queue(queue="default") == {
        **NONE,
        "completed": 2,
        "retryable": 1,
        "discarded": 1,
        "cancelled": 1,
        "snoozed": 1,
    }
    assert states(instance) == [
        "cancelled", "completed", "completed", "discarded", "retryable", "scheduled",
    ]  # fmt: skip
    assert drain_queue(instance, queue="default") == NONE  # nothing available is left


def test_the_rows_are_written_as_a_queue_writes_them(database: SqlDatabase) -> None:
    instance = database.make_oban(node="test-node")
    job = Fails.enqueue({"n": 1})
    drain_queue(queue="default")
    row = instance.get_job(job.id or 0)
    assert row is not None
    assert (row.state, row.attempt) == (JobState.RETRYABLE, 1)
    assert row.attempted_by == ["test-node", "oban.testing"]
    assert "ValueError: boom 1" in row.errors[-1]["error"]
    assert row.scheduled_at is not None
    assert row.attempted_at is not None
    assert row.scheduled_at - row.attempted_at >= timedelta(seconds=30)


def test_only_the_named_queue_runs(database: SqlDatabase) -> None:
    instance = database.make_oban()
    Ok.enqueue({}, queue="a")
    Ok.enqueue({}, queue="b")
    assert drain_queue(queue="a")["completed"] == 1
    assert states(instance, "b") == ["available"]


def test_scheduled_jobs_wait_unless_with_scheduled(database: SqlDatabase) -> None:
    instance = database.make_oban()
    Ok.enqueue({}, schedule_in=3600)
    Ok.enqueue({}, queue="other", schedule_in=3600)
    assert drain_queue(queue="default") == NONE
    assert drain_queue(queue="default", with_scheduled=True) == {
        **NONE,
        "completed": 1,
        "scheduled": 1,
    }
    assert states(instance, "other") == ["scheduled"]  # other queues are left alone


def test_with_scheduled_also_runs_retryable_jobs(database: SqlDatabase) -> None:
    instance = database.make_oban()
    Fails.enqueue({})
    assert drain_queue(queue="default")["retryable"] == 1
    assert drain_queue(queue="default", with_scheduled=True) == {
        **NONE,
        "retryable": 1,
        "scheduled": 1,
    }
    [job] = instance.list_jobs(queue="default")
    assert job.attempt == 2


def test_with_scheduled_as_a_datetime_runs_only_jobs_due_by_then(database: SqlDatabase) -> None:
    database.make_oban()
    now = datetime.now(timezone.utc)
    soon = Ok.enqueue({"when": "soon"}, scheduled_at=now + timedelta(minutes=5))
    Ok.enqueue({"when": "later"}, scheduled_at=now + timedelta(days=2))
    result = drain_queue(queue="default", with_scheduled=now + timedelta(hours=1))
    assert result == {**NONE, "completed": 1, "scheduled": 1}
    assert oban.testing.all_enqueued(args={"when": "later"})
    assert oban.testing.all_enqueued(args={"when": "soon"}) == []
    assert soon.id is not None


def test_with_recursion_runs_jobs_enqueued_by_jobs(database: SqlDatabase) -> None:
    instance = database.make_oban()
    Enqueuer.enqueue({})
    assert drain_queue(queue="default") == {**NONE, "completed": 1}
    assert states(instance) == ["available", "completed"]
    Enqueuer.enqueue({})
    assert drain_queue(queue="default", with_recursion=True) == {**NONE, "completed": 3}
    assert states(instance) == ["completed"] * 4


def test_with_recursion_and_scheduled_a_failing_job_uses_every_attempt(
    database: SqlDatabase,
) -> None:
    instance = database.make_oban()
    job = Fails.enqueue({})
    result = drain_queue(queue="default", with_scheduled=True, with_recursion=True)
    assert result == {**NONE, "retryable": 2, "discarded": 1, "scheduled": 2}
    row = instance.get_job(job.id or 0)
    assert row is not None
    assert (row.state, row.attempt, len(row.errors)) == (JobState.DISCARDED, 3, 3)


def test_with_limit_runs_at_most_that_many_jobs(database: SqlDatabase) -> None:
    instance = database.make_oban()
    instance.enqueue_many([Ok.new({"n": n}) for n in range(3)])
    assert drain_queue(queue="default", with_limit=2) == {**NONE, "completed": 2}
    assert states(instance) == ["available", "completed", "completed"]
    for _ in range(3):
        Enqueuer.enqueue({})
    # 1 Ok left + 3 Enqueuers + the 3 jobs they add: the limit stops the recursion at 5.
    assert drain_queue(queue="default", with_recursion=True, with_limit=5)["completed"] == 5
    assert states(instance).count("available") == 2


def test_with_safety_false_records_the_failure_then_raises_it(database: SqlDatabase) -> None:
    instance = database.make_oban()
    failing = Fails.enqueue({"n": 1}, priority=0)
    waiting = Ok.enqueue({}, priority=1)
    with pytest.raises(ValueError, match="boom 1"):
        drain_queue(queue="default", with_safety=False)
    failed = instance.get_job(failing.id or 0)
    assert failed is not None
    assert failed.state is JobState.RETRYABLE
    assert "boom 1" in failed.errors[-1]["error"]
    left = instance.get_job(waiting.id or 0)  # claimed with the first, never run: put back
    assert left is not None
    assert (left.state, left.attempt, left.errors) == (JobState.AVAILABLE, 0, [])
    assert drain_queue(queue="default", with_safety=False) == {**NONE, "completed": 1}


def test_with_safety_false_raises_a_timeout_and_an_unknown_worker(database: SqlDatabase) -> None:
    instance = database.make_oban()
    Hangs.enqueue({})
    with pytest.raises(oban.JobTimeoutError, match="timed out"):
        drain_queue(queue="default", with_safety=False)
    instance.enqueue(oban.Job("tests.testing.workers.Missing"))
    with pytest.raises(oban.UnknownWorkerError, match="Missing"):
        drain_queue(queue="default", with_safety=False)
    assert states(instance) == ["retryable", "retryable"]


def test_with_safety_true_a_failure_is_only_counted(database: SqlDatabase) -> None:
    database.make_oban()
    Fails.enqueue({})
    assert drain_queue(queue="default")["retryable"] == 1


def test_an_async_worker_from_sync_code_inside_an_event_loop_is_refused_and_put_back(
    database: SqlDatabase,
) -> None:
    instance = database.make_oban()
    AsyncOk.enqueue({})

    async def inside_a_loop() -> None:
        with pytest.raises(EngineError, match="_async"):
            drain_queue(instance, queue="default")

    import anyio

    anyio.run(inside_a_loop)
    [job] = instance.list_jobs()
    assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)


def test_a_drain_next_to_a_running_node_runs_each_job_once(
    database: SqlDatabase, runs: list[object]
) -> None:
    count = 60
    instance = database.make_oban(queues={"race": 3}, poll_interval=0.05)
    instance.enqueue_many([Counter.new({"n": n}) for n in range(count)])
    drained: dict[str, int] = {}
    with instance:
        thread = threading.Thread(target=lambda: drained.update(drain_queue(queue="race")))
        thread.start()
        thread.join()
        wait_for(
            lambda: states(instance, "race") == ["completed"] * count,
            message="every job completed",
        )
    assert sorted(runs) == list(range(count))  # type: ignore[type-var]  # ints, written by Counter
    assert 0 <= drained["completed"] <= count


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"queue": ""}, "queue"),
        ({"queue": "q", "with_limit": 0}, "with_limit"),
        ({"queue": "q", "with_limit": True}, "with_limit"),
        ({"queue": "q", "with_scheduled": "yes"}, "with_scheduled"),
    ],
    ids=["blank-queue", "zero-limit", "bool-limit", "bad-with-scheduled"],
)
def test_bad_options_raise(options: dict[str, object], words: str) -> None:
    with pytest.raises(JobValidationError, match=words):
        drain_queue(oban.Oban(testing="inline"), **options)  # type: ignore[arg-type]  # under test


def test_an_inline_instance_has_no_queue_to_drain() -> None:
    with pytest.raises(EngineError, match="manual"):
        drain_queue(oban.Oban(testing="inline"), queue="default")


@pytest.mark.anyio
async def test_the_async_twin_runs_def_and_async_def_workers(database: SqlDatabase) -> None:
    instance = database.make_oban()
    await AsyncOk.enqueue_async({})
    await Ok.enqueue_async({})
    await Fails.enqueue_async({})
    await Enqueuer.enqueue_async({})
    result = await drain_queue_async(instance, queue="default", with_recursion=True)
    assert result == {**NONE, "completed": 4, "retryable": 1}
    with pytest.raises(ValueError, match="boom"):
        await drain_queue_async(queue="default", with_scheduled=True, with_safety=False)
