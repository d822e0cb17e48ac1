"""From what ``process`` did to what is written back: the ``Ack`` and pure functions.

The clock and the backoff are passed in, so every rule here is tested without
a database, a loop or a sleep.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from .errors import JobValidationError
from .job import Job, JobState
from .results import Cancel, Record, Snooze, check_snooze

__all__ = ["Ack", "error_entry", "format_error", "outcome"]

Backoff = Callable[[Job], int]


@dataclass(frozen=True, slots=True)
class Ack:
    """The recorded end of one attempt: what to write back to the job's row.

    Made by the pure outcome logic, written by ``Engine.ack_jobs``, and only
    applied while the row is still ``executing`` the same attempt, so a late or
    duplicate ack never clobbers a newer attempt.
    """

    job_id: int
    attempt: int
    state: JobState
    at: datetime
    scheduled_at: datetime | None = None
    error: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    snoozed: bool = False

    def apply(self, job: Job) -> Job:
        """Update an in-memory job as the database row would be updated."""
        job.state = self.state
        if self.error is not None:
            job.errors = [*job.errors, self.error]
        if self.meta:
            job.meta = {**job.meta, **self.meta}
        if self.scheduled_at is not None:
            job.scheduled_at = self.scheduled_at
        if self.snoozed:
            job.max_attempts += 1
        if self.state is JobState.COMPLETED:
            job.completed_at = self.at
        elif self.state is JobState.DISCARDED:
            job.discarded_at = self.at
        elif self.state is JobState.CANCELLED:
            job.cancelled_at = self.at
        return job


MAX_DELAY = timedelta(days=3650)
"""The furthest a retry or snooze is put off; larger requests are capped here so
the arithmetic can never overflow (an outcome must always be writable)."""


def _later(now: datetime, seconds: float) -> datetime:
    try:
        delay = timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        delay = MAX_DELAY
    return now + min(delay, MAX_DELAY)


def format_error(error: BaseException | str) -> str:
    """Exception type, message and traceback, as one text (or a plain reason)."""
    if isinstance(error, str):
        return error
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


def iso(at: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, as Elixir Oban writes ``at``."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_entry(attempt: int, at: datetime, error: BaseException | str) -> dict[str, Any]:
    """One element of ``errors``: ``{"attempt", "at", "error"}``."""
    return {"attempt": attempt, "at": iso(at), "error": format_error(error)}


def _count(value: object) -> int:
    """A counter kept in meta; anything but a non-negative integer counts as 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def _failure(job: Job, error: BaseException | str, now: datetime, backoff: Backoff) -> Ack:
    entry = error_entry(job.attempt, now, error)
    if job.attempt >= job.max_attempts:
        return Ack(job.id or 0, job.attempt, JobState.DISCARDED, now, error=entry)
    return Ack(
        job.id or 0,
        job.attempt,
        JobState.RETRYABLE,
        now,
        scheduled_at=_later(now, backoff(job)),
        error=entry,
    )


def outcome(job: Job, result: object, *, now: datetime, backoff: Backoff) -> Ack:
    """The ack for an attempt of ``job`` that returned or raised ``result``.

    - an exception: ``retryable`` after ``backoff(job)`` seconds, or
      ``discarded`` when it was the last attempt; the error is appended;
    - ``Cancel(reason)``: ``cancelled``, the reason appended to errors;
    - ``Snooze(s)``: ``scheduled`` in ``s`` seconds, ``max_attempts + 1``,
      ``meta["snoozed"]`` counted;
    - ``Record(v)``: ``completed`` with ``v`` kept in ``meta["return"]``;
    - anything else: ``completed``.
    """
    job_id = job.id or 0
    if isinstance(result, BaseException):
        return _failure(job, result, now, backoff)
    if isinstance(result, Cancel):
        entry = error_entry(job.attempt, now, str(result.reason))
        return Ack(job_id, job.attempt, JobState.CANCELLED, now, error=entry)
    if isinstance(result, Snooze):
        try:
            check_snooze(result.seconds)
        except JobValidationError as exc:
            invalid = JobValidationError(f"process() of {job.worker} returned {result!r}: {exc}")
            return _failure(job, invalid, now, backoff)
        return Ack(
            job_id,
            job.attempt,
            JobState.SCHEDULED,
            now,
            scheduled_at=_later(now, result.seconds),
            meta={"snoozed": _count(job.meta.get("snoozed")) + 1},
            snoozed=True,
        )
    if isinstance(result, Record):
        return Ack(
            job_id,
            job.attempt,
            JobState.COMPLETED,
            now,
            meta={"recorded": True, "return": orjson.loads(result.encoded)},
        )
    return Ack(job_id, job.attempt, JobState.COMPLETED, now)
