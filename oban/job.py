"""The job: one row of ``oban_jobs``, its states and its validation.

A ``Job`` built by a user (``Job(...)``, ``Worker.new(...)``) is validated and
normalised at once, so a bad option fails where it was written, not later in a
worker thread. A job loaded from the database skips validation
(``Job.from_row``): the row is what it is.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import orjson

from .errors import JobValidationError
from .states import TIMESTAMP_FIELDS, UPDATABLE_FIELDS, JobState, storable_text
from .unique import ReplaceSpec, UniqueSpec, parse_replace, parse_unique

__all__ = ["TIMESTAMP_FIELDS", "UPDATABLE_FIELDS", "Job", "JobState", "utc_now"]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default clock)."""
    return datetime.now(timezone.utc)


def _as_utc(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise JobValidationError(
            f"{name} must be a datetime, got {type(value).__name__}: {value!r}"
        )
    # Naive timestamps are UTC: that is how the database stores them.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise JobValidationError(
            f"{name} {value.isoformat()} is outside the years 1-9999 once in UTC"
        ) from None


def _stored_utc(value: datetime) -> datetime:
    """An insert's timestamp as aware UTC (an injected clock may give another zone)."""
    return value if value.tzinfo is timezone.utc else cast("datetime", _as_utc("", value))


