"""The engine conformance suite: the same tests against every engine.

Each test drives the engine protocol directly (``transaction``,
``insert_jobs``, ``fetch_jobs``, ``ack_jobs``, ``stage_jobs``, ``get_job``)
with an injected ``now``, and states the capabilities it needs with
``@pytest.mark.requires(...)``; engines without them skip it. The tests of
rows written by something else take the shared ``database`` fixture (every
SQL engine) instead, since they need SQL of their own and an ``Oban`` to run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from oban import Capability, Engine, Job, JobState
from oban.engines.base import JobFilter
from oban.outcomes import Ack, error_entry
from tests.conftest import SqlDatabase, wait_for
from tests.engines import workers

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)
WORKER = "tests.engines.workers.Succeed"
NODE = ["node-1", "producer-uuid-1"]

persistent = pytest.mark.requires(Capability.PERSISTENT)
inline = pytest.mark.requires(Capability.INLINE)

FIELDS = (
    "id",
    "worker",
    "state",
    "queue",
    "attempt",
    "max_attempts",
    "priority",
    "args",
    "meta",
    "errors",
    "tags",
    "attempted_by",
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "discarded_at",
    "cancelled_at",
)


# -- helpers: one transaction per protocol call ------------------------------------


def insert(engine: Engine, jobs: Sequence[Job], now: datetime = NOW) -> list[Job]:
    with engine.transaction() as conn:
        return engine.insert_jobs(conn, jobs, now)


def insert_one(engine: Engine, job: Job | None = None, now: datetime = NOW) -> Job:
    (inserted,) = insert(engine, [job or Job(WORKER)], now)
    return inserted


def fetch(
    engine: Engine,
    queue: str = "default",
    demand: int = 100,
    now: datetime = NOW,
    node: list[str] | None = None,
) -> list[Job]:
    with engine.transaction() as conn:
        return engine.fetch_jobs(conn, queue, demand, node or NODE, now)


def ack(engine: Engine, *acks: Ack) -> None:
    with engine.transaction() as conn:
        engine.ack_jobs(conn, acks)


def stage(engine: Engine, now: datetime, limit: int = 1_000) -> dict[str, int]:
    with engine.transaction() as conn:
        return engine.stage_jobs(conn, now, limit)


def get(engine: Engine, job_id: int | None) -> Job:
    assert job_id is not None
    with engine.transaction() as conn:
        found = engine.get_job(conn, job_id)
    assert found is not None, f"job {job_id} is missing"
    return found


def row(job: Job) -> dict[str, Any]:
    """Every stored column of a job, for whole-row comparisons."""
    return {name: getattr(job, name) for name in FIELDS}


def executing(engine: Engine, job: Job | None = None) -> Job:
    """Insert one job and claim it: ``executing``, attempt 1."""
    inserted = insert_one(engine, job)
    claimed = fetch(engine, queue=inserted.queue)
    assert [found.id for found in claimed] == [inserted.id]
    return claimed[0]


def assert_python_types(job: Job) -> None:
    assert isinstance(job.id, int)
    assert isinstance(job.state, JobState)
    for name in ("worker", "queue"):
        assert isinstance(getattr(job, name), str), name
    for name in ("attempt", "max_attempts", "priority"):
        value = getattr(job, name)
        assert isinstance(value, int), name
        assert not isinstance(value, bool), name
    assert isinstance(job.args, dict)
    assert isinstance(job.meta, dict)
    assert isinstance(job.tags, list)
    assert isinstance(job.errors, list)
    assert isinstance(job.attempted_by, list)
    assert all(isinstance(tag, str) for tag in job.tags)
    assert all(isinstance(entry, dict) for entry in job.errors)
    for name in (
        "inserted_at",
        "scheduled_at",
        "attempted_at",
        "completed_at",
        "discarded_at",
        "cancelled_at",
    ):
        value = getattr(job, name)
        if value is not None:
            assert isinstance(value, datetime), name
            assert value.utcoffset() == timedelta(0), f"{name} is not aware UTC: {value!r}"


# -- every engine ----------------------------------------------------------------


def test_get_job_of_missing_id_is_none(engine: Engine) -> None:
    with engine.transaction() as conn:
        assert engine.get_job(conn, 987_654_321) is None


def test_insert_of_nothing_returns_nothing(engine: Engine) -> None:
    assert insert(engine, []) == []


# -- insert ------------------------------------------------------------------------


@persistent
def test_insert_returns_jobs_with_ids_and_available_state(engine: Engine) -> None:
    jobs = insert(engine, [Job(WORKER), Job(WORKER, queue="other")])

    assert [job.state for job in jobs] == [JobState.AVAILABLE, JobState.AVAILABLE]
    assert all(isinstance(job.id, int) for job in jobs)
    assert len({job.id for job in jobs}) == 2
    for job in jobs:
        assert job.inserted_at == NOW
        assert job.scheduled_at == NOW
        assert job.attempt == 0
        assert get(engine, job.id).state is JobState.AVAILABLE


@persistent
def test_insert_with_future_scheduled_at_is_scheduled(engine: Engine) -> None:
    future, past = insert(
        engine,
        [
            Job(WORKER, scheduled_at=NOW + timedelta(seconds=1)),
            Job(WORKER, scheduled_at=NOW - timedelta(hours=1)),
        ],
    )

    assert future.state is JobState.SCHEDULED
    assert future.scheduled_at == NOW + timedelta(seconds=1)
    assert past.state is JobState.AVAILABLE
    assert past.scheduled_at == NOW - timedelta(hours=1)
    assert get(engine, future.id).state is JobState.SCHEDULED
    assert get(engine, past.id).state is JobState.AVAILABLE


@persistent
def test_insert_reads_back_every_column_with_python_types(engine: Engine) -> None:
    errors = [{"attempt": 1, "at": "2024-01-01T00:00:00.000000Z", "error": "earlier"}]
    job = Job(
        WORKER,
        queue="typed",
        max_attempts=7,
        priority=3,
        args={"id": 1, "name": "ü", "nested": {"list": [1, 2.5, None, True]}},
        meta={"source": "test", "n": 2},
        tags=["Beta", "alpha"],
        errors=errors,
        scheduled_at=NOW - timedelta(seconds=30),
    )
    inserted = insert_one(engine, job)
    stored = get(engine, inserted.id)

    assert_python_types(inserted)
    assert_python_types(stored)
    assert row(stored) == row(inserted)
    assert stored.worker == WORKER
    assert stored.queue == "typed"
    assert stored.state is JobState.AVAILABLE
    assert (stored.attempt, stored.max_attempts, stored.priority) == (0, 7, 3)
    assert stored.args == {"id": 1, "name": "ü", "nested": {"list": [1, 2.5, None, True]}}
    assert stored.meta == {"source": "test", "n": 2}
    assert stored.tags == ["alpha", "beta"]
    assert stored.errors == errors
    assert stored.attempted_by == []
    assert stored.inserted_at == NOW
    assert stored.scheduled_at == NOW - timedelta(seconds=30)
    assert stored.attempted_at is None
    assert stored.completed_at is None
    assert stored.discarded_at is None
    assert stored.cancelled_at is None

    # Timestamps set later (attempted_at, completed_at) come back aware UTC too.
    (claimed,) = fetch(engine, queue="typed", now=LATER)
    ack(engine, Ack(claimed.id or 0, 1, JobState.COMPLETED, LATER + timedelta(seconds=1)))
    done = get(engine, inserted.id)
    assert_python_types(done)
    assert done.attempted_at == LATER
    assert done.completed_at == LATER + timedelta(seconds=1)
    assert done.attempted_by == NODE


@persistent
def test_insert_of_many_jobs_preserves_order(engine: Engine) -> None:
    jobs = [
        Job(
            WORKER,
            args={"n": n},
            queue=f"q{n % 3}",
            priority=(7 * n) % 10,
            scheduled_at=NOW + timedelta(seconds=(n % 4) - 2),
        )
        for n in range(120)
    ]
    inserted = insert(engine, jobs)

    assert [job.args["n"] for job in inserted] == list(range(120))
    assert [job.queue for job in inserted] == [job.queue for job in jobs]
    assert [job.priority for job in inserted] == [job.priority for job in jobs]
    ids = [job.id or 0 for job in inserted]
    assert ids == sorted(ids)
    assert len(set(ids)) == 120
    for job in inserted:
        assert get(engine, job.id).args == job.args


# -- fetch -------------------------------------------------------------------------


@persistent
def test_fetch_claims_in_priority_then_scheduled_at_then_id_order(engine: Engine) -> None:
    early = NOW - timedelta(minutes=10)
    late = NOW - timedelta(minutes=1)
    specs = [
        # (label, priority, scheduled_at), inserted in a scrambled order
        ("p1-late-a", 1, late),
        ("p0-late", 0, late),
        ("p9-early", 9, early),
        ("p1-early", 1, early),
        ("p0-early-a", 0, early),
        ("p1-late-b", 1, late),
        ("p0-early-b", 0, early),
    ]
    insert(
        engine,
        [Job(WORKER, args={"label": label}, priority=p, scheduled_at=at) for label, p, at in specs],
    )
    expected = [
        "p0-early-a",
        "p0-early-b",
        "p0-late",
        "p1-early",
        "p1-late-a",
        "p1-late-b",
        "p9-early",
    ]

    one_at_a_time = []
    for _ in expected:
        (claimed,) = fetch(engine, demand=1)
        one_at_a_time.append(claimed.args["label"])
    assert one_at_a_time == expected
    assert fetch(engine) == []


@persistent
def test_fetch_returns_a_batch_in_claim_order(engine: Engine) -> None:
    insert(
        engine,
        [
            Job(WORKER, args={"n": 0}, priority=2),
            Job(WORKER, args={"n": 1}, priority=0, scheduled_at=NOW - timedelta(seconds=5)),
            Job(WORKER, args={"n": 2}, priority=0, scheduled_at=NOW - timedelta(seconds=9)),
            Job(WORKER, args={"n": 3}, priority=1),
        ],
    )
    assert [job.args["n"] for job in fetch(engine, demand=10)] == [2, 1, 3, 0]


@persistent
def test_fetch_takes_only_the_given_queue(engine: Engine) -> None:
    mine = insert(engine, [Job(WORKER, queue="mine", args={"n": n}) for n in range(3)])
    theirs = insert(engine, [Job(WORKER, queue="theirs", args={"n": n}) for n in range(3)])

    claimed = fetch(engine, queue="mine")

    assert sorted(job.id or 0 for job in claimed) == sorted(job.id or 0 for job in mine)
    assert all(job.queue == "mine" for job in claimed)
    for job in theirs:
        assert get(engine, job.id).state is JobState.AVAILABLE
    assert fetch(engine, queue="nobody") == []


@persistent
def test_fetch_takes_only_available_jobs(engine: Engine) -> None:
    others = insert(
        engine,
        [
            Job(WORKER, state=JobState.SCHEDULED, scheduled_at=NOW + timedelta(hours=1)),
            # Due, but not yet staged: still not fetchable.
            Job(WORKER, state=JobState.SCHEDULED, scheduled_at=NOW - timedelta(hours=1)),
            Job(WORKER, state=JobState.RETRYABLE, scheduled_at=NOW - timedelta(hours=1)),
            Job(WORKER, state=JobState.EXECUTING, attempt=1),
            Job(WORKER, state=JobState.COMPLETED, attempt=1),
            Job(WORKER, state=JobState.DISCARDED, attempt=1),
            Job(WORKER, state=JobState.CANCELLED),
            Job(WORKER, state=JobState.SUSPENDED),
        ],
    )
    before = [row(job) for job in others]
    available = insert_one(engine)

    claimed = fetch(engine)

    assert [job.id for job in claimed] == [available.id]
    assert [row(get(engine, job.id)) for job in others] == before


@persistent
def test_fetch_claims_at_most_demand(engine: Engine) -> None:
    insert(engine, [Job(WORKER, args={"n": n}) for n in range(10)])

    assert fetch(engine, demand=0) == []
    assert len(fetch(engine, demand=3)) == 3
    assert len(fetch(engine, demand=4)) == 4
    assert len(fetch(engine, demand=100)) == 3
    assert fetch(engine, demand=100) == []


@persistent
def test_fetch_marks_jobs_executing_for_this_node(engine: Engine) -> None:
    inserted = insert_one(engine, Job(WORKER, attempt=2, max_attempts=5))

    (claimed,) = fetch(engine, now=LATER, node=["node-7", "uuid-7"])
    stored = get(engine, inserted.id)

    for job in (claimed, stored):
        assert job.id == inserted.id
        assert job.state is JobState.EXECUTING
        assert job.attempt == 3
        assert job.attempted_at == LATER
        assert job.attempted_by == ["node-7", "uuid-7"]
        assert job.max_attempts == 5
        assert job.scheduled_at == inserted.scheduled_at
        assert job.inserted_at == inserted.inserted_at
        assert_python_types(job)


@persistent
def test_a_claimed_job_is_never_fetched_again(engine: Engine) -> None:
    inserted = insert(engine, [Job(WORKER, args={"n": n}) for n in range(5)])

    first = fetch(engine, demand=3, node=["a", "a-1"])
    second = fetch(engine, demand=10, node=["b", "b-1"])
    third = fetch(engine, demand=10, node=["c", "c-1"])

    first_ids = {job.id for job in first}
    second_ids = {job.id for job in second}
    assert len(first_ids) == 3
    assert len(second_ids) == 2
    assert not first_ids & second_ids
    assert first_ids | second_ids == {job.id for job in inserted}
    assert third == []
    for job in first:
        assert get(engine, job.id).attempted_by == ["a", "a-1"]


# -- ack ---------------------------------------------------------------------------


@persistent
def test_ack_completed(engine: Engine) -> None:
    job = executing(engine)
    before = row(get(engine, job.id))

    ack(engine, Ack(job.id or 0, 1, JobState.COMPLETED, LATER))

    after = row(get(engine, job.id))
    assert after == {**before, "state": JobState.COMPLETED, "completed_at": LATER}


@persistent
def test_ack_retryable_schedules_and_appends_the_error(engine: Engine) -> None:
    earlier = {"attempt": 0, "at": "2024-01-01T00:00:00.000000Z", "error": "earlier"}
    job = executing(engine, Job(WORKER, errors=[earlier]))
    before = row(get(engine, job.id))
    entry = error_entry(1, LATER, RuntimeError("boom"))
    retry_at = LATER + timedelta(seconds=17)

    ack(engine, Ack(job.id or 0, 1, JobState.RETRYABLE, LATER, scheduled_at=retry_at, error=entry))

    after = row(get(engine, job.id))
    assert after == {
        **before,
        "state": JobState.RETRYABLE,
        "scheduled_at": retry_at,
        "errors": [earlier, entry],
    }
    assert after["attempt"] == 1
    assert "RuntimeError: boom" in after["errors"][-1]["error"]


@persistent
def test_ack_discarded(engine: Engine) -> None:
    job = executing(engine, Job(WORKER, max_attempts=1))
    before = row(get(engine, job.id))
    entry = error_entry(1, LATER, ValueError("last try"))

    ack(engine, Ack(job.id or 0, 1, JobState.DISCARDED, LATER, error=entry))

    after = row(get(engine, job.id))
    assert after == {
        **before,
        "state": JobState.DISCARDED,
        "discarded_at": LATER,
        "errors": [entry],
    }


@persistent
def test_ack_cancelled(engine: Engine) -> None:
    job = executing(engine)
    before = row(get(engine, job.id))
    entry = error_entry(1, LATER, "not wanted")

    ack(engine, Ack(job.id or 0, 1, JobState.CANCELLED, LATER, error=entry))

    after = row(get(engine, job.id))
    assert after == {
        **before,
        "state": JobState.CANCELLED,
        "cancelled_at": LATER,
        "errors": [entry],
    }


@persistent
def test_ack_snoozed(engine: Engine) -> None:
    job = executing(engine, Job(WORKER, max_attempts=3, meta={"keep": "me", "snoozed": 1}))
    before = row(get(engine, job.id))
    wake_at = LATER + timedelta(seconds=60)

    ack(
        engine,
        Ack(
            job.id or 0,
            1,
            JobState.SCHEDULED,
            LATER,
            scheduled_at=wake_at,
            meta={"snoozed": 2},
            snoozed=True,
        ),
    )

    after = row(get(engine, job.id))
    assert after == {
        **before,
        "state": JobState.SCHEDULED,
        "scheduled_at": wake_at,
        "max_attempts": 4,
        "meta": {"keep": "me", "snoozed": 2},
    }


@persistent
def test_ack_record_merges_into_meta(engine: Engine) -> None:
    job = executing(engine, Job(WORKER, meta={"keep": [1, 2], "return": "old"}))
    before = row(get(engine, job.id))
    value = {"total": 3, "items": ["a", {"b": None}], "ok": True, "ratio": 0.5}

    ack(
        engine,
        Ack(job.id or 0, 1, JobState.COMPLETED, LATER, meta={"recorded": True, "return": value}),
    )

    after = row(get(engine, job.id))
    assert after == {
        **before,
        "state": JobState.COMPLETED,
        "completed_at": LATER,
        "meta": {"keep": [1, 2], "recorded": True, "return": value},
    }


@persistent
def test_ack_interrupted_puts_the_job_back_with_the_attempt_rolled_back(engine: Engine) -> None:
    job = executing(engine, Job(WORKER, attempt=2))
    assert job.attempt == 3
    before = row(get(engine, job.id))
    entry = error_entry(3, LATER, "interrupted: Oban stopped while the job ran")

    ack(engine, Ack(job.id or 0, 3, JobState.AVAILABLE, LATER, error=entry))

    after = row(get(engine, job.id))
    assert after == {**before, "state": JobState.AVAILABLE, "attempt": 2, "errors": [entry]}
    # ...and it can be claimed again, as attempt 3.
    (again,) = fetch(engine)
    assert (again.id, again.attempt) == (job.id, 3)


@persistent
def test_acks_of_every_kind_in_one_batch(engine: Engine) -> None:
    jobs = insert(engine, [Job(WORKER, args={"n": n}, meta={"m": n}) for n in range(6)])
    claimed = {job.args["n"]: job for job in fetch(engine)}
    assert len(claimed) == 6
    entry = error_entry(1, LATER, "failed")

    def job_id(n: int) -> int:
        return claimed[n].id or 0

    ack(
        engine,
        Ack(job_id(0), 1, JobState.COMPLETED, LATER),
        Ack(job_id(1), 1, JobState.RETRYABLE, LATER, scheduled_at=LATER, error=entry),
        Ack(job_id(2), 1, JobState.DISCARDED, LATER, error=entry),
        Ack(job_id(3), 1, JobState.CANCELLED, LATER, error=entry),
        Ack(
            job_id(4),
            1,
            JobState.SCHEDULED,
            LATER,
            scheduled_at=LATER,
            meta={"snoozed": 1},
            snoozed=True,
        ),
        Ack(job_id(5), 1, JobState.COMPLETED, LATER, meta={"recorded": True, "return": 5}),
    )

    stored = {job.args["n"]: get(engine, job.id) for job in jobs}
    assert [stored[n].state for n in range(6)] == [
        JobState.COMPLETED,
        JobState.RETRYABLE,
        JobState.DISCARDED,
        JobState.CANCELLED,
        JobState.SCHEDULED,
        JobState.COMPLETED,
    ]
    assert [len(stored[n].errors) for n in range(6)] == [0, 1, 1, 1, 0, 0]
    assert stored[4].meta == {"m": 4, "snoozed": 1}
    assert stored[4].max_attempts == 21
    assert stored[5].meta == {"m": 5, "recorded": True, "return": 5}
    assert stored[0].meta == {"m": 0}


@persistent
def test_a_stale_ack_for_another_attempt_changes_nothing(engine: Engine) -> None:
    job = executing(engine)
    before = row(get(engine, job.id))
    entry = error_entry(2, LATER, "late")

    ack(
        engine,
        Ack(job.id or 0, 2, JobState.COMPLETED, LATER),
        Ack(job.id or 0, 0, JobState.DISCARDED, LATER, error=entry),
        Ack(job.id or 0, 2, JobState.AVAILABLE, LATER, error=entry),
        Ack(
            job.id or 0,
            2,
            JobState.SCHEDULED,
            LATER,
            scheduled_at=LATER,
            meta={"snoozed": 1},
            snoozed=True,
        ),
    )

    assert row(get(engine, job.id)) == before


@persistent
def test_an_ack_for_a_job_that_is_not_executing_changes_nothing(engine: Engine) -> None:
    available = insert_one(engine, Job(WORKER, queue="waiting"))
    finished = executing(engine)
    ack(engine, Ack(finished.id or 0, 1, JobState.COMPLETED, LATER))
    before = [row(get(engine, available.id)), row(get(engine, finished.id))]
    entry = error_entry(1, LATER, "late")

    ack(
        engine,
        Ack(available.id or 0, 0, JobState.COMPLETED, LATER),
        Ack(available.id or 0, 0, JobState.AVAILABLE, LATER, error=entry),
        # A duplicate ack of an attempt that was already recorded.
        Ack(finished.id or 0, 1, JobState.RETRYABLE, LATER, scheduled_at=LATER, error=entry),
        Ack(finished.id or 0, 1, JobState.AVAILABLE, LATER, error=entry),
    )

    assert [row(get(engine, available.id)), row(get(engine, finished.id))] == before


@persistent
def test_ack_of_an_unknown_id_is_harmless(engine: Engine) -> None:
    job = executing(engine)
    before = row(get(engine, job.id))

    ack(engine, Ack(987_654_321, 1, JobState.COMPLETED, LATER))

    assert row(get(engine, job.id)) == before


@persistent
def test_ack_of_nothing_is_harmless(engine: Engine) -> None:
    job = executing(engine)
    waiting = insert_one(engine, Job(WORKER, queue="waiting"))
    before = [row(get(engine, job.id)), row(get(engine, waiting.id))]

    ack(engine)

    assert [row(get(engine, job.id)), row(get(engine, waiting.id))] == before


# -- stage -------------------------------------------------------------------------


@persistent
def test_stage_makes_due_jobs_available_and_returns_their_queues(engine: Engine) -> None:
    due_scheduled = insert_one(
        engine, Job(WORKER, queue="alpha", scheduled_at=NOW + timedelta(seconds=10))
    )
    due_retryable = insert_one(
        engine,
        Job(
            WORKER,
            queue="beta",
            state=JobState.RETRYABLE,
            attempt=1,
            scheduled_at=NOW + timedelta(seconds=20),
        ),
    )
    exactly_due = insert_one(
        engine, Job(WORKER, queue="alpha", scheduled_at=NOW + timedelta(seconds=30))
    )
    future = insert_one(
        engine, Job(WORKER, queue="gamma", scheduled_at=NOW + timedelta(seconds=31))
    )
    future_retry = insert_one(
        engine,
        Job(
            WORKER,
            queue="delta",
            state=JobState.RETRYABLE,
            attempt=1,
            scheduled_at=NOW + timedelta(hours=1),
        ),
    )
    untouched = insert(
        engine,
        [
            Job(
                WORKER,
                queue="epsilon",
                state=JobState.COMPLETED,
                scheduled_at=NOW - timedelta(hours=1),
            ),
            Job(
                WORKER,
                queue="epsilon",
                state=JobState.CANCELLED,
                scheduled_at=NOW - timedelta(hours=1),
            ),
            Job(
                WORKER,
                queue="epsilon",
                state=JobState.SUSPENDED,
                scheduled_at=NOW - timedelta(hours=1),
            ),
            Job(
                WORKER,
                queue="epsilon",
                state=JobState.EXECUTING,
                scheduled_at=NOW - timedelta(hours=1),
            ),
        ],
    )
    assert due_scheduled.state is JobState.SCHEDULED
    before = [row(job) for job in (future, future_retry, *untouched)]

    queues = stage(engine, NOW + timedelta(seconds=30))

    assert queues == {"alpha": 2, "beta": 1}
    for job in (due_scheduled, due_retryable, exactly_due):
        stored = get(engine, job.id)
        assert stored.state is JobState.AVAILABLE
        assert stored.scheduled_at == job.scheduled_at
        assert stored.attempt == job.attempt
    assert [row(get(engine, job.id)) for job in (future, future_retry, *untouched)] == before

    # Staged jobs are fetchable; nothing is due a second time.
    assert stage(engine, NOW + timedelta(seconds=30)) == {}
    assert {job.id for job in fetch(engine, queue="alpha")} == {due_scheduled.id, exactly_due.id}


@persistent
def test_stage_moves_at_most_limit_jobs(engine: Engine) -> None:
    insert(engine, [Job(WORKER, scheduled_at=NOW + timedelta(seconds=n + 1)) for n in range(5)])
    later = NOW + timedelta(minutes=1)

    assert stage(engine, later, limit=2) == {"default": 2}
    assert len(fetch(engine, now=later)) == 2
    assert stage(engine, later, limit=10) == {"default": 3}
    assert len(fetch(engine, now=later)) == 3
    assert stage(engine, later) == {}


@persistent
def test_stage_with_nothing_due_returns_nothing(engine: Engine) -> None:
    insert_one(engine, Job(WORKER, scheduled_at=NOW + timedelta(days=1)))
    assert stage(engine, NOW) == {}


# -- concurrency -------------------------------------------------------------------


@pytest.mark.requires(Capability.PERSISTENT, Capability.SHARED)
def test_concurrent_fetches_never_claim_a_job_twice(engine: Engine) -> None:
    total, threads, demand = 2_000, 8, 25
    inserted = insert(engine, [Job(WORKER, args={"n": n}) for n in range(total)])
    claims: list[list[int]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def drain(index: int) -> None:
        try:
            start.wait()
            while True:
                fetched = fetch(engine, demand=demand, node=[f"node-{index}", f"uuid-{index}"])
                if not fetched:
                    return
                claims[index].extend(job.id or 0 for job in fetched)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    workers_ = [threading.Thread(target=drain, args=(n,)) for n in range(threads)]
    for thread in workers_:
        thread.start()
    for thread in workers_:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in workers_), "a fetching thread hung"
    assert failures == []

    claimed = [job_id for per_thread in claims for job_id in per_thread]
    assert len(claimed) == total, "a job was claimed twice or not at all"
    assert set(claimed) == {job.id for job in inserted}
    for index, per_thread in enumerate(claims):
        for job_id in per_thread[:3]:
            assert get(engine, job_id).attempted_by == [f"node-{index}", f"uuid-{index}"]


# -- rows written by something else ------------------------------------------------

# (column, stored text): what a hand-written UPDATE or another program may leave in
# a row. Text that is not JSON only fits where JSON is stored as text (SQLite); a
# database that checks JSON refuses it and the case is skipped there (see ``spoil``).
UNREADABLE = [
    pytest.param("args", "not json", id="args-not-json"),
    pytest.param("args", "[1, 2]", id="args-array"),
    pytest.param("args", '"s"', id="args-string"),
    pytest.param("args", "null", id="args-null"),
    pytest.param("meta", "{bad", id="meta-not-json"),
    pytest.param("meta", "[1]", id="meta-array"),
    pytest.param("tags", "x", id="tags-not-json"),
    pytest.param("errors", "[", id="errors-not-json"),
    pytest.param("errors", '{"a": 1}', id="errors-object"),
]

RUNTIME_OPTIONS: dict[str, Any] = {"poll_interval": 0.05, "stage_interval": 0.05}


def spoil(database: SqlDatabase, job_id: int | None, column: str, stored: str) -> None:
    """Store ``stored`` verbatim in ``column`` of job ``job_id``, as another program might.

    The text goes as an untyped parameter, so a database that stores JSON as
    text keeps it as it is, and PostgreSQL parses it into the column's own
    type (``jsonb``, ``text[]``); a value the database refuses cannot occur
    there, and the test is skipped.
    """
    statement = sa.text(f"UPDATE {database.jobs_table} SET {column} = :stored WHERE id = :id")
    try:
        with database.bind.begin() as conn:
            conn.execute(statement, {"stored": stored, "id": job_id})
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0]
        pytest.skip(f"this database cannot hold {stored!r} in {column}: {reason}")


def assert_unreadable_entry(entry: dict[str, Any], column: str, attempt: int, at: datetime) -> None:
    assert entry["attempt"] == attempt
    assert entry["at"] == error_entry(attempt, at, "")["at"]
    assert entry["error"].startswith(f"could not decode {column}: "), entry["error"]


def _fail_half_way_through_reading(engine: Engine, held: list[Any]) -> None:
    with engine.transaction() as conn:
        conn.execute(sa.text("CREATE TEMPORARY TABLE half_read (n INTEGER)"))
        conn.execute(sa.text("INSERT INTO half_read (n) VALUES (1), (2), (3)"))
        result = conn.execute(sa.text("UPDATE half_read SET n = n + 1 RETURNING n"))
        held.append(result)  # as a traceback would: the half-read result stays alive
        next(iter(result))
        raise RuntimeError("failed while reading")


@persistent
def test_an_exception_while_rows_are_half_read_leaves_the_engine_usable(engine: Engine) -> None:
    held: list[Any] = []
    with pytest.raises(RuntimeError, match="failed while reading"):
        _fail_half_way_through_reading(engine, held)

    # Every later transaction begins and commits; none is lost.
    saved = [insert_one(engine) for _ in range(3)]
    with engine.transaction() as conn:
        listed = engine.list_jobs(conn, JobFilter(), 10, None)
    assert sorted(job.id or 0 for job in listed) == sorted(job.id or 0 for job in saved)
    assert [job.id for job in fetch(engine)] == [job.id for job in saved]


@persistent
@pytest.mark.parametrize(("column", "stored"), UNREADABLE)
def test_a_fetch_discards_an_unreadable_row_and_returns_the_others(
    database: SqlDatabase, column: str, stored: str
) -> None:
    engine = database.make_oban().engine
    first, bad, last = insert(engine, [Job(WORKER, args={"n": n}) for n in range(3)])
    spoil(database, bad.id, column, stored)

    assert [job.id for job in fetch(engine)] == [first.id, last.id]
    discarded = get(engine, bad.id)
    assert discarded.state is JobState.DISCARDED
    assert discarded.discarded_at == NOW
    assert discarded.attempt == 1
    (entry,) = discarded.errors  # an unreadable errors column is replaced by this entry
    assert_unreadable_entry(entry, column, 1, NOW)
    # Only the discarded row is left out of the next fetch: the queue goes on.
    later = insert_one(engine)
    assert [job.id for job in fetch(engine)] == [later.id]


@persistent
def test_an_unreadable_row_keeps_its_readable_errors(database: SqlDatabase) -> None:
    engine = database.make_oban().engine
    bad = insert_one(engine)
    before = error_entry(0, NOW, "an earlier failure")
    spoil(database, bad.id, "errors", orjson.dumps([before]).decode())
    spoil(database, bad.id, "args", "[1]")

    assert fetch(engine) == []
    earlier, entry = get(engine, bad.id).errors
    assert earlier == before
    assert_unreadable_entry(entry, "args", 1, NOW)


@persistent
@pytest.mark.parametrize(
    ("column", "stored"),
    [*UNREADABLE, pytest.param("attempted_by", "x", id="attempted_by-not-json")],
)
def test_get_and_list_return_an_unreadable_row_with_the_column_named(
    database: SqlDatabase, column: str, stored: str
) -> None:
    instance = database.make_oban()
    first, bad, last = instance.enqueue_many([Job(WORKER, args={"n": n}) for n in range(3)])
    spoil(database, bad.id, column, stored)

    assert bad.id is not None
    found = instance.get_job(bad.id)
    assert found is not None
    assert_python_types(found)
    assert set(found.extra["undecodable"]) == {column}
    message = found.extra["undecodable"][column]
    assert message.startswith(f"could not decode {column}: "), message
    assert getattr(found, column) in ({}, [])
    assert found.worker == WORKER
    assert found.state is JobState.AVAILABLE

    listed = instance.list_jobs()
    assert [job.id for job in listed] == [last.id, bad.id, first.id]
    assert [bool(job.extra) for job in listed] == [False, True, False]
    assert listed[0].args == {"n": 2}
    # The connection is fine afterwards: writes commit, reads see them.
    more = instance.enqueue(Job(WORKER))
    assert [job.id for job in instance.list_jobs(limit=1)] == [more.id]


@persistent
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("column", "stored"),
    [
        pytest.param("args", "not json", id="args-not-json"),
        pytest.param("args", "[1, 2]", id="args-array"),
        pytest.param("errors", "[", id="errors-not-json"),
    ],
)
def test_a_running_queue_completes_its_jobs_around_an_unreadable_row(
    database: SqlDatabase, column: str, stored: str, backend: str
) -> None:
    instance = database.make_oban(queues={"rows": 2}, backend=backend, **RUNTIME_OPTIONS)
    jobs = instance.enqueue_many([Job(WORKER, queue="rows", args={"n": n}) for n in range(6)])
    bad = jobs[2]
    assert bad.id is not None
    spoil(database, bad.id, column, stored)
    expected: dict[int, JobState] = {job.id or 0: JobState.COMPLETED for job in jobs}
    expected[bad.id] = JobState.DISCARDED

    def states() -> dict[int, JobState]:
        return {job.id or 0: job.state for job in instance.list_jobs(queue="rows")}

    with instance:
        wait_for(
            lambda: states() == expected,
            message="the good jobs completed and the unreadable one was discarded",
        )
        # Still running: the queue takes new jobs and the connection is fine.
        later = instance.enqueue(Job(WORKER, queue="rows"))
        wait_for(
            lambda: getattr(instance.get_job(later.id or 0), "state", None) is JobState.COMPLETED,
            message="a job enqueued afterwards completed",
        )

    discarded = instance.get_job(bad.id)
    assert discarded is not None
    (entry,) = discarded.errors
    assert entry["attempt"] == 1
    assert entry["error"].startswith(f"could not decode {column}: "), entry["error"]
    assert len(instance.list_jobs(queue="rows")) == len(jobs) + 1


# -- inline: jobs run inside insert ------------------------------------------------


@inline
def test_inline_insert_runs_the_job_and_returns_it_completed(engine: Engine) -> None:
    (job,) = insert(engine, [workers.Succeed.new({"a": 1})])

    assert job.state is JobState.COMPLETED
    assert isinstance(job.id, int)
    assert job.attempt == 1
    assert job.completed_at == NOW
    assert job.attempted_at == NOW
    assert job.errors == []
    assert_python_types(job)


@inline
def test_inline_failure_is_retryable_with_the_error(engine: Engine) -> None:
    (job,) = insert(engine, [workers.Fail.new({})])

    assert job.state is JobState.RETRYABLE
    assert job.attempt == 1
    assert job.scheduled_at == NOW + timedelta(seconds=workers.FAIL_BACKOFF)
    assert len(job.errors) == 1
    assert job.errors[0]["attempt"] == 1
    assert "RuntimeError: boom on attempt 1" in job.errors[0]["error"]


@inline
def test_inline_failure_on_the_last_attempt_is_discarded(engine: Engine) -> None:
    (job,) = insert(engine, [workers.Fail.new({}, max_attempts=1)])

    assert job.state is JobState.DISCARDED
    assert job.discarded_at == NOW
    assert len(job.errors) == 1
    assert "boom" in job.errors[0]["error"]


@inline
def test_inline_cancel(engine: Engine) -> None:
    (job,) = insert(engine, [workers.CancelIt.new({})])

    assert job.state is JobState.CANCELLED
    assert job.cancelled_at == NOW
    assert [entry["error"] for entry in job.errors] == ["not wanted"]


@inline
def test_inline_snooze(engine: Engine) -> None:
    (job,) = insert(engine, [workers.SnoozeIt.new({}, max_attempts=4)])

    assert job.state is JobState.SCHEDULED
    assert job.scheduled_at == NOW + timedelta(seconds=workers.SNOOZE_SECONDS)
    assert job.max_attempts == 5
    assert job.meta["snoozed"] == 1
    assert job.errors == []


@inline
def test_inline_args_are_json_round_tripped(engine: Engine) -> None:
    args = {"tuple": (1, 2), "when": datetime(2024, 1, 2, tzinfo=timezone.utc), "n": 1.5}
    (job,) = insert(engine, [workers.Echo.new(args)])

    expected = orjson.loads(orjson.dumps(args))
    assert job.state is JobState.COMPLETED
    assert job.args == expected
    assert job.meta["return"] == expected
    assert job.meta["return"]["tuple"] == [1, 2]


@inline
def test_inline_async_worker_runs_from_sync_code(engine: Engine) -> None:
    (job,) = insert(engine, [workers.AsyncEcho.new({"x": 1})])

    assert job.state is JobState.COMPLETED
    assert job.meta["return"] == {"async": True, "x": 1}


@inline
def test_inline_function_worker_and_many_jobs_in_order(engine: Engine) -> None:
    workers.function_calls.clear()
    jobs = insert(engine, [workers.add.new(n, 10) for n in range(5)])

    assert [job.args for job in jobs] == [{"a": n, "b": 10} for n in range(5)]
    assert all(job.state is JobState.COMPLETED for job in jobs)
    assert len({job.id for job in jobs}) == 5
    assert workers.function_calls == [(n, 10) for n in range(5)]


@inline
def test_inline_unknown_worker_fails_the_attempt(engine: Engine) -> None:
    (job,) = insert(engine, [Job("tests.nowhere.Missing")])

    assert job.state is JobState.RETRYABLE
    assert "unknown worker" in job.errors[0]["error"]
