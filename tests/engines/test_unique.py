"""Unique jobs, one rule per test, on every engine that declares ``Capability.UNIQUE``.

Tests drive ``insert_jobs`` with an injected ``now`` (period expiry needs no
sleeping) and move jobs between states with the protocol's own fetch/ack.
Inline stores nothing, so uniqueness means nothing there: it just runs
each job (the last test).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa

from oban import Capability, Engine, Job, JobState
from oban.engines.sql import SqlEngine
from oban.outcomes import Ack
from oban.schema import oban_jobs
from tests.engines.test_conformance import NOW, WORKER, fetch, get, insert, stage

OTHER_WORKER = "tests.engines.workers.Echo"

unique = pytest.mark.requires(Capability.UNIQUE)
inline = pytest.mark.requires(Capability.INLINE)


def job(args: dict[str, Any] | None = None, **options: Any) -> Job:
    """A unique job (all defaults unless ``unique=`` says otherwise)."""
    options.setdefault("unique", True)
    worker = options.pop("worker", WORKER)
    return Job(worker, args=args if args is not None else {"id": 1}, **options)


def put(engine: Engine, new: Job, now: datetime = NOW) -> Job:
    (result,) = insert(engine, [new], now)
    return result


def count(engine: Engine) -> int:
    """Rows in ``oban_jobs`` (the engine's own prefix applies)."""
    sql = cast("SqlEngine", engine)
    with sql.transaction() as conn:
        return int(
            sql.execute(conn, sa.select(sa.func.count()).select_from(oban_jobs)).scalar_one()
        )


def assert_conflict(new: Job, existing: Job) -> None:
    assert new.conflict is True
    assert new.id == existing.id


def move_to(engine: Engine, stored: Job, state: JobState, now: datetime = NOW) -> Job:
    """Claim ``stored`` and end its attempt in ``state`` (completed, cancelled, ...)."""
    claimed = fetch(engine, queue=stored.queue, now=now)
    assert [found.id for found in claimed] == [stored.id]
    assert stored.id is not None
    with engine.transaction() as conn:
        engine.ack_jobs(conn, [Ack(stored.id, 1, state, now)])
    moved = get(engine, stored.id)
    assert moved.state is state
    return moved


# -- the basic rule ---------------------------------------------------------------------


@unique
def test_a_duplicate_returns_the_existing_job_marked_conflict(engine: Engine) -> None:
    first = put(engine, job({"id": 1}))
    second = put(engine, job({"id": 1}))

    assert first.conflict is False
    assert_conflict(second, first)
    assert second.state is JobState.AVAILABLE
    assert second.args == {"id": 1}
    assert second.inserted_at == first.inserted_at
    assert count(engine) == 1


@unique
def test_different_args_are_not_duplicates(engine: Engine) -> None:
    first = put(engine, job({"id": 1}))
    second = put(engine, job({"id": 2}))

    assert second.conflict is False
    assert second.id != first.id
    assert count(engine) == 2


@unique
def test_args_compare_as_json_whatever_the_key_order(engine: Engine) -> None:
    first = put(engine, job({"a": 1, "b": {"y": [1, {"q": 1, "p": 2}], "x": None}}))
    second = put(engine, job({"b": {"x": None, "y": [1, {"p": 2, "q": 1}]}, "a": 1}))

    assert_conflict(second, first)
    # A list's order does matter.
    third = put(engine, job({"a": 1, "b": {"y": [{"q": 1, "p": 2}, 1], "x": None}}))
    assert third.conflict is False


@unique
def test_empty_args_are_duplicates_of_each_other(engine: Engine) -> None:
    first = put(engine, job({}))
    assert_conflict(put(engine, job({})), first)
    assert put(engine, job({"a": None})).conflict is False


@unique
def test_a_plain_job_ignores_uniqueness(engine: Engine) -> None:
    put(engine, job({"id": 1}))
    plain = put(engine, job({"id": 1}, unique=None))
    assert plain.conflict is False
    assert count(engine) == 2


@unique
def test_a_duplicate_of_a_plain_job_is_still_a_duplicate(engine: Engine) -> None:
    # Uniqueness looks at stored jobs, however they were inserted.
    plain = put(engine, job({"id": 1}, unique=None))
    assert_conflict(put(engine, job({"id": 1})), plain)


# -- period ------------------------------------------------------------------------------


@unique
def test_period_counts_back_from_now(engine: Engine) -> None:
    first = put(engine, job(unique={"period": 60}), NOW)

    inside = put(engine, job(unique={"period": 60}), NOW + timedelta(seconds=59))
    assert_conflict(inside, first)
    edge = put(engine, job(unique={"period": 60}), NOW + timedelta(seconds=60))
    assert_conflict(edge, first)

    after = put(engine, job(unique={"period": 60}), NOW + timedelta(seconds=61))
    assert after.conflict is False
    assert after.id != first.id
    # The newer job now owns the next period.
    assert_conflict(put(engine, job(unique={"period": 60}), NOW + timedelta(seconds=90)), after)


@unique
def test_default_period_is_60_seconds(engine: Engine) -> None:
    first = put(engine, job(), NOW)
    assert_conflict(put(engine, job(), NOW + timedelta(seconds=60)), first)
    assert put(engine, job(), NOW + timedelta(seconds=61)).conflict is False


@unique
def test_period_none_is_forever(engine: Engine) -> None:
    first = put(engine, job(unique={"period": None}), NOW)
    later = NOW + timedelta(days=3650)
    assert_conflict(put(engine, job(unique={"period": None}), later), first)


@unique
def test_period_on_scheduled_at(engine: Engine) -> None:
    # Scheduled an hour ahead: by inserted_at it is old after a minute, by
    # scheduled_at it is still within the period.
    first = put(engine, job(scheduled_at=NOW + timedelta(hours=1), unique=True), NOW)
    later = NOW + timedelta(minutes=5)
    by_schedule = {"period": 60, "timestamp": "scheduled_at"}
    assert_conflict(put(engine, job(unique=by_schedule), later), first)
    assert put(engine, job(unique={"period": 60}), later).conflict is False


# -- fields ------------------------------------------------------------------------------


@unique
def test_a_different_queue_is_not_a_duplicate_by_default(engine: Engine) -> None:
    put(engine, job(queue="a"))
    assert put(engine, job(queue="b")).conflict is False


@unique
def test_queue_outside_fields_is_ignored(engine: Engine) -> None:
    fields = {"fields": ["worker", "args"]}
    first = put(engine, job(queue="a", unique=fields))
    assert_conflict(put(engine, job(queue="b", unique=fields)), first)


@unique
def test_worker_outside_fields_is_ignored(engine: Engine) -> None:
    fields = {"fields": ["queue", "args"]}
    first = put(engine, job(unique=fields))
    assert_conflict(put(engine, job(worker=OTHER_WORKER, unique=fields)), first)
    # With the default fields another worker's job is not a duplicate.
    assert put(engine, job(worker=OTHER_WORKER)).conflict is False


@unique
def test_args_outside_fields_are_ignored(engine: Engine) -> None:
    fields = {"fields": ["worker", "queue"]}
    first = put(engine, job({"id": 1}, unique=fields))
    assert_conflict(put(engine, job({"id": 2}, unique=fields)), first)


@unique
def test_meta_in_fields(engine: Engine) -> None:
    fields = {"fields": ["worker", "meta"]}
    first = put(engine, job({"id": 1}, meta={"tenant": "a", "n": [1]}, unique=fields))

    same_meta = put(engine, job({"id": 2}, meta={"n": [1], "tenant": "a"}, unique=fields))
    assert_conflict(same_meta, first)
    assert put(engine, job({"id": 1}, meta={"tenant": "b"}, unique=fields)).conflict is False


@unique
def test_meta_is_ignored_by_default(engine: Engine) -> None:
    first = put(engine, job({"id": 1}, meta={"trace": "x"}))
    assert_conflict(put(engine, job({"id": 1}, meta={"trace": "y"})), first)


# -- keys --------------------------------------------------------------------------------


@unique
def test_keys_compare_only_those_args(engine: Engine) -> None:
    keyed = {"keys": ["account"]}
    first = put(engine, job({"account": 7, "note": "first"}, unique=keyed))

    assert_conflict(put(engine, job({"account": 7, "note": "second"}, unique=keyed)), first)
    assert put(engine, job({"account": 8, "note": "first"}, unique=keyed)).conflict is False


@unique
def test_several_keys_must_all_be_equal(engine: Engine) -> None:
    keyed = {"keys": ["a", "b"]}
    first = put(engine, job({"a": 1, "b": 2, "c": 3}, unique=keyed))
    assert_conflict(put(engine, job({"b": 2, "a": 1}, unique=keyed)), first)
    assert put(engine, job({"a": 1, "b": 3}, unique=keyed)).conflict is False


@pytest.mark.parametrize(
    ("stored", "new", "duplicate"),
    [
        ({"k": 1}, {"k": 1}, True),
        ({"k": 1}, {"k": 1.0}, True),  # JSON numbers compare by value
        ({"k": 1.5}, {"k": 1.5}, True),
        ({"k": 1}, {"k": "1"}, False),
        ({"k": 1}, {"k": True}, False),
        ({"k": True}, {"k": True}, True),
        ({"k": False}, {"k": 0}, False),
        ({"k": "x"}, {"k": "x"}, True),
        ({"k": "x"}, {"k": "X"}, False),
        ({"k": None}, {"k": None}, True),
        ({"k": None}, {}, False),  # a missing key is not a null one
        ({}, {"k": None}, False),
        ({}, {"other": 1}, True),  # both lack the key
        ({"k": [1, 2]}, {"k": [1, 2]}, True),
        ({"k": [1, 2]}, {"k": [2, 1]}, False),
        ({"k": {"b": 1, "a": [2]}}, {"k": {"a": [2], "b": 1}}, True),
        ({"k": {"a": 1}}, {"k": '{"a":1}'}, False),  # an object is not its JSON text
        ({"k": "ü → ✓"}, {"k": "ü → ✓"}, True),
    ],
    ids=repr,
)
@unique
def test_key_values_compare_as_json_values(
    engine: Engine, stored: dict[str, Any], new: dict[str, Any], duplicate: bool
) -> None:
    keyed = {"keys": ["k"]}
    first = put(engine, job(stored, unique=keyed))
    second = put(engine, job(new, unique=keyed))
    assert second.conflict is duplicate
    assert (second.id == first.id) is duplicate


@unique
def test_keys_apply_to_meta_when_meta_is_a_field(engine: Engine) -> None:
    keyed = {"fields": ["worker", "meta"], "keys": ["tenant"]}
    first = put(engine, job({"id": 1}, meta={"tenant": "a", "trace": 1}, unique=keyed))
    assert_conflict(put(engine, job({"id": 2}, meta={"tenant": "a"}, unique=keyed)), first)
    assert put(engine, job({"id": 1}, meta={"tenant": "b"}, unique=keyed)).conflict is False


@unique
def test_keys_with_args_and_meta_need_both_equal(engine: Engine) -> None:
    keyed = {"fields": ["worker", "args", "meta"], "keys": ["id"]}
    first = put(engine, job({"id": 1}, meta={"id": "m"}, unique=keyed))
    assert_conflict(put(engine, job({"id": 1, "x": 2}, meta={"id": "m"}, unique=keyed)), first)
    assert put(engine, job({"id": 1}, meta={"id": "n"}, unique=keyed)).conflict is False


@unique
def test_odd_key_names_are_bound_not_spliced(engine: Engine) -> None:
    key = "a\"b'c.$[0] --"
    keyed = {"keys": [key]}
    first = put(engine, job({key: 1}, unique=keyed))
    assert_conflict(put(engine, job({key: 1, "x": 0}, unique=keyed)), first)
    assert put(engine, job({key: 2}, unique=keyed)).conflict is False


# -- states ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "duplicate"),
    [
        (JobState.COMPLETED, True),
        (JobState.CANCELLED, False),
        (JobState.DISCARDED, False),
    ],
)
@unique
def test_default_states_include_completed_but_not_cancelled_or_discarded(
    engine: Engine, state: JobState, duplicate: bool
) -> None:
    stored = move_to(engine, put(engine, job()), state)
    again = put(engine, job())
    assert again.conflict is duplicate
    assert (again.id == stored.id) is duplicate
    if duplicate:
        assert again.state is state


