"""outcome(job, result, now=, backoff=): what one attempt's result writes back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import Cancel, Job, JobState, Record, Snooze
from oban.outcomes import MAX_DELAY, Ack, outcome

NOW = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
BACKOFF = 42
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def fixed_backoff(job: Job) -> int:
    return BACKOFF


def executing(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": 11,
        "state": "executing",
        "attempt": 1,
        "max_attempts": 3,
        "attempted_at": NOW - timedelta(seconds=1),
    }
    values.update(fields)
    return Job("app.jobs.Mailer", **values)


def run(job: Job, result: object) -> Ack:
    return outcome(job, result, now=NOW, backoff=fixed_backoff)


def raised(exc: Exception) -> Exception:
    """The exception with a real traceback, as a worker would have raised it."""
    try:
        raise exc
    except Exception as caught:
        return caught


# -- completed ----------------------------------------------------------------------------


@pytest.mark.parametrize("result", [None, 0, "done", {"a": 1}, [1, 2], False], ids=repr)
def test_plain_values_complete(result: object) -> None:
    ack = run(executing(), result)
    assert ack.state is JobState.COMPLETED
    assert ack.job_id == 11
    assert ack.attempt == 1
    assert ack.at == NOW
    assert ack.error is None
    assert ack.scheduled_at is None
    assert ack.meta == {}
    assert ack.snoozed is False


def test_completed_apply_sets_completed_at() -> None:
    job = executing()
    run(job, None).apply(job)
    assert job.state is JobState.COMPLETED
    assert job.completed_at == NOW
    assert job.errors == []


# -- exceptions ---------------------------------------------------------------------------


def test_exception_is_retryable_after_the_backoff() -> None:
    ack = run(executing(attempt=1, max_attempts=3), raised(ValueError("bad input 123")))
    assert ack.state is JobState.RETRYABLE
    assert ack.scheduled_at == NOW + timedelta(seconds=BACKOFF)
    assert ack.at == NOW


def test_the_backoff_sees_the_job() -> None:
    seen: list[Job] = []

    def backoff(job: Job) -> int:
        seen.append(job)
        return job.attempt * 100

    job = executing(attempt=2)
    ack = outcome(job, raised(RuntimeError("x")), now=NOW, backoff=backoff)
    assert seen == [job]
    assert ack.scheduled_at == NOW + timedelta(seconds=200)


def test_exception_error_entry() -> None:
    ack = run(executing(attempt=2), raised(ValueError("bad input 123")))
    assert ack.error is not None
    assert set(ack.error) == {"attempt", "at", "error"}
    assert ack.error["attempt"] == 2
    assert ISO_Z.match(ack.error["at"]), ack.error["at"]
    assert ack.error["at"].startswith("2030-05-06T07:08:09")
    text = ack.error["error"]
    assert "ValueError" in text
    assert "bad input 123" in text
    assert "Traceback (most recent call last)" in text
    assert "raised" in text  # the function that raised appears in the traceback


def test_exception_without_traceback_still_names_type_and_message() -> None:
    ack = run(executing(), KeyError("missing"))
    assert ack.error is not None
    assert "KeyError" in ack.error["error"]
    assert "missing" in ack.error["error"]


def test_last_attempt_is_discarded() -> None:
    ack = run(executing(attempt=3, max_attempts=3), raised(RuntimeError("boom")))
    assert ack.state is JobState.DISCARDED
    assert ack.scheduled_at is None
    assert ack.error is not None
    assert ack.error["attempt"] == 3
    assert "boom" in ack.error["error"]


def test_single_attempt_job_is_discarded_on_failure() -> None:
    ack = run(executing(attempt=1, max_attempts=1), raised(RuntimeError("once")))
    assert ack.state is JobState.DISCARDED


def test_retryable_apply_appends_the_error_and_reschedules() -> None:
    earlier = {"attempt": 1, "at": "2030-05-06T07:00:00.000000Z", "error": "first"}
    job = executing(attempt=2, errors=[earlier])
    run(job, raised(RuntimeError("second"))).apply(job)
    assert job.state is JobState.RETRYABLE
    assert job.scheduled_at == NOW + timedelta(seconds=BACKOFF)
    assert len(job.errors) == 2
    assert job.errors[0] == earlier
    assert "second" in job.errors[1]["error"]
    assert job.completed_at is None
    assert job.discarded_at is None


def test_discarded_apply_sets_discarded_at() -> None:
    job = executing(attempt=3, max_attempts=3)
    run(job, raised(RuntimeError("boom"))).apply(job)
    assert job.state is JobState.DISCARDED
    assert job.discarded_at == NOW
    assert len(job.errors) == 1


# -- Cancel -------------------------------------------------------------------------------


def test_cancel_is_cancelled_with_the_reason_in_error() -> None:
    ack = run(executing(attempt=2), Cancel("user deleted"))
    assert ack.state is JobState.CANCELLED
    assert ack.scheduled_at is None
    assert ack.error is not None
    assert ack.error["attempt"] == 2
    assert ack.error["error"] == "user deleted"
    assert ISO_Z.match(ack.error["at"])


def test_cancel_on_the_last_attempt_is_still_cancelled() -> None:
    assert run(executing(attempt=3, max_attempts=3), Cancel("x")).state is JobState.CANCELLED


def test_cancel_apply_sets_cancelled_at_and_appends_the_reason() -> None:
    job = executing()
    run(job, Cancel("no longer needed")).apply(job)
    assert job.state is JobState.CANCELLED
    assert job.cancelled_at == NOW
    assert [entry["error"] for entry in job.errors] == ["no longer needed"]


# -- Snooze -------------------------------------------------------------------------------


def test_snooze_schedules_later_and_counts() -> None:
    ack = run(executing(), Snooze(30))
    assert ack.state is JobState.SCHEDULED
    assert ack.scheduled_at == NOW + timedelta(seconds=30)
    assert ack.snoozed is True
    assert ack.meta == {"snoozed": 1}
    assert ack.error is None


def test_snooze_count_continues_from_existing_meta() -> None:
    ack = run(executing(meta={"snoozed": 2, "other": "kept"}), Snooze(5))
    assert ack.meta == {"snoozed": 3}


def test_snooze_on_the_last_attempt_is_not_discarded() -> None:
    ack = run(executing(attempt=3, max_attempts=3), Snooze(1))
    assert ack.state is JobState.SCHEDULED


def test_snooze_apply_gives_back_the_attempt() -> None:
    job = executing(attempt=3, max_attempts=3, meta={"snoozed": 1, "other": "kept"})
    run(job, Snooze(30)).apply(job)
    assert job.state is JobState.SCHEDULED
    assert job.scheduled_at == NOW + timedelta(seconds=30)
    assert job.max_attempts == 4
    assert job.meta == {"snoozed": 2, "other": "kept"}
    assert job.errors == []
    assert job.completed_at is None


# -- Record -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"total": 3}, [1, "a"], "text", 7, None], ids=repr)
def test_record_completes_and_keeps_the_value(value: object) -> None:
    ack = run(executing(), Record(value))
    assert ack.state is JobState.COMPLETED
    assert ack.meta == {"recorded": True, "return": value}
    assert ack.error is None


def test_record_value_is_json_round_tripped() -> None:
    ack = run(executing(), Record({"pair": (1, 2)}))
    assert ack.meta == {"recorded": True, "return": {"pair": [1, 2]}}


def test_record_apply_merges_meta_and_sets_completed_at() -> None:
    job = executing(meta={"trace": "abc"})
    run(job, Record({"n": 1})).apply(job)
    assert job.state is JobState.COMPLETED
    assert job.completed_at == NOW
    assert job.meta == {"trace": "abc", "recorded": True, "return": {"n": 1}}


# -- misc ---------------------------------------------------------------------------------


def test_unsaved_job_acks_with_id_zero() -> None:
    assert run(executing(id=None), None).job_id == 0


def test_outcome_does_not_touch_the_job() -> None:
    job = executing(meta={"snoozed": 1})
    for result in [None, Snooze(1), Cancel("c"), Record(1), raised(RuntimeError("e"))]:
        run(job, result)
    assert job.state is JobState.EXECUTING
    assert job.meta == {"snoozed": 1}
    assert job.errors == []
    assert job.max_attempts == 3


# -- delays too large to represent -------------------------------------------------------


def test_a_huge_snooze_is_capped_not_an_overflow() -> None:
    ack = run(executing(), Snooze(1e12))
    assert ack.state is JobState.SCHEDULED
    assert ack.scheduled_at == NOW + MAX_DELAY


def test_a_huge_custom_backoff_is_capped_not_an_overflow() -> None:
    ack = outcome(executing(), raised(RuntimeError("boom")), now=NOW, backoff=lambda job: 10**30)
    assert ack.state is JobState.RETRYABLE
    assert ack.scheduled_at == NOW + MAX_DELAY
