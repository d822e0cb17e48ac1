"""Inline: no storage; ``enqueue`` runs the job at once, in the caller.

For unit tests of code that enqueues: the job runs before ``enqueue``
returns, and the returned job says how it ended (``completed``,
``retryable``, ``discarded``, ``cancelled`` or ``scheduled`` after a snooze).
Args go through the same JSON round-trip as stored jobs, so a test catches
args a real queue could not store. Nothing is retried or kept.

Nothing kept means nothing to be a duplicate of: ``unique=`` and
``replace=`` are accepted (and validated, as everywhere) but ignored, and
every job runs; ``conflict`` is always False. Inline does not declare
``Capability.UNIQUE``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import ClassVar, NoReturn, cast

from sqlalchemy.engine import Connection

from ..attempt import execute_blocking
from ..errors import EngineError
from ..job import Job, JobState
from ..outcomes import Ack
from .base import Capability, Changed, JobFilter

__all__ = ["Inline"]


class _NoConnection:
    """Stands where a connection would; Inline never talks to a database."""

    def __getattr__(self, name: str) -> NoReturn:
        raise EngineError(f"the Inline engine has no database (asked for {name!r})")


class Inline:
    """The engine that runs jobs at enqueue time (``Oban(testing="inline")``)."""

    name: ClassVar[str] = "inline"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.INLINE})

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        yield cast("Connection", _NoConnection())

    def autocommit(self) -> AbstractContextManager[Connection]:
        return self.transaction()

    def single_statement_insert(self, jobs: Sequence[Job]) -> bool:
        return False

    def single_statement_ack(self, acks: Sequence[Ack]) -> bool:
        return False

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        return [self._run(job, now) for job in jobs]

    def _run(self, job: Job, now: datetime) -> Job:
        with self._lock:
            job_id = next(self._ids)
        ran = Job.from_row(
            {
                **{
                    name: getattr(job, name)
                    for name in (
                        "worker",
                        "queue",
                        "max_attempts",
                        "priority",
                        "args",
                        "meta",
                        "tags",
                        "errors",
                    )
                },
                "id": job_id,
                "state": JobState.EXECUTING,
                "attempt": job.attempt + 1,
                "attempted_by": ["inline"],
                "inserted_at": now,
                "scheduled_at": job.scheduled_for(now),
                "attempted_at": now,
            }
        )
        ran.extra = dict(job.extra)
        ack = execute_blocking(ran, clock=lambda: now)  # the engine contract: time is injected
        return ack.apply(ran)

    def fetch_jobs(
        self, conn: Connection, queue: str, demand: int, attempted_by: list[str], now: datetime
    ) -> list[Job]:
        return []

    def ack_jobs(self, conn: Connection, acks: Sequence[Ack]) -> None:
        return None

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> dict[str, int]:
        return {}

    def get_job(self, conn: Connection, job_id: int) -> Job | None:
        return None

    # Nothing is stored, so there is nothing to find, cancel, retry or delete:
    # management calls answer "none" rather than fail, so code under test that
    # manages jobs runs unchanged with testing="inline".

    def list_jobs(
        self, conn: Connection, where: JobFilter, limit: int, before: int | None
    ) -> list[Job]:
        return []

    def cancel_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        return Changed()

    def retry_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        return Changed()

    def delete_jobs(self, conn: Connection, where: JobFilter) -> Changed:
        return Changed()

    def cancelled_ids(self, conn: Connection, job_ids: Sequence[int]) -> list[int]:
        return []

    def claimed_jobs(self, conn: Connection, queue: str, producer: str) -> list[tuple[int, int]]:
        return []

    def close(self) -> None:
        return None
