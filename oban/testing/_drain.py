"""``drain_queue``: run a queue's jobs in the calling thread, through the engine, no runtime.

The same claims a producer makes (``fetch_jobs`` in a transaction, which
marks the rows ``executing`` so no other fetch can take them), the same
attempt (:func:`oban.attempt.execute_blocking`) and the same acks
(``ack_jobs``): a drain is safe next to a running node, and a job never runs
twice. Claimed jobs the drain does not get to run (an exception stopped it)
go back to ``available`` with their attempt rolled back, so none is lost.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import anyio.to_thread

from oban.attempt import execute_blocking
from oban.engines.base import JobFilter
from oban.errors import JobValidationError
from oban.job import Job, JobState
from oban.oban import MAX_PAGE, Oban
from oban.outcomes import Ack

from ._common import NODE, instance, require_storage

__all__ = ["RESULT_KEYS", "drain_queue", "drain_queue_async"]

RESULT_KEYS = ("completed", "retryable", "discarded", "cancelled", "snoozed", "scheduled")
"""The keys of a drain's result, every one present (0 when none)."""

UNLIMITED = 100_000_000
"""The fetch demand of a drain without ``with_limit``: every available job."""

WAITING = (JobState.SCHEDULED, JobState.RETRYABLE)
"""The states ``with_scheduled`` makes available."""


def _check(
    queue: object, with_scheduled: object, with_limit: object
) -> tuple[str, bool | datetime, int | None]:
    if not isinstance(queue, str) or not queue.strip():
        raise JobValidationError(f"queue must be a non-blank string, got {queue!r}")
    if not isinstance(with_scheduled, (bool, datetime)):
        raise JobValidationError(
            f"with_scheduled must be True, False or a datetime, got {with_scheduled!r}"
        )
    if with_limit is not None and (
        isinstance(with_limit, bool) or not isinstance(with_limit, int) or with_limit < 1
    ):
        raise JobValidationError(f"with_limit must be an int >= 1 or None, got {with_limit!r}")
    return queue, with_scheduled, with_limit


def _due_by(job: Job, cutoff: datetime) -> bool:
    return job.scheduled_at is not None and job.scheduled_at <= cutoff


