"""Job construction: validation names the bad field; normalisation is what a worker reads."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import Job, JobState, JobValidationError


class NotJson:
    pass


def make(**fields: Any) -> Job:
    return Job("app.jobs.Mailer", **fields)


# -- defaults -----------------------------------------------------------------------------


def test_defaults() -> None:
    job = make()
    assert job.worker == "app.jobs.Mailer"
    assert job.queue == "default"
    assert job.max_attempts == 20
    assert job.priority == 0
    assert job.attempt == 0
    assert job.state is JobState.AVAILABLE
    assert job.args == {}
    assert job.meta == {}
    assert job.tags == []
    assert job.errors == []
    assert job.id is None
    assert job.scheduled_at is None
    assert job.conflict is False


def test_cancelled_is_false_by_default() -> None:
    assert make().cancelled() is False


def test_cancelled_follows_the_cancellation_event() -> None:
    job = make()
    event = threading.Event()
    job._cancellation = event
    assert job.cancelled() is False
    event.set()
    assert job.cancelled() is True


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(JobValidationError, ValueError)
    with pytest.raises(ValueError, match="queue"):
        make(queue="")


def test_state_string_is_coerced_to_the_enum() -> None:
    job = make(state="scheduled")
    assert job.state is JobState.SCHEDULED
    assert str(job.state) == "scheduled"


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["", "   ", None, 3])
def test_blank_or_non_string_queue(queue: Any) -> None:
    with pytest.raises(JobValidationError, match="queue"):
        make(queue=queue)


@pytest.mark.parametrize("worker", ["", "  ", None])
def test_blank_worker(worker: Any) -> None:
    with pytest.raises(JobValidationError, match="worker"):
        Job(worker)


@pytest.mark.parametrize("max_attempts", [0, -1, 32_768, 2**70])
def test_max_attempts_must_fit_a_smallint_and_be_positive(max_attempts: int) -> None:
    with pytest.raises(JobValidationError, match="max_attempts must be from 1 to 32767"):
        make(max_attempts=max_attempts)


@pytest.mark.parametrize("max_attempts", ["5", 2.5, None, True])
def test_max_attempts_must_be_an_int(max_attempts: Any) -> None:
    with pytest.raises(JobValidationError, match="max_attempts must be an int"):
        make(max_attempts=max_attempts)


@pytest.mark.parametrize("priority", [-1, 10, 100])
def test_priority_outside_0_to_9(priority: int) -> None:
    with pytest.raises(JobValidationError, match="priority must be between 0"):
        make(priority=priority)


@pytest.mark.parametrize("priority", ["1", 1.0, None])
def test_priority_must_be_an_int(priority: Any) -> None:
    with pytest.raises(JobValidationError, match="priority must be an int"):
        make(priority=priority)


@pytest.mark.parametrize("priority", [0, 9])
def test_priority_bounds_are_inclusive(priority: int) -> None:
    assert make(priority=priority).priority == priority


@pytest.mark.parametrize("attempt", [-1, 2**70])
def test_attempt_out_of_range(attempt: int) -> None:
    with pytest.raises(JobValidationError, match="attempt must be from 0 to 32767"):
        make(attempt=attempt)


@pytest.mark.parametrize("field", ["worker", "queue"])
@pytest.mark.parametrize("value", ["\ud800", "a\x00b"])
def test_names_every_engine_cannot_store(field: str, value: str) -> None:
    fields: dict[str, Any] = {"worker": "app.jobs.Mailer", field: value}
    with pytest.raises(JobValidationError, match=f"{field} must"):
        Job(**fields)


@pytest.mark.parametrize("tag", ["\udfff", "x\x00"])
def test_tags_every_engine_cannot_store(tag: str) -> None:
    with pytest.raises(JobValidationError, match="tags must"):
        make(tags=[tag])


def test_an_aware_scheduled_at_past_the_years_in_utc() -> None:
    far = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(JobValidationError, match="outside the years 1-9999 once in UTC"):
        make(scheduled_at=far)


@pytest.mark.parametrize("field", ["args", "meta"])
@pytest.mark.parametrize("value", [[1, 2], "ab", 5, [("a", 1)]])
def test_args_and_meta_must_be_dicts(field: str, value: Any) -> None:
    with pytest.raises(JobValidationError, match=f"{field} must be a dict"):
        make(**{field: value})


@pytest.mark.parametrize("field", ["args", "meta"])
@pytest.mark.parametrize(
    "value",
    [{"ids": {1, 2}}, {"obj": NotJson()}, {1: "int key"}, {"big": 2**70}],
    ids=["set", "object", "int-key", "big-int"],
)
def test_args_and_meta_must_be_json_encodable(field: str, value: Any) -> None:
    with pytest.raises(JobValidationError, match=f"{field} must be JSON-encodable"):
        make(**{field: value})


def test_schedule_in_and_scheduled_at_together() -> None:
    with pytest.raises(JobValidationError, match="schedule_in or scheduled_at"):
        make(schedule_in=60, scheduled_at=datetime.now(timezone.utc))


@pytest.mark.parametrize("schedule_in", [float("nan"), float("inf"), 1e20])
def test_schedule_in_out_of_range_names_the_field(schedule_in: float) -> None:
    with pytest.raises(JobValidationError, match="schedule_in must be a finite number"):
        make(schedule_in=schedule_in)


@pytest.mark.parametrize("schedule_in", ["60", True, [60]])
def test_schedule_in_of_a_wrong_type(schedule_in: Any) -> None:
    with pytest.raises(JobValidationError, match="schedule_in must be a number of seconds"):
        make(schedule_in=schedule_in)


def test_scheduled_at_must_be_a_datetime() -> None:
    with pytest.raises(JobValidationError, match="scheduled_at must be a datetime"):
        make(scheduled_at="2030-01-01T00:00:00Z")


def test_bad_state_string_lists_the_states() -> None:
    with pytest.raises(JobValidationError, match=r"state must be one of available, .*suspended"):
        make(state="running")


@pytest.mark.parametrize("tags", ["email", b"email", 5, object()])
def test_tags_must_be_a_list(tags: Any) -> None:
    with pytest.raises(JobValidationError, match="tags must be a list of strings"):
        make(tags=tags)


# -- normalisation ----------------------------------------------------------------------------


def test_tags_are_stripped_lowered_deduplicated_sorted_and_blanks_dropped() -> None:
    job = make(tags=["  Email ", "email", "URGENT", "", "   ", None, "b"])
    assert job.tags == ["b", "email", "urgent"]


def test_tags_accept_any_iterable() -> None:
    assert make(tags=("B", "a")).tags == ["a", "b"]


def test_args_round_trip_through_json() -> None:
    job = make(args={"pair": (1, 2), "nested": {"t": ("x",)}, "n": None})
    assert job.args == {"pair": [1, 2], "nested": {"t": ["x"]}, "n": None}
    assert isinstance(job.args["pair"], list)


def test_args_are_copied_not_aliased() -> None:
    args: dict[str, Any] = {"items": [1]}
    job = make(args=args)
    args["items"].append(2)
    args["new"] = True
    assert job.args == {"items": [1]}


def test_meta_round_trips_through_json() -> None:
    assert make(meta={"t": (1,)}).meta == {"t": [1]}


def test_naive_datetimes_are_utc() -> None:
    naive = datetime(2030, 1, 2, 3, 4, 5)
    job = make(scheduled_at=naive, inserted_at=naive)
    assert job.scheduled_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert job.scheduled_at is not None
    assert job.scheduled_at.tzinfo is timezone.utc
    assert job.inserted_at == job.scheduled_at


def test_aware_datetimes_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    job = make(scheduled_at=datetime(2030, 1, 2, 3, 0, tzinfo=plus_two))
    assert job.scheduled_at is not None
    assert job.scheduled_at.utcoffset() == timedelta(0)
    assert job.scheduled_at.tzinfo is timezone.utc
    assert job.scheduled_at.replace(tzinfo=None) == datetime(2030, 1, 2, 1, 0)


@pytest.mark.parametrize(
    ("schedule_in", "delta"),
    [
        (60, timedelta(seconds=60)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (0, timedelta(0)),
    ],
    ids=["int", "float", "timedelta", "zero"],
)
def test_schedule_in_sets_scheduled_at(schedule_in: Any, delta: timedelta) -> None:
    before = datetime.now(timezone.utc)
    job = make(schedule_in=schedule_in)
    after = datetime.now(timezone.utc)
    assert job.scheduled_at is not None
    assert before + delta <= job.scheduled_at <= after + delta
    assert job.scheduled_at.tzinfo is timezone.utc


# -- update() -----------------------------------------------------------------------------


def test_update_changes_allowed_fields_and_returns_the_job() -> None:
    job = make()
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    result = job.update(
        {
            "args": {"id": (1,)},
            "max_attempts": 3,
            "meta": {"m": 1},
            "priority": 5,
            "queue": "mailers",
            "scheduled_at": at,
            "tags": ["B", "a", "a"],
            "worker": "app.jobs.Other",
        }
    )
    assert result is job
    assert job.args == {"id": [1]}
    assert job.max_attempts == 3
    assert job.meta == {"m": 1}
    assert job.priority == 5
    assert job.queue == "mailers"
    assert job.scheduled_at == at
    assert job.tags == ["a", "b"]
    assert job.worker == "app.jobs.Other"


def test_update_does_not_mutate_the_changes_mapping() -> None:
    changes: dict[str, Any] = {"schedule_in": 10}
    make().update(changes)
    assert changes == {"schedule_in": 10}


def test_update_unknown_field_names_it_and_lists_the_allowed() -> None:
    with pytest.raises(JobValidationError, match="cannot update attempt, state; updatable fields"):
        make().update({"state": "completed", "attempt": 3})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"priority": 10}, "priority"),
        ({"queue": " "}, "queue"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"args": [1]}, "args"),
        ({"meta": {"s": {1}}}, "meta"),
        ({"tags": "one"}, "tags"),
        ({"worker": ""}, "worker"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"schedule_in": "soon"}, "schedule_in"),
    ],
)
def test_update_validates_the_result(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(JobValidationError, match=field):
        make().update(changes)


def test_update_with_schedule_in() -> None:
    job = make()
    before = datetime.now(timezone.utc)
    job.update({"schedule_in": timedelta(seconds=30)})
    after = datetime.now(timezone.utc)
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=30) <= job.scheduled_at <= after + timedelta(seconds=30)


def test_update_scheduled_at_naive_is_utc() -> None:
    job = make().update({"scheduled_at": datetime(2030, 1, 1)})
    assert job.scheduled_at == datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_update_schedule_in_and_scheduled_at_together() -> None:
    with pytest.raises(JobValidationError, match="schedule_in or scheduled_at"):
        make().update({"schedule_in": 5, "scheduled_at": datetime.now(timezone.utc)})


# -- from_row -----------------------------------------------------------------------------


def test_from_row_skips_validation() -> None:
    row = {
        "id": 7,
        "worker": "",
        "queue": "",
        "state": "completed",
        "attempt": 25,
        "max_attempts": 20,
        "priority": 42,
        "args": {"a": 1},
        "meta": {},
        "errors": [{"attempt": 1, "at": "2030-01-01T00:00:00.000000Z", "error": "boom"}],
        "tags": ["Mixed Case"],
        "attempted_by": ["node-1"],
        "inserted_at": datetime(2030, 1, 1),
        "unrelated_column": "ignored",
    }
    job = Job.from_row(row)
    assert job.id == 7
    assert job.queue == ""
    assert job.priority == 42
    assert job.state is JobState.COMPLETED
    assert job.tags == ["Mixed Case"]
    assert job.errors == row["errors"]
    assert job.attempted_by == ["node-1"]
    assert job.inserted_at == datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_repr_names_the_worker_and_state() -> None:
    text = repr(make(args={"a": 1}))
    assert "app.jobs.Mailer" in text
    assert "available" in text


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("args", {"text": "a\x00b"}, "args['text']"),
        ("meta", {"deep": [1, {"k": "\x00"}]}, "meta['deep'][1]['k']"),
        ("args", {"key\x00": 1}, "args key"),
    ],
)
def test_nul_in_args_or_meta_is_refused_naming_where_on_every_engine_alike(
    field: str, value: dict[str, object], where: str
) -> None:
    # PostgreSQL's jsonb cannot hold U+0000; SQLite would: refused when built.
    with pytest.raises(JobValidationError, match=re.escape(where)):
        Job("app.Worker", **{field: value})  # type: ignore[arg-type]


def test_an_escaped_backslash_u0000_is_ordinary_text() -> None:
    assert Job("app.Worker", args={"s": "\\u0000"}).args == {"s": "\\u0000"}
