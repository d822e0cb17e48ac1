"""``all_enqueued``, ``assert_enqueued``, ``refute_enqueued``: what is waiting to run.

The coarse filters (queue, worker, state) go to the engine through
``Oban.list_jobs``, page by page; the fine ones (args, meta, tags, priority,
scheduled_at) are matched here, in Python, so their meaning is one and the
same on every engine and no SQL is written twice.

"Enqueued" means ``available`` or ``scheduled``, as in Elixir Oban: a job
waiting for a retry (``retryable``) is not, unless asked for with ``state=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from oban.engines.base import JobFilter
from oban.errors import JobValidationError
from oban.job import Job, JobState
from oban.oban import MAX_PAGE, Oban

from ._common import WorkerRef, instance, require_storage

__all__ = [
    "ENQUEUED_STATES",
    "SCHEDULED_AT_TOLERANCE",
    "Expected",
    "all_enqueued",
    "all_enqueued_async",
    "assert_enqueued",
    "assert_enqueued_async",
    "refute_enqueued",
    "refute_enqueued_async",
]

ENQUEUED_STATES = (JobState.AVAILABLE, JobState.SCHEDULED)
"""The states the helpers look in unless ``state=`` says otherwise (Elixir Oban's)."""

SCHEDULED_AT_TOLERANCE = timedelta(seconds=1)
"""How far a job's ``scheduled_at`` may be from an expected datetime and still match."""

SHOWN = 20
"""The most jobs an assertion message lists."""

ScheduledAt = datetime | tuple[datetime, float | timedelta]


def _json(name: str, value: object) -> dict[str, Any] | None:
    """Expected args/meta as the stored JSON would read back (tuples as lists...)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise JobValidationError(f"{name} must be a dict, got {type(value).__name__}: {value!r}")
    try:
        decoded: dict[str, Any] = orjson.loads(orjson.dumps(value))
    except TypeError as exc:
        raise JobValidationError(f"{name} must be JSON-encodable: {exc}") from exc
    return decoded


def _same(left: object, right: object) -> bool:
    """JSON equality: ``1 == 1.0`` but never ``1 == true``; dicts and lists compared deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    return type(left) is type(right) and left == right


def _subset(expected: Mapping[str, Any] | None, actual: Mapping[str, Any]) -> bool:
    if expected is None:
        return True
    return all(key in actual and _same(value, actual[key]) for key, value in expected.items())


def _tags(tags: object) -> frozenset[str] | None:
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise JobValidationError(f"tags must be a list of strings, got {tags!r}")
    return frozenset(str(tag).strip().lower() for tag in tags)  # as Job stores them


def _priority(priority: object) -> int | None:
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise JobValidationError(f"priority must be an int from 0 to 9, got {priority!r}")
    return priority


def _utc(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise JobValidationError(
            "scheduled_at must be a datetime or (datetime, tolerance seconds), "
            f"got {type(value).__name__}: {value!r}"
        )
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _scheduled_at(value: object) -> tuple[datetime, timedelta] | None:
    """``dt`` (within :data:`SCHEDULED_AT_TOLERANCE`) or ``(dt, tolerance)``; 0 is exact."""
    if value is None:
        return None
    if not isinstance(value, tuple):
        return _utc(value), SCHEDULED_AT_TOLERANCE
    if len(value) != 2:
        raise JobValidationError(f"scheduled_at as a tuple is (datetime, tolerance), got {value!r}")
    at, tolerance = value
    if isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool):
        tolerance = timedelta(seconds=tolerance)
    if not isinstance(tolerance, timedelta) or tolerance < timedelta(0):
        raise JobValidationError(f"scheduled_at tolerance must be seconds >= 0, got {value[1]!r}")
    return _utc(at), tolerance


@dataclass(frozen=True)
class Expected:
    """What a test expects of a job: the filters, checked once, before any query."""

    where: JobFilter
    args: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    tags: frozenset[str] | None = None
    priority: int | None = None
    scheduled_at: tuple[datetime, timedelta] | None = None
    described: str = ""

    @classmethod
    def of(cls, state: object = None, **given: Any) -> Expected:
        """Validate the filters; raises :class:`~oban.JobValidationError` naming the bad one."""
        where = JobFilter.of(
            queue=given["queue"],
            worker=given["worker"],
            state=ENQUEUED_STATES if state is None else state,
        )
        shown = {key: value for key, value in given.items() if value is not None}
        if state is not None:
            shown["state"] = state
        if "worker" in shown and where.workers is not None:
            shown["worker"] = where.workers[0] if len(where.workers) == 1 else list(where.workers)
        return cls(
            where=where,
            args=_json("args", given["args"]),
            meta=_json("meta", given["meta"]),
            tags=_tags(given["tags"]),
            priority=_priority(given["priority"]),
            scheduled_at=_scheduled_at(given["scheduled_at"]),
            described=", ".join(f"{key}={value!r}" for key, value in shown.items()) or "anything",
        )

    def matches(self, job: Job) -> bool:
        """Whether ``job`` has the expected args/meta keys, tags, priority and time."""
        if self.priority is not None and job.priority != self.priority:
            return False
        if self.tags is not None and not self.tags <= set(job.tags):
            return False
        if self.scheduled_at is not None:
            at, tolerance = self.scheduled_at
            if job.scheduled_at is None or abs(job.scheduled_at - at) > tolerance:
                return False
        return _subset(self.args, job.args) and _subset(self.meta, job.meta)

    @property
    def states(self) -> str:
        return ", ".join(state.value for state in self.where.states or ())


def _line(job: Job) -> str:
    return (
        f"  {job.worker} queue={job.queue!r} args={job.args!r} state={job.state.value}"
        f" id={job.id} priority={job.priority} tags={job.tags!r}"
        f" scheduled_at={job.scheduled_at.isoformat() if job.scheduled_at else None}"
    )


def _listing(jobs: list[Job], total: int | None = None) -> str:
    lines = [_line(job) for job in jobs[:SHOWN]]
    more = (total if total is not None else len(jobs)) - len(lines)
    if more > 0 or (total is None and len(jobs) > SHOWN):
        lines.append(f"  ... and {max(more, 1)} more")
    return "\n".join(lines)


def _near_miss(expected: Expected, nearby: list[Job]) -> str:
    head = f"expected an enqueued job matching {expected.described}; none matched."
    if not nearby:
        return f"{head}\nNo jobs were enqueued (states {expected.states})."
    return (
        f"{head}\nThese jobs were enqueued (states {expected.states}), newest first:\n"
        f"{_listing(nearby)}"
    )


def _unexpected(expected: Expected, found: list[Job]) -> str:
    return (
        f"expected no enqueued job matching {expected.described}; found {len(found)}:\n"
        f"{_listing(found, len(found))}"
    )


# -- the sync helpers ------------------------------------------------------------------


def _pages(oban: Oban, where: JobFilter) -> list[Job]:
    """Every job ``where`` selects, newest first, read in pages of ``MAX_PAGE``."""
    jobs: list[Job] = []
    before: int | None = None
    while True:
        page = oban.list_jobs(
            queue=where.queues,
            worker=where.workers,
            state=where.states,
            limit=MAX_PAGE,
            before=before,
        )
        jobs.extend(page)
        if len(page) < MAX_PAGE:
            return jobs
        before = page[-1].id


def _nearby(oban: Oban, expected: Expected) -> list[Job]:
    """The jobs in the expected states whatever else they hold, for a near-miss message."""
    return oban.list_jobs(state=expected.where.states, limit=SHOWN + 1)


def _prepare(
    oban: Oban | None, helper: str, state: object, given: dict[str, Any]
) -> tuple[Oban, Expected]:
    """Check the filters and the instance before any query: bad input fails by name."""
    expected = Expected.of(state, **given)
    found = instance(oban)
    require_storage(found, helper)
    return found, expected


def _find(
    oban: Oban | None, helper: str, state: object, given: dict[str, Any]
) -> tuple[Oban, Expected, list[Job]]:
    found, expected = _prepare(oban, helper, state, given)
    return found, expected, [job for job in _pages(found, expected.where) if expected.matches(job)]


def all_enqueued(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> list[Job]:
    """The stored jobs matching every filter given, newest first.

    ``oban`` defaults to the instance named ``"oban"``. ``worker`` is a class,
    a ``@job`` function or a name; ``args`` and ``meta`` match when every key
    given is in the job with an equal JSON value (a subset; nested values
    compare whole); ``tags`` when the job has all of them; ``scheduled_at``
    within :data:`SCHEDULED_AT_TOLERANCE` (1 s), or ``(datetime, seconds)``
    for another tolerance (``0``: exact). ``state`` defaults to ``available``
    and ``scheduled`` (one state or a list). An Inline instance stores
    nothing and raises :class:`~oban.EngineError`.
    """
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    return _find(oban, "all_enqueued", state, given)[2]


def assert_enqueued(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> list[Job]:
    """Assert at least one job matches (filters as :func:`all_enqueued`); return the matches.

    On a miss the ``AssertionError`` lists the jobs that *were* enqueued
    (worker, queue, args, state...), newest first, so the test shows why.
    """
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    found, expected, matched = _find(oban, "assert_enqueued", state, given)
    if not matched:
        raise AssertionError(_near_miss(expected, _nearby(found, expected)))
    return matched


def refute_enqueued(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> None:
    """Assert no job matches (filters as :func:`all_enqueued`); the error lists those that do."""
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    _, expected, matched = _find(oban, "refute_enqueued", state, given)
    if matched:
        raise AssertionError(_unexpected(expected, matched))


def _given(
    worker: object,
    args: object,
    queue: object,
    priority: object,
    tags: object,
    meta: object,
    scheduled_at: object,
) -> dict[str, Any]:
    """The filters by name, in the order a message shows them."""
    return {
        "worker": worker,
        "queue": queue,
        "args": args,
        "meta": meta,
        "tags": tags,
        "priority": priority,
        "scheduled_at": scheduled_at,
    }


# -- the async twins -------------------------------------------------------------------


async def _pages_async(oban: Oban, where: JobFilter) -> list[Job]:
    jobs: list[Job] = []
    before: int | None = None
    while True:
        page = await oban.list_jobs_async(
            queue=where.queues,
            worker=where.workers,
            state=where.states,
            limit=MAX_PAGE,
            before=before,
        )
        jobs.extend(page)
        if len(page) < MAX_PAGE:
            return jobs
        before = page[-1].id


async def _find_async(
    oban: Oban | None, helper: str, state: object, given: dict[str, Any]
) -> tuple[Oban, Expected, list[Job]]:
    found, expected = _prepare(oban, helper, state, given)
    listed = await _pages_async(found, expected.where)
    return found, expected, [job for job in listed if expected.matches(job)]


async def all_enqueued_async(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> list[Job]:
    """Async twin of :func:`all_enqueued`."""
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    return (await _find_async(oban, "all_enqueued_async", state, given))[2]


async def assert_enqueued_async(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> list[Job]:
    """Async twin of :func:`assert_enqueued`."""
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    found, expected, matched = await _find_async(oban, "assert_enqueued_async", state, given)
    if not matched:
        nearby = await found.list_jobs_async(state=expected.where.states, limit=SHOWN + 1)
        raise AssertionError(_near_miss(expected, nearby))
    return matched


async def refute_enqueued_async(
    oban: Oban | None = None,
    *,
    worker: WorkerRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    scheduled_at: ScheduledAt | None = None,
    state: JobState | str | Iterable[JobState | str] | None = None,
) -> None:
    """Async twin of :func:`refute_enqueued`."""
    given = _given(worker, args, queue, priority, tags, meta, scheduled_at)
    _, expected, matched = await _find_async(oban, "refute_enqueued_async", state, given)
    if matched:
        raise AssertionError(_unexpected(expected, matched))