@dataclass
class _Drain:
    """One drain: its options, its counts, and the claimed jobs not yet acked."""

    oban: Oban
    queue: str
    with_scheduled: bool | datetime
    with_recursion: bool
    with_safety: bool
    limit: int | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULT_KEYS, 0))
    ran: int = 0
    claimed: dict[int, Job] = field(default_factory=dict)

    def run(self) -> dict[str, int]:
        """Passes until one runs nothing (with recursion) or after the first."""
        while True:
            if self.with_scheduled is not False:
                self.counts["scheduled"] += self._stage()
            ran = self._pass()
            if not self.with_recursion or ran == 0 or self._limit_reached():
                return self.counts

    def _limit_reached(self) -> bool:
        return self.limit is not None and self.ran >= self.limit

    def _due(self, cutoff: datetime) -> tuple[int, ...]:
        """Ids of the queue's waiting jobs due by ``cutoff``, read in pages."""
        engine, waiting = self.oban.engine, JobFilter(queues=(self.queue,), states=WAITING)
        due: list[int] = []
        before: int | None = None
        with engine.transaction() as conn:
            while True:
                page = engine.list_jobs(conn, waiting, MAX_PAGE, before)
                due.extend(job.id for job in page if job.id and _due_by(job, cutoff))
                if len(page) < MAX_PAGE:
                    return tuple(due)
                before = page[-1].id

    def _stage(self) -> int:
        """Make this queue's scheduled and retryable jobs available now (only this queue's).

        Through ``retry_jobs``, limited to those states: a job that changed
        meanwhile is left alone, and other queues are never touched.
        """
        where = JobFilter(queues=(self.queue,), states=WAITING)
        if isinstance(self.with_scheduled, datetime):
            ids = self._due(self.with_scheduled)
            if not ids:
                return 0
            where = JobFilter(queues=(self.queue,), states=WAITING, ids=ids)
        engine = self.oban.engine
        with engine.transaction() as conn:
            return engine.retry_jobs(conn, where, self.oban.clock()).count

    def _pass(self) -> int:
        """Claim the queue's available jobs (up to the limit left) and run them in order."""
        demand = UNLIMITED if self.limit is None else self.limit - self.ran
        engine = self.oban.engine
        with engine.transaction() as conn:
            jobs = engine.fetch_jobs(
                conn, self.queue, demand, [self.oban.node, NODE], self.oban.clock()
            )
        self.claimed = {job.id or 0: job for job in jobs}
        try:
            for job in jobs:
                self._run_one(job)
        finally:
            self._release()
        return len(jobs)

    def _run_one(self, job: Job) -> None:
        raised: list[Exception] = []
        ack = execute_blocking(job, clock=self.oban.clock, raised=raised)
        self._write([ack])
        del self.claimed[job.id or 0]
        self.ran += 1
        key = "snoozed" if ack.snoozed else ack.state.value
        self.counts[key] = self.counts.get(key, 0) + 1
        if raised and not self.with_safety:
            raise raised[0]  # recorded as failed above; now the test sees it

    def _release(self) -> None:
        """Put claimed jobs that did not run back as they were: available, attempt undone."""
        if self.claimed:
            now = self.oban.clock()
            self._write(
                [
                    Ack(job_id, job.attempt, JobState.AVAILABLE, now)
                    for job_id, job in self.claimed.items()
                ]
            )
            self.claimed = {}

    def _write(self, acks: Iterable[Ack]) -> None:
        engine = self.oban.engine
        with engine.transaction() as conn:
            engine.ack_jobs(conn, list(acks))


def drain_queue(
    oban: Oban | None = None,
    *,
    queue: str,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
) -> dict[str, int]:
    """Run ``queue``'s available jobs here, one by one, without starting the runtime.

    Returns how many attempts ended each way: ``completed``, ``retryable``,
    ``discarded``, ``cancelled``, ``snoozed`` (every key present, 0 when
    none), and ``scheduled``: how many waiting jobs ``with_scheduled`` made
    available.

    Args:
        oban: the instance; the one named ``"oban"`` by default.
        queue: the queue to drain (required).
        with_scheduled: ``True`` first makes the queue's ``scheduled`` and
            ``retryable`` jobs available whatever their time; a ``datetime``
            only those due by then. Staged jobs get ``scheduled_at`` now.
        with_recursion: drain again until a pass runs nothing, so jobs
            enqueued by jobs run too (with ``with_scheduled``, so do retries;
            a job that snoozes every time then never ends: add ``with_limit``).
        with_safety: ``False`` re-raises the first exception of a job (or its
            timeout) in the caller, after recording the attempt as failed as
            usual; jobs claimed but not yet run go back to ``available``.
        with_limit: run at most this many jobs in all (every pass together).
    """
    checked = _check(queue, with_scheduled, with_limit)
    found = instance(oban)
    require_storage(found, "drain_queue")
    name, scheduled, limit = checked
    return _Drain(found, name, scheduled, bool(with_recursion), bool(with_safety), limit).run()


async def drain_queue_async(
    oban: Oban | None = None,
    *,
    queue: str,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
) -> dict[str, int]:
    """Async twin of :func:`drain_queue`: the same drain in a worker thread, so the loop
    stays free; an ``async def`` job is run back on this loop. Cancelling waits for
    the job running at that moment (a claimed job is never abandoned)."""
    found = instance(oban)
    drain = functools.partial(
        drain_queue,
        found,
        queue=queue,
        with_scheduled=with_scheduled,
        with_recursion=with_recursion,
        with_safety=with_safety,
        with_limit=with_limit,
    )
    return await anyio.to_thread.run_sync(drain)
