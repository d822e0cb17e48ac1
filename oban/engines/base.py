"""The engine contract: what the runtime and ``Oban`` ask of a storage engine.

An engine is a small class with *synchronous* methods on a SQLAlchemy
``Connection`` that is already inside a transaction. Written once like that,
each operation serves sync callers directly, async callers through a worker
thread, and a user's ``AsyncSession`` through ``run_sync``.

Engines declare what they can do as data (``capabilities``); code and tests
ask for a capability, never for an engine by name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy.engine import Connection

from ..job import Job, JobState

__all__ = ["Ack", "Capability", "Engine"]


class Capability(str, enum.Enum):
    """Something an engine can do, declared by the engine."""

    PERSISTENT = "persistent"
    """Jobs are stored and survive the process; a runtime fetches them."""
    SHARED = "shared"
    """Several processes may run Oban on the same storage without a job running twice."""
    TRANSACTIONAL = "transactional"
    """Enqueue can join the caller's own transaction (``conn=``)."""
    NOTIFY = "notify"
    """Inserts and signals reach other processes at once (no polling delay)."""
    INLINE = "inline"
    """Jobs run inside ``enqueue``, before it returns."""


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


class Engine(Protocol):
    """Storage for jobs. Every method runs inside the caller's transaction."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a fresh transaction, committed on success."""
        ...

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        """Insert new jobs; return them with ids, states and timestamps set."""
        ...

    def fetch_jobs(
        self, conn: Connection, queue: str, demand: int, attempted_by: list[str], now: datetime
    ) -> list[Job]:
        """Claim up to ``demand`` available jobs of ``queue`` for this node.

        Claimed jobs are ``executing`` with ``attempt`` incremented; no other
        fetch, here or on another node, can claim them.
        """
        ...

    def ack_jobs(self, conn: Connection, acks: Sequence[Ack]) -> None:
        """Record finished attempts."""
        ...

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> list[str]:
        """Make due scheduled/retryable jobs available; return their queues."""
        ...

    def get_job(self, conn: Connection, job_id: int) -> Job | None:
        """One job by id, or None."""
        ...

    def close(self) -> None:
        """Release pools or other resources the engine owns."""
        ...


def has(engine: Engine, capability: Capability) -> bool:
    """Whether ``engine`` declares ``capability``."""
    return capability in engine.capabilities


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Split a long sequence in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