@unique
def test_executing_scheduled_and_retryable_jobs_conflict_by_default(engine: Engine) -> None:
    running = put(engine, job({"id": "running"}))
    fetch(engine, queue=running.queue)
    assert_conflict(put(engine, job({"id": "running"})), running)

    later = put(engine, job({"id": "later"}, scheduled_at=NOW + timedelta(hours=1)))
    assert later.state is JobState.SCHEDULED
    assert_conflict(put(engine, job({"id": "later"})), later)

    failed = put(engine, job({"id": "failed"}))
    fetch(engine, queue=failed.queue)
    assert failed.id is not None
    with engine.transaction() as conn:
        engine.ack_jobs(
            conn,
            [Ack(failed.id, 1, JobState.RETRYABLE, NOW, scheduled_at=NOW + timedelta(minutes=1))],
        )
    assert_conflict(put(engine, job({"id": "failed"})), failed)


@unique
def test_custom_states(engine: Engine) -> None:
    only_available = {"states": ["available", "scheduled"]}
    stored = put(engine, job(unique=only_available))
    assert_conflict(put(engine, job(unique=only_available)), stored)

    fetch(engine, queue=stored.queue)  # now executing: outside the states
    again = put(engine, job(unique=only_available))
    assert again.conflict is False
    assert again.id != stored.id


