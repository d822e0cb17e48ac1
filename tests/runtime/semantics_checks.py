"""Checks of a job's row against the reference rules for results, backoff and timeouts.

Shared by the runtime tests (Lite, Basic) and the Inline tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from oban import Job, JobState
from tests.runtime import semantics_workers as w

ERROR_KEYS = {"attempt", "at", "error"}


def parse_at(entry: dict[str, Any]) -> datetime:
    """An errors entry's ``at``: ISO-8601 UTC with a ``Z``, as Elixir Oban writes it."""
    at = entry["at"]
    assert isinstance(at, str)
    assert at.endswith("Z"), at
    parsed = datetime.fromisoformat(at[:-1] + "+00:00")
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def default_window(attempt: int, max_attempts: int) -> tuple[float, float]:
    """Bounds of the default backoff: ``15 + 2**attempt`` plus up to 10 %."""
    exponent = attempt if max_attempts <= 20 else round(attempt / max_attempts * 20)
    base = 15 + 2**exponent
    return base, base * 1.1


def assert_error_entry(entry: dict[str, Any], attempt: int, *texts: str) -> datetime:
    assert set(entry) == ERROR_KEYS
    assert entry["attempt"] == attempt
    assert isinstance(entry["error"], str)
    for text in texts:
        assert text in entry["error"], (text, entry["error"])
    return parse_at(entry)


def assert_backoff(job: Job, at: datetime, low: float, high: float) -> None:
    assert job.scheduled_at is not None
    delay = (job.scheduled_at - at).total_seconds()
    assert low <= delay <= high, (delay, low, high)


FAILURE_TEXT = {
    "raise": ("Traceback (most recent call last)", "ValueError", "step failed on attempt {n}"),
    "raise_runtime": ("Traceback", "RuntimeError", "runtime error on attempt {n}"),
    "record_too_big": (
        "Traceback",
        "JobValidationError",
        f"recorded value is 102 bytes, over the limit of {w.RECORD_LIMIT}",
    ),
    "bad_snooze": ("JobValidationError", "Snooze(seconds=-5)", "must not be negative"),
}


def check_attempt(before: Job, after: Job, step: str, started: datetime, seen: datetime) -> None:
    """The row after one attempt against the reference rules, given the row before it."""
    n = before.attempt + 1
    assert after.attempt == n
    assert after.attempted_at is not None
    assert started <= after.attempted_at <= seen
    assert after.args == before.args

    if step in ("none", "value", "record"):
        assert after.state is JobState.COMPLETED, after.errors
        assert after.completed_at is not None
        assert after.attempted_at <= after.completed_at <= seen
        assert after.scheduled_at == before.scheduled_at
        meta = before.meta
        if step == "record":
            expected = {"attempt": n, "args": after.args, "nested": [1, 2.5, None, True]}
            meta = {**before.meta, "recorded": True, "return": expected}
        assert (after.max_attempts, after.meta, after.errors) == (
            before.max_attempts,
            meta,
            before.errors,
        )
    elif step == "snooze":
        assert after.state is JobState.SCHEDULED
        assert after.max_attempts == before.max_attempts + 1
        assert after.meta == {**before.meta, "snoozed": before.meta.get("snoozed", 0) + 1}
        assert after.errors == before.errors
        assert after.scheduled_at is not None
        snooze = timedelta(seconds=w.SNOOZE_SECONDS)
        assert after.attempted_at + snooze <= after.scheduled_at <= seen + snooze
    elif step == "cancel":
        assert after.state is JobState.CANCELLED
        assert (after.max_attempts, after.meta) == (before.max_attempts, before.meta)
        assert after.errors[:-1] == before.errors
        entry = after.errors[-1]
        at = assert_error_entry(entry, n)
        assert entry["error"] == f"cancelled on attempt {n}"
        assert after.cancelled_at == at
        assert after.attempted_at <= at <= seen
    else:
        texts = [text.format(n=n) for text in FAILURE_TEXT[step]]
        assert (after.max_attempts, after.meta) == (before.max_attempts, before.meta)
        assert after.errors[:-1] == before.errors
        at = assert_error_entry(after.errors[-1], n, *texts)
        assert after.attempted_at <= at <= seen
        if n < after.max_attempts:
            assert after.state is JobState.RETRYABLE
            assert_backoff(after, at, *default_window(n, after.max_attempts))
        else:
            assert after.state is JobState.DISCARDED
            assert after.discarded_at == at
    for name, value in (("completed_at", "completed"), ("cancelled_at", "cancelled")):
        if after.state.value != value:
            assert getattr(after, name) is None, name


def assert_timed_out(
    job: Job, limit: float, *, thread: bool = False, clock_at_enqueue: bool = False
) -> None:
    """Failed by its timeout; ``clock_at_enqueue``: Inline stamps the whole attempt
    with the enqueue time, so the recorded times cannot show the wait."""
    assert job.state is JobState.RETRYABLE, job.errors
    assert job.attempt == 1
    assert job.completed_at is None
    assert len(job.errors) == 1
    at = assert_error_entry(
        job.errors[0], 1, "JobTimeoutError", f"{job.worker} timed out after {limit:g}s"
    )
    assert ("cannot be killed" in job.errors[0]["error"]) is thread
    assert job.attempted_at is not None
    if not clock_at_enqueue:
        assert at - job.attempted_at >= timedelta(seconds=limit)  # never before the deadline
    assert_backoff(job, at, 3600, 3600)
