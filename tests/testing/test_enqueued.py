"""``all_enqueued`` / ``assert_enqueued`` / ``refute_enqueued`` on Lite and Basic."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

import oban
from oban import EngineError, InstanceNotFoundError, Job, JobState, JobValidationError
from oban.testing import (
    all_enqueued,
    all_enqueued_async,
    assert_enqueued,
    assert_enqueued_async,
    mode,
    refute_enqueued,
    refute_enqueued_async,
)
from tests.conftest import SqlDatabase
from tests.testing.workers import Fails, Ok, Recorder, add

OK = "tests.testing.workers.Ok"


def test_enqueued_means_available_or_scheduled(database: SqlDatabase) -> None:
    instance = database.make_oban()
    available = Ok.enqueue({"n": 1})
    scheduled = Ok.enqueue({"n": 2}, schedule_in=60)
    cancelled = Ok.enqueue({"n": 3})
    instance.cancel_job(cancelled.id or 0)
    retry_at = datetime.now(timezone.utc) + timedelta(minutes=5)
    instance.enqueue(Job(OK, state="retryable", scheduled_at=retry_at, args={"n": 4}))
    assert [job.id for job in all_enqueued()] == [scheduled.id, available.id]
    assert [job.args["n"] for job in all_enqueued(state="retryable")] == [4]
    assert len(all_enqueued(state=["cancelled", "retryable"])) == 2


def test_filters_match_worker_queue_args_meta_tags_and_priority(database: SqlDatabase) -> None:
    database.make_oban()
    wanted = Ok.enqueue(
        {"id": 1, "kind": "a", "nested": {"x": [1, 2]}},
        queue="mailers",
        meta={"trace": "t1", "n": 1},
        tags=["Email", "vip"],
        priority=2,
    )
    Ok.enqueue({"id": 2, "kind": "a"}, queue="mailers", tags=["email"])
    Recorder.enqueue({"id": 1, "kind": "a"})
    add.enqueue(1, 2)

    def ids(**filters: object) -> list[int | None]:
        return [job.id for job in all_enqueued(**filters)]  # type: ignore[arg-type]  # filters vary by test

    assert ids(worker=Ok, args={"id": 1}) == [wanted.id]
    assert ids(worker=OK, queue="mailers", args={"kind": "a"})[-1] == wanted.id
    assert len(ids(args={"kind": "a"})) == 3
    assert ids(args={"nested": {"x": [1, 2]}}) == [wanted.id]
    assert ids(args={"nested": {"x": [1]}}) == []  # nested values compare whole
    assert ids(args={"id": 1, "kind": "b"}) == []
    assert ids(meta={"trace": "t1"}) == [wanted.id]
    assert ids(tags=["VIP"]) == [wanted.id]
    assert len(ids(tags=["email"])) == 2
    assert ids(priority=2) == [wanted.id]
    assert len(ids(worker=add)) == 1
    assert ids(worker=add, args={"a": 1, "b": 2}) == ids(worker=add)


def test_args_compare_as_json(database: SqlDatabase) -> None:
    database.make_oban()
    job = Ok.enqueue({"flag": True, "count": 1, "pair": [1, 2]})
    assert all_enqueued(args={"flag": 1}) == []
    assert all_enqueued(args={"count": True}) == []
    assert [j.id for j in all_enqueued(args={"count": 1.0, "pair": (1, 2)})] == [job.id]


def test_scheduled_at_matches_within_a_second_or_the_given_tolerance(
    database: SqlDatabase,
) -> None:
    database.make_oban()
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    job = Ok.enqueue({}, scheduled_at=at)
    assert [j.id for j in all_enqueued(scheduled_at=at + timedelta(milliseconds=900))] == [job.id]
    assert all_enqueued(scheduled_at=at + timedelta(seconds=2)) == []
    assert len(all_enqueued(scheduled_at=(at + timedelta(seconds=2), 5))) == 1
    assert len(all_enqueued(scheduled_at=(at, 0))) == 1
    assert all_enqueued(scheduled_at=(at + timedelta(microseconds=1), 0)) == []
    naive = at.replace(tzinfo=None)
    assert len(all_enqueued(scheduled_at=naive)) == 1  # naive means UTC


def test_assert_enqueued_returns_the_matches(database: SqlDatabase) -> None:
    database.make_oban()
    first = Ok.enqueue({"id": 1})
    second = Ok.enqueue({"id": 1, "more": True})
    assert [job.id for job in assert_enqueued(worker=Ok, args={"id": 1})] == [second.id, first.id]


def test_a_near_miss_lists_what_was_enqueued(database: SqlDatabase) -> None:
    database.make_oban()
    Ok.enqueue({"id": 2}, queue="mailers")
    Fails.enqueue({"id": 1}, schedule_in=60)
    with pytest.raises(AssertionError) as raised:
        assert_enqueued(worker=Ok, args={"id": 1})
    message = str(raised.value)
    assert "expected an enqueued job matching worker='tests.testing.workers.Ok'" in message
    assert "args={'id': 1}" in message
    assert "tests.testing.workers.Ok queue='mailers' args={'id': 2} state=available" in message
    assert "tests.testing.workers.Fails queue='default' args={'id': 1} state=scheduled" in message


def test_a_miss_with_nothing_enqueued_says_so(database: SqlDatabase) -> None:
    database.make_oban()
    with pytest.raises(
        AssertionError, match=r"No jobs were enqueued \(states available, scheduled\)"
    ):
        assert_enqueued(worker=Ok)


def test_a_long_near_miss_is_cut_short(database: SqlDatabase) -> None:
    instance = database.make_oban()
    instance.enqueue_many([Ok.new({"n": n}) for n in range(30)])
    with pytest.raises(AssertionError, match=r"\.\.\. and 1 more") as raised:
        assert_enqueued(args={"n": 99})
    assert str(raised.value).count("tests.testing.workers.Ok queue=") == 20


def test_refute_enqueued_lists_the_jobs_that_match(database: SqlDatabase) -> None:
    database.make_oban()
    refute_enqueued(worker=Ok)
    Ok.enqueue({"id": 7})
    refute_enqueued(worker=Ok, args={"id": 8})
    with pytest.raises(AssertionError, match=r"found 1:\n  tests.testing.workers.Ok .*'id': 7"):
        refute_enqueued(worker=Ok)


def test_every_page_is_read(database: SqlDatabase) -> None:
    instance = database.make_oban()
    instance.enqueue_many([Ok.new({"n": n}) for n in range(oban.oban.MAX_PAGE + 5)])
    assert len(all_enqueued()) == oban.oban.MAX_PAGE + 5
    assert [job.args["n"] for job in all_enqueued(args={"n": 3})] == [3]


def test_an_explicit_instance_is_used_instead_of_the_default(database: SqlDatabase) -> None:
    default = database.make_oban()
    other = database.make_oban(name="other")
    other.enqueue(Ok.new({"on": "other"}))
    assert len(all_enqueued(other)) == 1
    assert len(all_enqueued(default)) == 1  # the same database
    assert all_enqueued(other)[0].args == {"on": "other"}


def test_without_an_instance_the_error_says_how_to_make_one() -> None:
    with pytest.raises(InstanceNotFoundError, match="no Oban instance named 'oban'"):
        all_enqueued()


def test_an_inline_instance_stores_nothing_and_says_to_use_manual_mode() -> None:
    instance = oban.Oban(testing="inline")
    for helper in (all_enqueued, assert_enqueued, refute_enqueued):
        with pytest.raises(EngineError, match="manual"):
            helper(instance)


def test_an_inline_block_on_a_stored_instance_is_refused_too(database: SqlDatabase) -> None:
    instance = database.make_oban()
    with mode("inline", instance), pytest.raises(EngineError, match="stores nothing"):
        all_enqueued()


@pytest.mark.parametrize(
    ("filters", "words"),
    [
        ({"priority": 10}, "priority"),
        ({"priority": True}, "priority"),
        ({"state": "nope"}, "state"),
        ({"queue": ""}, "queue"),
        ({"worker": 42}, "worker"),
        ({"args": ["id", 1]}, "args must be a dict"),
        ({"meta": {"x": object()}}, "meta must be JSON"),
        ({"tags": "email"}, "tags"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"scheduled_at": (datetime.now(timezone.utc), -1)}, "tolerance"),
        ({"scheduled_at": (datetime.now(timezone.utc),)}, "tuple"),
    ],
    ids=lambda value: str(value)[:30] if isinstance(value, dict) else str(value),
)
def test_bad_filters_raise_before_any_query(filters: dict[str, object], words: str) -> None:
    instance = oban.Oban(testing="inline")  # never reached: the filters fail first
    with pytest.raises(JobValidationError, match=words):
        all_enqueued(instance, **filters)  # type: ignore[arg-type]  # the bad input under test


def test_an_oban_that_is_not_an_oban_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Oban instance"):
        all_enqueued("oban")  # type: ignore[arg-type]  # the bad input under test


@pytest.mark.anyio
async def test_the_async_twins(database: SqlDatabase) -> None:
    instance = database.make_oban()
    job = await Ok.enqueue_async({"id": 1}, queue="q")
    assert [j.id for j in await all_enqueued_async(instance, queue="q")] == [job.id]
    assert [j.id for j in await assert_enqueued_async(worker=Ok, args={"id": 1})] == [job.id]
    await refute_enqueued_async(worker=Ok, args={"id": 2})
    with pytest.raises(AssertionError, match=re.escape("args={'id': 1} state=available")):
        await assert_enqueued_async(worker=Ok, args={"id": 2})
    with pytest.raises(AssertionError, match="found 1"):
        await refute_enqueued_async(worker=Ok)
    assert (await all_enqueued_async(state=JobState.COMPLETED)) == []
