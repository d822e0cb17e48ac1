"""The words of a job row: its states and the names of its fields.

Kept apart from :mod:`oban.job` so that :mod:`oban.unique`, which the job
parses its options with, can name states and fields without importing the
job (the two would otherwise import each other).
"""

from __future__ import annotations

import enum

__all__ = ["TIMESTAMP_FIELDS", "UPDATABLE_FIELDS", "JobState"]


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