@unique
def test_states_all_includes_cancelled(engine: Engine) -> None:
    stored = move_to(engine, put(engine, job()), JobState.CANCELLED)
    assert_conflict(put(engine, job(unique={"states": "all"})), stored)


@unique
def test_states_incomplete_excludes_completed(engine: Engine) -> None:
    move_to(engine, put(engine, job()), JobState.COMPLETED)
    assert put(engine, job(unique={"states": "incomplete"})).conflict is False


# -- replace -----------------------------------------------------------------------------


@unique
def test_replace_scheduled_at_of_a_scheduled_job(engine: Engine) -> None:
    replace = {"scheduled": ["scheduled_at"]}
    first = put(engine, job(scheduled_at=NOW + timedelta(minutes=5), replace=replace))
    assert first.state is JobState.SCHEDULED

    moved = put(engine, job(scheduled_at=NOW + timedelta(minutes=30), replace=replace))
    assert_conflict(moved, first)
    assert moved.scheduled_at == NOW + timedelta(minutes=30)
    assert moved.state is JobState.SCHEDULED
    stored = get(engine, first.id)
    assert stored.scheduled_at == NOW + timedelta(minutes=30)
    assert count(engine) == 1


@unique
def test_replacing_scheduled_at_with_now_makes_the_job_available(engine: Engine) -> None:
    replace = {"scheduled": ["scheduled_at"]}
    first = put(engine, job(scheduled_at=NOW + timedelta(minutes=5), replace=replace))

    due = put(engine, job(replace=replace))  # no schedule: due now
    assert_conflict(due, first)
    assert due.state is JobState.AVAILABLE
    assert due.scheduled_at == NOW
    assert get(engine, first.id).state is JobState.AVAILABLE


