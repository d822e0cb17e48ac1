"""The words of a job row: its states and the names of its fields.

Kept apart from :mod:`oban.job` so that :mod:`oban.unique`, which the job
parses its options with, can name states and fields without importing the
job (the two would otherwise import each other).
"""

from __future__ import annotations

import enum

from .errors import JobValidationError

__all__ = ["TIMESTAMP_FIELDS", "UPDATABLE_FIELDS", "JobState", "storable_text"]


def storable_text(name: str, value: str) -> str:
    """``value``, if every engine stores it as given; else a JobValidationError naming ``name``.

    A lone surrogate (``"\\ud800"``) has no UTF-8 form, so the driver would fail
    with a UnicodeEncodeError deep inside the insert; PostgreSQL refuses NUL in
    text, which SQLite would keep: refused here, the same on every engine.
    """
    if "\x00" in value:
        raise JobValidationError(
            f"{name} must not contain NUL characters (PostgreSQL cannot store them), got {value!r}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise JobValidationError(
            f"{name} must be text with a UTF-8 form (no lone surrogates), got {value!r}"
        ) from None
    return value


class JobState(str, enum.Enum):
    """Where a job is in its life.

    ``available`` jobs wait for a producer; ``scheduled`` and ``retryable`` wait
    for their ``scheduled_at``; ``executing`` run on some node; ``completed``,
    ``discarded`` (out of attempts) and ``cancelled`` are final; ``suspended``
    jobs are held back and never fetched.
    """

    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"

    def __str__(self) -> str:
        return self.value


TIMESTAMP_FIELDS = (
    "inserted_at",
    "attempted_at",
    "cancelled_at",
    "completed_at",
    "discarded_at",
    "scheduled_at",
)

UPDATABLE_FIELDS = frozenset(
    {
        "args",
        "max_attempts",
        "meta",
        "priority",
        "queue",
        "scheduled_at",
        "schedule_in",
        "tags",
        "worker",
    }
)
"""Fields a caller may set through ``Job.update()`` or ``Worker.new(**opts)``."""
