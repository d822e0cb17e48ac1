"""Conformance tests for job management: cancel, retry, delete and list by filter.

The rules are Elixir Oban's (and oban-py's): cancel touches every job that is
not final yet; retry every job that is neither available nor executing,
raising ``max_attempts`` to at least ``attempt + 1``; delete every job that is
not executing. Filters AND together; an empty list matches nothing.

They drive the engine protocol directly with an injected ``now``; engines
without storage (Inline) skip them, and ``test_inline_*`` shows what the
public API answers there instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import Capability, Engine, Job, JobState, JobValidationError, Oban
from oban.engines.base import Changed, JobFilter
from oban.outcomes import Ack, error_entry
from tests.engines import workers

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)
ACTION = NOW + timedelta(minutes=1)
"""When the management call happens (after every job got its state)."""
WORKER = "tests.engines.workers.Succeed"
OTHER = "tests.engines.workers.Fail"
NODE = ["node-1", "producer-uuid-1"]

pytestmark = pytest.mark.requires(Capability.PERSISTENT)

EVERY_STATE = tuple(JobState)


# -- helpers: one transaction per protocol call ------------------------------------


def insert(engine: Engine, job: Job, now: datetime = NOW) -> Job:
    with engine.transaction() as conn:
        (inserted,) = engine.insert_jobs(conn, [job], now)
    return inserted


def claim(engine: Engine, queue: str) -> Job:
    with engine.transaction() as conn:
        (claimed,) = engine.fetch_jobs(conn, queue, 1, NODE, NOW)
    return claimed


def ack(engine: Engine, *acks: Ack) -> None:
    with engine.transaction() as conn:
        engine.ack_jobs(conn, acks)


def get(engine: Engine, job_id: int | None) -> Job | None:
    assert job_id is not None
    with engine.transaction() as conn:
        return engine.get_job(conn, job_id)


def stored(engine: Engine, job_id: int | None) -> Job:
    found = get(engine, job_id)
    assert found is not None, f"job {job_id} is missing"
    return found


def cancel(engine: Engine, **filters: object) -> Changed:
    with engine.transaction() as conn:
        return engine.cancel_jobs(conn, JobFilter.of(**filters), ACTION)


def retry(engine: Engine, **filters: object) -> Changed:
    with engine.transaction() as conn:
        return engine.retry_jobs(conn, JobFilter.of(**filters), ACTION)


def delete(engine: Engine, **filters: object) -> Changed:
    with engine.transaction() as conn:
        return engine.delete_jobs(conn, JobFilter.of(**filters))


def listed(
    engine: Engine, *, limit: int = 1_000, before: int | None = None, **filters: object
) -> list[Job]:
    with engine.transaction() as conn:
        return engine.list_jobs(conn, JobFilter.of(**filters), limit, before)


def in_state(engine: Engine, state: JobState, *, worker: str = WORKER, queue: str = "") -> Job:
    """One job in ``state``, made the way the runtime makes it (fetch, then ack).

    Each lives in its own queue (``queue`` or the state's name) so that a
    fetch claims exactly it.
    """
    queue = queue or state.value
    if state is JobState.SCHEDULED:
        return insert(engine, Job(worker, queue=queue, scheduled_at=LATER))
    if state is JobState.SUSPENDED:
        return insert(engine, Job(worker, queue=queue, state=JobState.SUSPENDED))
    job = insert(engine, Job(worker, queue=queue, max_attempts=1))
    if state is JobState.AVAILABLE:
        return job
    running = claim(engine, queue)
    if state is JobState.EXECUTING:
        return running
    entry = error_entry(1, NOW, "boom")
    outcomes = {
        JobState.COMPLETED: Ack(running.id or 0, 1, JobState.COMPLETED, NOW),
        JobState.DISCARDED: Ack(running.id or 0, 1, JobState.DISCARDED, NOW, error=entry),
        JobState.CANCELLED: Ack(running.id or 0, 1, JobState.CANCELLED, NOW, error=entry),
        JobState.RETRYABLE: Ack(running.id or 0, 1, JobState.RETRYABLE, NOW, LATER, entry),
    }
    ack(engine, outcomes[state])
    made = stored(engine, running.id)
    assert made.state is state
    return made


def one_of_each(engine: Engine, *, worker: str = WORKER, prefix: str = "") -> dict[JobState, Job]:
    return {
        state: in_state(engine, state, worker=worker, queue=f"{prefix}{state.value}")
        for state in EVERY_STATE
    }


def snapshot(engine: Engine, jobs: dict[JobState, Job]) -> dict[JobState, Job]:
    return {state: stored(engine, job.id) for state, job in jobs.items()}


UNCHANGED_FIELDS = (
    "state",
    "attempt",
    "max_attempts",
    "errors",
    "scheduled_at",
    "completed_at",
    "discarded_at",
    "cancelled_at",
    "args",
    "meta",
)


def fields(job: Job) -> dict[str, object]:
    return {name: getattr(job, name) for name in UNCHANGED_FIELDS}


# -- cancel ---------------------------------------------------------------------------


def test_cancel_moves_every_unfinished_state_to_cancelled(engine: Engine) -> None:
    jobs = one_of_each(engine)
    before = snapshot(engine, jobs)

    changed = cancel(engine)

    cancellable = {
        JobState.AVAILABLE,
        JobState.SCHEDULED,
        JobState.RETRYABLE,
        JobState.EXECUTING,
        JobState.SUSPENDED,
    }
    assert changed.count == len(cancellable)
    assert changed.executing == (jobs[JobState.EXECUTING].id,)
    after = snapshot(engine, jobs)
    for state in EVERY_STATE:
        if state in cancellable:
            assert after[state].state is JobState.CANCELLED, state
            assert after[state].cancelled_at == ACTION, state
            # Only state and cancelled_at change: attempts and errors stay.
            assert after[state].attempt == before[state].attempt
            assert after[state].errors == before[state].errors
        else:
            assert fields(after[state]) == fields(before[state]), f"{state} was changed"


def test_cancel_of_a_final_or_missing_job_changes_nothing(engine: Engine) -> None:
    jobs = one_of_each(engine)
    before = snapshot(engine, jobs)
    for state in (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED):
        assert cancel(engine, ids=[jobs[state].id]) == Changed()
    assert cancel(engine, ids=[10_000_000]) == Changed()
    after = snapshot(engine, jobs)
    assert {s: fields(job) for s, job in after.items()} == {
        s: fields(job) for s, job in before.items()
    }


def test_a_late_ack_never_overwrites_a_cancel(engine: Engine) -> None:
    """The attempt's own outcome, or the shutdown write-back, comes after the cancel:
    acks apply only while the row still executes that attempt."""
    for late in (JobState.COMPLETED, JobState.AVAILABLE, JobState.RETRYABLE):
        running = in_state(engine, JobState.EXECUTING, queue=f"late-{late.value}")
        assert cancel(engine, ids=[running.id]).executing == (running.id,)
        ack(engine, Ack(running.id or 0, running.attempt, late, NOW, LATER))
        after = stored(engine, running.id)
        assert after.state is JobState.CANCELLED, late
        assert after.attempt == 1
        assert after.cancelled_at == ACTION


def test_cancelled_ids_reports_only_cancelled_jobs(engine: Engine) -> None:
    jobs = one_of_each(engine)
    running = in_state(engine, JobState.EXECUTING, queue="second")
    all_ids = [job.id or 0 for job in [*jobs.values(), running]]
    with engine.transaction() as conn:
        assert engine.cancelled_ids(conn, all_ids) == [jobs[JobState.CANCELLED].id]
        assert engine.cancelled_ids(conn, []) == []
    cancel(engine, ids=[running.id])
    with engine.transaction() as conn:
        assert sorted(engine.cancelled_ids(conn, [running.id or 0, 10_000_000])) == [running.id]


# -- retry ----------------------------------------------------------------------------


def test_retry_makes_every_state_but_available_and_executing_available_now(
    engine: Engine,
) -> None:
    jobs = one_of_each(engine)
    before = snapshot(engine, jobs)

    changed = retry(engine)

    untouched = {JobState.AVAILABLE, JobState.EXECUTING}
    retried = [state for state in EVERY_STATE if state not in untouched]
    assert changed.count == len(retried)
    assert set(changed.queues) == {state.value for state in retried}
    after = snapshot(engine, jobs)
    for state in untouched:
        assert fields(after[state]) == fields(before[state]), f"{state} was changed"
    for state in retried:
        job = after[state]
        assert job.state is JobState.AVAILABLE, state
        assert job.scheduled_at == ACTION, state
        assert (job.completed_at, job.discarded_at, job.cancelled_at) == (None, None, None)
        assert job.attempt == before[state].attempt, "the attempt count is history"
        assert job.errors == before[state].errors, "errors are history too"
        assert job.max_attempts == max(before[state].max_attempts, before[state].attempt + 1)


def test_retry_of_a_job_out_of_attempts_gives_it_one_more(engine: Engine) -> None:
    """DESIGN: retry_job on a discarded job makes it available again and raises
    max_attempts to at least attempt + 1, so it can actually run."""
    discarded = in_state(engine, JobState.DISCARDED)
    assert (discarded.attempt, discarded.max_attempts) == (1, 1)

    assert retry(engine, ids=[discarded.id]).count == 1
    again = stored(engine, discarded.id)
    assert (again.state, again.attempt, again.max_attempts) == (JobState.AVAILABLE, 1, 2)

    rerun = claim(engine, discarded.queue)
    assert (rerun.id, rerun.attempt, rerun.max_attempts) == (discarded.id, 2, 2)


def test_retry_keeps_a_larger_max_attempts(engine: Engine) -> None:
    job = insert(engine, Job(WORKER, queue="roomy", max_attempts=10))
    running = claim(engine, "roomy")
    ack(engine, Ack(running.id or 0, 1, JobState.CANCELLED, NOW))
    assert retry(engine, ids=[job.id]).count == 1
    assert stored(engine, job.id).max_attempts == 10


def test_retry_of_available_executing_or_missing_jobs_changes_nothing(engine: Engine) -> None:
    available = in_state(engine, JobState.AVAILABLE)
    running = in_state(engine, JobState.EXECUTING)
    assert retry(engine, ids=[available.id, running.id, 10_000_000]) == Changed()
    assert stored(engine, available.id).scheduled_at == NOW
    assert stored(engine, running.id).state is JobState.EXECUTING


# -- delete ---------------------------------------------------------------------------


def test_delete_removes_every_job_but_executing_ones(engine: Engine) -> None:
    jobs = one_of_each(engine)

    changed = delete(engine)

    assert changed.count == len(EVERY_STATE) - 1
    for state, job in jobs.items():
        if state is JobState.EXECUTING:
            assert stored(engine, job.id).state is JobState.EXECUTING
        else:
            assert get(engine, job.id) is None, f"{state} job still there"
    assert delete(engine, ids=[jobs[JobState.EXECUTING].id]) == Changed()
    assert delete(engine, ids=[jobs[JobState.COMPLETED].id]) == Changed(), "already gone"


# -- filters --------------------------------------------------------------------------


def test_filters_combine_with_and(engine: Engine) -> None:
    mine = one_of_each(engine, worker=WORKER, prefix="a-")
    theirs = one_of_each(engine, worker=OTHER, prefix="b-")

    # worker AND state: only OTHER's retryable and scheduled jobs.
    changed = cancel(engine, worker=OTHER, state=["retryable", JobState.SCHEDULED])
    assert changed.count == 2
    assert stored(engine, theirs[JobState.RETRYABLE].id).state is JobState.CANCELLED
    assert stored(engine, theirs[JobState.SCHEDULED].id).state is JobState.CANCELLED
    assert stored(engine, mine[JobState.RETRYABLE].id).state is JobState.RETRYABLE

    # queue AND ids: the id is not in that queue, so nothing.
    assert cancel(engine, queue="a-available", ids=[theirs[JobState.AVAILABLE].id]).count == 0
    # queue list AND worker class.
    changed = cancel(engine, queue=["a-available", "b-available"], worker=workers.Succeed)
    assert changed.count == 1
    assert stored(engine, mine[JobState.AVAILABLE].id).state is JobState.CANCELLED
    assert stored(engine, theirs[JobState.AVAILABLE].id).state is JobState.AVAILABLE

    # A state outside what the operation touches matches nothing.
    assert cancel(engine, state="completed").count == 0
    assert retry(engine, state="executing").count == 0
    assert delete(engine, state=JobState.EXECUTING).count == 0

    # ids alone, several at once, with a missing one among them.
    ids = [theirs[JobState.COMPLETED].id, theirs[JobState.DISCARDED].id, 10_000_000]
    assert retry(engine, ids=ids).count == 2


def test_an_empty_list_matches_nothing_never_everything(engine: Engine) -> None:
    jobs = one_of_each(engine)
    before = snapshot(engine, jobs)
    empties: list[dict[str, Any]] = [{"ids": []}, {"queue": []}, {"worker": []}, {"state": []}]
    for filters in empties:
        assert cancel(engine, **filters) == Changed(), filters
        assert retry(engine, **filters) == Changed(), filters
        assert delete(engine, **filters) == Changed(), filters
        assert listed(engine, **filters) == [], filters
    after = snapshot(engine, jobs)
    assert {s: fields(job) for s, job in after.items()} == {
        s: fields(job) for s, job in before.items()
    }


def test_a_long_id_list_is_one_parameter_not_thousands(engine: Engine) -> None:
    """40,000 ids: past SQLite's 32,766 bound variables if sent one by one."""
    job = insert(engine, Job(WORKER, queue="many", schedule_in=3600))
    ids = [*range(10_000_000, 10_040_000), job.id or 0]
    assert [found.id for found in listed(engine, ids=ids)] == [job.id]
    assert cancel(engine, ids=ids).count == 1
    assert retry(engine, ids=ids).count == 1
    with engine.transaction() as conn:
        assert engine.cancelled_ids(conn, ids) == []
    assert delete(engine, ids=ids).count == 1


# -- listing --------------------------------------------------------------------------


def test_list_jobs_newest_first_in_keyset_pages(engine: Engine) -> None:
    made = [insert(engine, Job(WORKER, queue="pages", args={"n": n})) for n in range(23)]
    newest_first = sorted((job.id or 0 for job in made), reverse=True)

    pages: list[list[int]] = []
    before: int | None = None
    while True:
        page = [job.id or 0 for job in listed(engine, limit=5, before=before, queue="pages")]
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [job_id for page in pages for job_id in page] == newest_first

    # A job inserted meanwhile does not shift the pages already seen.
    insert(engine, Job(WORKER, queue="pages"))
    assert [job.id for job in listed(engine, limit=5, before=pages[0][-1], queue="pages")] == (
        pages[1]
    )


def test_list_jobs_filters_and_returns_whole_jobs(engine: Engine) -> None:
    jobs = one_of_each(engine)
    other = in_state(engine, JobState.AVAILABLE, worker=OTHER, queue="other")

    assert [job.id for job in listed(engine, state="executing")] == [jobs[JobState.EXECUTING].id]
    assert [job.id for job in listed(engine, worker=OTHER)] == [other.id]
    assert {job.id for job in listed(engine, state=["available"])} == {
        jobs[JobState.AVAILABLE].id,
        other.id,
    }
    found = listed(engine, ids=[jobs[JobState.DISCARDED].id])
    assert len(found) == 1
    assert found[0].state is JobState.DISCARDED
    assert found[0].errors == stored(engine, jobs[JobState.DISCARDED].id).errors
    assert len(listed(engine)) == len(EVERY_STATE) + 1
    assert len(listed(engine, limit=2)) == 2


# -- the public API on engines without storage -----------------------------------------


def test_inline_has_nothing_to_manage() -> None:
    oban = Oban(testing="inline")
    assert oban.cancel_job(1) is False
    assert oban.retry_job(1) is False
    assert oban.delete_job(1) is False
    assert oban.cancel_many() == 0
    assert oban.retry_many(queue="default") == 0
    assert oban.delete_many(state="completed") == 0
    assert oban.list_jobs() == []


@pytest.mark.anyio
async def test_inline_async_twins_have_nothing_to_manage() -> None:
    oban = Oban(testing="inline")
    assert await oban.cancel_job_async(1) is False
    assert await oban.retry_job_async(1) is False
    assert await oban.delete_job_async(1) is False
    assert await oban.cancel_many_async(ids=[1, 2]) == 0
    assert await oban.retry_many_async() == 0
    assert await oban.delete_many_async() == 0
    assert await oban.list_jobs_async(limit=10) == []


# -- filter validation (no engine needed) -----------------------------------------------


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"state": "finished"}, "state filter must be one of"),
        ({"state": ["available", "nope"]}, "'nope'"),
        ({"ids": [1, "2"]}, "each of ids must be an int"),
        ({"ids": [True]}, "each of ids must be an int"),
        ({"ids": [2**64]}, "each of ids must fit in 64 bits"),
        ({"ids": 5}, "ids must be a list"),
        ({"ids": "12"}, "ids must be a list"),
        ({"queue": ""}, "queue filter"),
        ({"queue": [1]}, "queue filter"),
        ({"worker": 3}, "worker filter takes"),
        ({"worker": object}, "worker filter takes"),
        ({"worker": " "}, "must not be blank"),
    ],
)
def test_bad_filters_are_validation_errors(filters: dict[str, object], message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        JobFilter.of(**filters)


def test_filters_accept_one_value_or_many_and_worker_references() -> None:
    where = JobFilter.of(
        queue="a",
        worker=[workers.Succeed, workers.add, "x.Y"],
        state=("available", JobState.SCHEDULED),
        ids=iter([3, 1, 3]),
    )
    assert where == JobFilter(
        queues=("a",),
        workers=("tests.engines.workers.Succeed", "tests.engines.workers.add", "x.Y"),
        states=(JobState.AVAILABLE, JobState.SCHEDULED),
        ids=(3, 1),
    )
    assert JobFilter.of() == JobFilter()
    assert not JobFilter.of().matches_nothing
    assert JobFilter.of(ids=[]).matches_nothing


@pytest.mark.parametrize("bad", ["1", 1.0, None, True])
def test_a_single_job_id_must_be_an_int(bad: object) -> None:
    oban = Oban(testing="inline")
    for call in (oban.cancel_job, oban.retry_job, oban.delete_job):
        with pytest.raises(JobValidationError, match="job id must be an int"):
            call(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be"),
        ({"limit": 1001}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"before": "10"}, "before must be"),
    ],
)
def test_list_jobs_checks_its_page(options: dict[str, object], message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        Oban(testing="inline").list_jobs(**options)  # type: ignore[arg-type]