@unique
def test_replacing_scheduled_at_into_the_future_schedules_an_available_job(
    engine: Engine,
) -> None:
    replace = {"available": ["scheduled_at"]}
    first = put(engine, job(replace=replace))
    later = put(engine, job(scheduled_at=NOW + timedelta(hours=2), replace=replace))
    assert_conflict(later, first)
    assert later.state is JobState.SCHEDULED
    assert get(engine, first.id).state is JobState.SCHEDULED
    assert stage(engine, NOW + timedelta(hours=2)) == {first.queue: 1}


@unique
def test_replace_args_priority_tags_meta_queue_and_worker(engine: Engine) -> None:
    spec = {"keys": ["id"], "fields": ["args"]}
    replace = {"available": ["args", "priority", "tags", "meta", "queue", "worker", "max_attempts"]}
    first = put(engine, job({"id": 1, "v": 1}, unique=spec, replace=replace))

    new = job(
        {"id": 1, "v": 2},
        worker=OTHER_WORKER,
        queue="elsewhere",
        priority=4,
        tags=["b", "a"],
        meta={"m": True},
        max_attempts=3,
        unique=spec,
        replace=replace,
    )
    replaced = put(engine, new)
    assert_conflict(replaced, first)
    stored = get(engine, first.id)
    for found in (replaced, stored):
        assert found.args == {"id": 1, "v": 2}
        assert found.priority == 4
        assert found.tags == ["a", "b"]
        assert found.meta == {"m": True}
        assert found.queue == "elsewhere"
        assert found.worker == OTHER_WORKER
        assert found.max_attempts == 3
        assert found.inserted_at == first.inserted_at
        assert found.state is JobState.AVAILABLE