def _seconds(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except (ValueError, OverflowError):
            raise JobValidationError(
                f"schedule_in must be a finite number of seconds within timedelta's range, "
                f"got {value!r}"
            ) from None
    raise JobValidationError(
        "schedule_in must be a number of seconds or a timedelta, "
        f"got {type(value).__name__}: {value!r}"
    )


def _after(start: datetime, delay: timedelta) -> datetime:
    try:
        return start + delay
    except OverflowError:
        raise JobValidationError(
            f"schedule_in of {delay} from {start.isoformat()} is past the year 9999"
        ) from None


MAX_ATTEMPTS = 32_767
"""The most ``max_attempts`` (and ``attempt``) can be: the columns are SMALLINT on
PostgreSQL, as in Elixir Oban; larger values would fail inside the insert."""

JSON_TYPES = (
    "str keys; str, int, float (finite), bool, None, list, tuple and dict values; "
    "stored as JSON, so datetime/date/time become ISO 8601 strings, UUID a string, "
    "an enum its value, a dataclass a dict"
)
"""What args and meta may hold, and how the values that are not JSON are converted."""


def _non_finite(value: object, path: str) -> tuple[str, float] | None:
    """Where a NaN or infinity is inside ``value`` (JSON has neither), and which; else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, Mapping):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def _nul(value: object, path: str) -> str | None:
    """Where a string (or a key) with a NUL character is inside ``value``; else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{path} key {key!r}"
            found = _nul(item, f"{path}[{key!r}]")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _check_json(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise JobValidationError(
            f"{name} must be a dict of JSON values, got {type(value).__name__}"
        )
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise JobValidationError(f"{name} must be JSON-encodable ({JSON_TYPES}): {exc}") from exc
    # orjson writes NaN and infinities as null; only then is the walk needed.
    if b"null" in encoded:
        found = _non_finite(value, name)
        if found is not None:
            path, number = found
            raise JobValidationError(
                f"{path} is {number!r}: JSON has no NaN or infinity, so it would be stored "
                "as null; pass None, a string or a finite number"
            )
    # JSON can say NUL, PostgreSQL's jsonb cannot store it (SQLite would):
    # refused here, the same on every engine.
    if b"\\u0000" in encoded:
        found_nul = _nul(value, name)
        if found_nul is not None:
            raise JobValidationError(
                f"{found_nul} contains a NUL character, which PostgreSQL's jsonb cannot "
                "store; remove it or encode the data (base64, hex)"
            )
    # Round-trip now so the job holds exactly what a worker will read back
    # (tuples become lists, datetimes ISO strings), on every engine alike.
    decoded: dict[str, Any] = orjson.loads(encoded)
    return decoded


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise JobValidationError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    return value


# Copy only what has the right shape; anything else is kept as given so that
# validation rejects it by name (dict([...]) or list("str") would guess instead).
def _copy_dict(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else cast("dict[str, Any]", value)


def _copy_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return cast("list[Any]", value)
    return list(value)


def _normalise_tags(tags: object) -> list[str]:
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise JobValidationError(
            f"tags must be a list of strings, got {type(tags).__name__}: {tags!r}"
        )
    cleaned = {str(tag).strip().lower() for tag in tags if tag is not None}
    return sorted(storable_text("tags", tag) for tag in cleaned if tag)


class Job:
    """A unit of work: which worker runs it, with what args, when and how often.

    Build jobs with ``Worker.new(args, **opts)``; this constructor is the
    general form (the same one the official Python port offers) and validates
    every field, raising :class:`~oban.JobValidationError` (a ``ValueError``)
    that names the field at fault.

    ``schedule_in`` counts from the insert: the stored ``scheduled_at`` is the
    inserting ``Oban``'s clock plus the delay (so an injected clock governs it,
    as it governs everything else); until then ``scheduled_at`` shows the
    delay from the wall clock. ``extra`` holds data for the code handling the
    job in this process; it is never stored. A job read from a row that
    something else wrote, with args, meta, tags, errors or attempted_by that
    cannot be read (not JSON, or JSON of the wrong kind), comes back from
    ``get_job``/``list_jobs`` with those fields empty and
    ``extra["undecodable"]`` mapping each such column to what was wrong and
    what was stored; such a row is never run but ``discarded`` when fetched.

    Example:
        >>> job = Job("app.jobs.Mailer", args={"to": "a@b.c"}, queue="mailers",
        ...           schedule_in=60, tags=["Email"])
        >>> job.tags
        ['email']
    """

    __slots__ = (
        "_cancellation",
        "_delay",
        "_previewed_at",
        "args",
        "attempt",
        "attempted_at",
        "attempted_by",
        "cancelled_at",
        "completed_at",
        "conflict",
        "discarded_at",
        "errors",
        "extra",
        "id",
        "inserted_at",
        "max_attempts",
        "meta",
        "priority",
        "queue",
        "replace",
        "scheduled_at",
        "state",
        "tags",
        "unique",
        "worker",
    )

    def __init__(
        self,
        worker: str,
        *,
        id: int | None = None,
        state: JobState | str = JobState.AVAILABLE,
        queue: str = "default",
        attempt: int = 0,
        max_attempts: int = 20,
        priority: int = 0,
        args: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        tags: Iterable[str] | None = None,
        attempted_by: list[str] | None = None,
        inserted_at: datetime | None = None,
        attempted_at: datetime | None = None,
        cancelled_at: datetime | None = None,
        completed_at: datetime | None = None,
        discarded_at: datetime | None = None,
        scheduled_at: datetime | None = None,
        schedule_in: timedelta | float | None = None,
        extra: dict[str, Any] | None = None,
        unique: UniqueSpec | Mapping[str, Any] | bool | None = None,
        replace: ReplaceSpec | Mapping[str, Any] | None = None,
        _validate: bool = True,
    ) -> None:
        self.worker = worker
        self.id = id
        self.state: JobState = state  # type: ignore[assignment]  # coerced below
        self.queue = queue
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.priority = priority
        self.args: dict[str, Any] = _copy_dict(args)
        self.meta: dict[str, Any] = _copy_dict(meta)
        self.errors: list[dict[str, Any]] = list(errors) if errors else []
        self.tags: list[str] = _copy_list(tags)
        self.attempted_by: list[str] = list(attempted_by) if attempted_by else []
        self.extra: dict[str, Any] = dict(extra) if extra else {}
        self.conflict = False
        self._cancellation: threading.Event | None = None
        self.unique: UniqueSpec | None = parse_unique(unique) if unique is not None else None
        self.replace: ReplaceSpec | None = parse_replace(replace) if replace is not None else None
        self._delay: timedelta | None = None
        self._previewed_at: datetime | None = None

        if schedule_in is not None and scheduled_at is not None:
            raise JobValidationError("give either schedule_in or scheduled_at, not both")
        if schedule_in is not None:
            scheduled_at = self._schedule_in(schedule_in)

        self.inserted_at = _as_utc("inserted_at", inserted_at)
        self.attempted_at = _as_utc("attempted_at", attempted_at)
        self.cancelled_at = _as_utc("cancelled_at", cancelled_at)
        self.completed_at = _as_utc("completed_at", completed_at)
        self.discarded_at = _as_utc("discarded_at", discarded_at)
        self.scheduled_at = _as_utc("scheduled_at", scheduled_at)

        if _validate:
            self._validate()
        else:
            self.state = JobState(self.state)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a job from a stored row, trusting it (no validation)."""
        return cls(**{key: row[key] for key in _ROW_FIELDS if key in row}, _validate=False)

    @classmethod
    def from_insert(cls, values: Mapping[str, Any], job_id: int) -> Job:
        """The job an insert just stored: ``values`` are the engine's insert
        values of a job validated when it was built, ``job_id`` the new id.

        Nothing to check (states are ``JobState``, args and meta already
        round-tripped through JSON), so the fields are set directly: on a 10,000-job batch the
        general constructor took a quarter of the whole enqueue.
        """
        job = cls.__new__(cls)
        job.worker = values["worker"]
        job.id = job_id
        job.state = values["state"]
        job.queue = values["queue"]
        job.attempt = values["attempt"]
        job.max_attempts = values["max_attempts"]
        job.priority = values["priority"]
        job.args = dict(values["args"])
        job.meta = dict(values["meta"])
        job.errors = list(values["errors"])
        job.tags = list(values["tags"])
        job.attempted_by = list(values["attempted_by"])
        job.inserted_at = _stored_utc(values["inserted_at"])
        job.scheduled_at = _stored_utc(values["scheduled_at"])
        job.attempted_at = job.cancelled_at = job.completed_at = job.discarded_at = None
        job.extra = {}
        job.conflict = False
        job.unique = job.replace = None
        job._cancellation = job._delay = job._previewed_at = None
        return job

    def update(self, changes: Mapping[str, Any]) -> Job:
        """Change some fields in place, validating the result; returns ``self``.

        Accepts ``args``, ``max_attempts``, ``meta``, ``priority``, ``queue``,
        ``scheduled_at``, ``schedule_in``, ``tags`` and ``worker``.
        """
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise JobValidationError(
                f"cannot update {', '.join(sorted(unknown))}; "
                f"updatable fields: {', '.join(sorted(UPDATABLE_FIELDS))}"
            )
        values = dict(changes)
        if "schedule_in" in values and "scheduled_at" in values:
            raise JobValidationError("give either schedule_in or scheduled_at, not both")
        if "schedule_in" in values:
            values["scheduled_at"] = self._schedule_in(values.pop("schedule_in"))
        elif "scheduled_at" in values:
            self._delay = None
            values["scheduled_at"] = _as_utc("scheduled_at", values["scheduled_at"])
        for key, value in values.items():
            setattr(self, key, value)
        self._validate()
        return self

    def _schedule_in(self, value: object) -> datetime:
        """Remember the delay for the insert; show it from the wall clock until then."""
        self._delay = _seconds(value)
        self._previewed_at = _after(utc_now(), self._delay)
        return self._previewed_at

    def scheduled_for(self, now: datetime) -> datetime:
        """When this job is due if inserted at ``now`` (the inserting Oban's clock).

        ``schedule_in`` counts from ``now``; a ``scheduled_at`` given (or set
        on the attribute after ``schedule_in``) is kept; neither means ``now``.
        """
        if self._delay is not None and self.scheduled_at == self._previewed_at:
            return _after(now, self._delay)
        return self.scheduled_at or now

    def cancelled(self) -> bool:
        """True once someone asked to cancel this job while it runs.

        Long-running workers (``def`` or ``async def``) call it at safe points
        and return ``Cancel(...)`` to stop early.
        """
        return self._cancellation is not None and self._cancellation.is_set()

    def _validate(self) -> None:
        if not isinstance(self.worker, str) or not self.worker.strip():
            raise JobValidationError("worker must be a non-blank string")
        if not isinstance(self.queue, str) or not self.queue.strip():
            raise JobValidationError("queue must be a non-blank string")
        storable_text("worker", self.worker)
        storable_text("queue", self.queue)
        try:
            self.state = JobState(self.state)
        except ValueError:
            states = ", ".join(state.value for state in JobState)
            raise JobValidationError(f"state must be one of {states}; got {self.state!r}") from None
        if not 0 < _check_int("max_attempts", self.max_attempts) <= MAX_ATTEMPTS:
            raise JobValidationError(
                f"max_attempts must be from 1 to {MAX_ATTEMPTS}, got {self.max_attempts}"
            )
        if not 0 <= _check_int("priority", self.priority) <= 9:
            raise JobValidationError(
                f"priority must be between 0 (first) and 9 (last), got {self.priority}"
            )
        if not 0 <= _check_int("attempt", self.attempt) <= MAX_ATTEMPTS:
            raise JobValidationError(
                f"attempt must be from 0 to {MAX_ATTEMPTS}, got {self.attempt}"
            )
        self.args = _check_json("args", self.args)
        self.meta = _check_json("meta", self.meta)
        self.tags = _normalise_tags(self.tags)

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id}, worker={self.worker!r}, queue={self.queue!r}, "
            f"state={self.state.value!r}, attempt={self.attempt}/{self.max_attempts}, "
            f"args={self.args!r})"
        )


_ROW_FIELDS = (
    "worker",
    "id",
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
    *TIMESTAMP_FIELDS,
)