@unique
def test_replace_only_applies_to_the_states_it_names(engine: Engine) -> None:
    replace = {"scheduled": ["args"], "retryable": ["priority"]}
    spec = {"keys": ["id"]}
    first = put(engine, job({"id": 1, "v": 1}, unique=spec, replace=replace))  # available

    again = put(engine, job({"id": 1, "v": 2}, priority=5, unique=spec, replace=replace))
    assert_conflict(again, first)
    assert again.args == {"id": 1, "v": 1}
    assert again.priority == 0
    assert get(engine, first.id).args == {"id": 1, "v": 1}


@unique
def test_replace_on_an_executing_job(engine: Engine) -> None:
    replace = {"executing": ["meta"]}
    first = put(engine, job(replace=replace))
    fetch(engine, queue=first.queue)

    replaced = put(engine, job(meta={"again": 1}, replace=replace))
    assert_conflict(replaced, first)
    assert replaced.state is JobState.EXECUTING
    assert replaced.attempt == 1
    assert get(engine, first.id).meta == {"again": 1}


@unique
def test_replaced_max_attempts_never_drops_below_attempts_made(engine: Engine) -> None:
    replace = {"retryable": ["max_attempts"]}
    spec = {"states": ["retryable"]}
    stored = put(
        engine,
        job(state=JobState.RETRYABLE, attempt=3, max_attempts=5, unique=spec, replace=replace),
    )
    assert stored.state is JobState.RETRYABLE

    replaced = put(engine, job(max_attempts=1, unique=spec, replace=replace))
    assert_conflict(replaced, stored)
    assert replaced.max_attempts == 3
    assert replaced.attempt == 3


# -- batches -----------------------------------------------------------------------------


@unique
def test_enqueue_many_checks_unique_jobs_in_order_and_keeps_the_input_order(
    engine: Engine,
) -> None:
    earlier = put(engine, job({"id": "stored"}))
    batch = [
        job({"n": 1}, unique=None),
        job({"id": "a"}),
        job({"n": 2}, unique=None),
        job({"id": "a"}),  # duplicate of the second, in the same batch
        job({"id": "stored"}),  # duplicate of a job stored before
        job({"id": "b"}),
        job({"n": 3}, unique=None),
        job({"n": 4}, unique=None),
    ]
    results = insert(engine, batch)

    assert [found.args for found in results] == [new.args for new in batch]
    assert [found.conflict for found in results] == [
        False,
        False,
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    assert results[3].id == results[1].id
    assert results[4].id == earlier.id
    inserted = [found.id or 0 for found in results if not found.conflict]
    assert inserted == sorted(inserted)
    assert len(set(inserted)) == 6
    assert count(engine) == 7


@unique
def test_a_batch_of_only_equal_unique_jobs_inserts_one(engine: Engine) -> None:
    results = insert(engine, [job() for _ in range(25)])
    assert len({found.id for found in results}) == 1
    assert [found.conflict for found in results] == [False] + [True] * 24
    assert count(engine) == 1


@unique
def test_a_plain_job_earlier_in_the_batch_counts_as_stored(engine: Engine) -> None:
    results = insert(engine, [job({"id": 1}, unique=None), job({"id": 1})])
    assert results[1].conflict is True
    assert results[1].id == results[0].id


# -- transactions ------------------------------------------------------------------------


class Rollback(Exception):
    pass


@pytest.mark.requires(Capability.UNIQUE, Capability.TRANSACTIONAL)
def test_a_rolled_back_unique_insert_leaves_nothing_and_blocks_nothing(engine: Engine) -> None:
    inside: list[Job] = []

    def insert_then_fail() -> None:
        with engine.transaction() as conn:
            inside.extend(engine.insert_jobs(conn, [job()], NOW))
            raise Rollback

    with pytest.raises(Rollback):
        insert_then_fail()
    assert inside[0].conflict is False
    assert count(engine) == 0

    after = put(engine, job())
    assert after.conflict is False
    assert count(engine) == 1


# -- engines without storage ---------------------------------------------------------------


@inline
def test_inline_runs_every_unique_job(engine: Engine) -> None:
    first, second = insert(engine, [job(), job()])
    third = put(engine, job())
    for ran in (first, second, third):
        assert ran.state is JobState.COMPLETED
        assert ran.conflict is False
    assert len({first.id, second.id, third.id}) == 3
