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
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy.engine import Connection

from ..errors import JobValidationError
from ..job import Job, JobState
from ..outcomes import Ack

__all__ = [
    "Capability",
    "Changed",
    "ClusterEngine",
    "Engine",
    "Heartbeat",
    "JobFilter",
    "Lease",
    "QueueState",
    "Rescued",
    "check_job_id",
]


class Capability(str, enum.Enum):
    """Something an engine can do, declared by the engine."""

    PERSISTENT = "persistent"
    """Jobs are stored and survive the process; a runtime fetches them."""
    SHARED = "shared"
    """Several processes may run Oban on the same storage without a job running twice."""
    TRANSACTIONAL = "transactional"
    """Enqueue can join the caller's own transaction (``conn=``)."""
    NOTIFY = "notify"
    """Inserts and signals reach other processes at once (no polling delay): the
    engine sends them in the changing transaction and offers
    ``listener(names, application_name=...)``, a blocking LISTEN connection
    (:class:`~oban.engines.listener.Listener`) that the runtime's notifier drives."""
    INLINE = "inline"
    """Jobs run inside ``enqueue``, before it returns."""
    UNIQUE = "unique"
    """Unique jobs are enforced: a duplicate insert returns the stored job instead."""
    CLUSTER = "cluster"
    """Several nodes cooperate through the database (:class:`ClusterEngine`):
    heartbeats, one leader, rescue of orphaned jobs, pruning, cron, and queue
    control (pause, resume, scale) that reaches every node."""


CANCELLABLE = (
    JobState.AVAILABLE,
    JobState.SCHEDULED,
    JobState.RETRYABLE,
    JobState.EXECUTING,
    JobState.SUSPENDED,
)
"""States ``cancel_jobs`` moves to ``cancelled``: every state that is not final."""

NOT_RETRYABLE = (JobState.AVAILABLE, JobState.EXECUTING)
"""States ``retry_jobs`` leaves alone: the job is about to run, or running."""


def _one_or_many(value: object) -> list[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _worker_name(value: object) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise JobValidationError("worker filter names must not be blank")
        return value
    # A @worker class or a @job function: both carry their spec (duck-typed, so
    # the engines never import the worker registry).
    name = getattr(getattr(value, "__oban_worker__", None), "name", None)
    if isinstance(name, str):
        return name
    raise JobValidationError(
        "worker filter takes a worker class, a @job function or a worker name, "
        f"got {type(value).__name__}: {value!r}"
    )


def _state(value: object) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        states = ", ".join(state.value for state in JobState)
        raise JobValidationError(f"state filter must be one of {states}; got {value!r}") from None


def _queue(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JobValidationError(f"queue filter names must be non-blank strings, got {value!r}")
    return value


def check_job_id(value: object, what: str = "job id") -> int:
    """A job id as the database can hold it: an int of 64 bits (a BIGINT)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobValidationError(f"{what} must be an int, got {type(value).__name__}: {value!r}")
    if not -(2**63) <= value < 2**63:
        raise JobValidationError(f"{what} must fit in 64 bits (no job has it), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a management call or a query is about.

    Every field that is set narrows the selection (they AND together);
    ``None`` means "any". An empty tuple matches nothing: ``ids=[]`` from an
    empty selection in a UI must never turn into "every job".
    """

    queues: tuple[str, ...] | None = None
    workers: tuple[str, ...] | None = None
    states: tuple[JobState, ...] | None = None
    ids: tuple[int, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        queue: object = None,
        worker: object = None,
        state: object = None,
        ids: object = None,
    ) -> JobFilter:
        """Validate what a caller passed: one value or a list for queue, worker
        and state; a list of ints for ids. Raises :class:`~oban.JobValidationError`.
        """
        if ids is not None and (isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable)):
            raise JobValidationError(
                f"ids must be a list of job ids (ints), got {type(ids).__name__}: {ids!r}"
            )
        return cls(
            queues=None
            if queue is None
            else tuple(dict.fromkeys(_queue(q) for q in _one_or_many(queue))),
            workers=None
            if worker is None
            else tuple(dict.fromkeys(_worker_name(w) for w in _one_or_many(worker))),
            states=None
            if state is None
            else tuple(dict.fromkeys(_state(s) for s in _one_or_many(state))),
            ids=None
            if ids is None
            else tuple(dict.fromkeys(check_job_id(i, "each of ids") for i in ids)),
        )

    @property
    def matches_nothing(self) -> bool:
        """True when an empty list makes the selection empty (no query needed)."""
        return () in (self.queues, self.workers, self.states, self.ids)

    def only(self, states: Iterable[JobState]) -> tuple[JobState, ...]:
        """The filter's states within ``states`` (all of ``states`` when unfiltered)."""
        allowed = tuple(states)
        if self.states is None:
            return allowed
        return tuple(state for state in self.states if state in allowed)


@dataclass(frozen=True, slots=True)
class Changed:
    """What a management call changed, and what the runtime must hear of it."""

    count: int = 0
    """How many jobs were cancelled, retried or deleted."""
    executing: tuple[int, ...] = ()
    """Ids of jobs that were ``executing`` when cancelled: the nodes running them stop them."""
    queues: tuple[str, ...] = ()
    """Queues that got available jobs (retry): their producers fetch at once."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One producer's row in ``oban_producers``: a queue running on one node."""

    uuid: str
    """The producer's id: the second entry of ``attempted_by`` of the jobs it runs."""
    name: str
    node: str
    queue: str
    meta: dict[str, Any]
    """``local_limit``, ``paused``, ``running`` (job ids) and ``instance``."""
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """The answer to a bid for leadership."""

    leader: bool
    """True if this node holds the lease now."""
    expires_at: datetime | None
    """When the current lease ends (whoever holds it); None if nobody holds one."""


@dataclass(frozen=True, slots=True)
class QueueState:
    """The cluster-wide state of one queue: what ``pause_queue``/``scale_queue`` set."""

    queue: str
    paused: bool | None
    """None: never paused or resumed cluster-wide (each node's own state holds)."""
    local_limit: int | None
    """None: never scaled cluster-wide (each node's configured limit holds)."""
    active: bool | None
    """The last cluster-wide ``start_queue`` (True) or ``stop_queue`` (False), if any."""
    version: int
    """Grows with each change, so a node applies each change once."""


@dataclass(frozen=True, slots=True)
class Rescued:
    """What the lifeline did."""

    available: int = 0
    discarded: int = 0
    queues: tuple[str, ...] = ()
    """Queues that got available jobs back: their producers fetch at once."""


class Engine(Protocol):
    """Storage for jobs. Every method runs inside the caller's transaction."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a fresh transaction, committed on success."""
        ...

    def autocommit(self) -> AbstractContextManager[Connection]:
        """A connection for work whose every statement is atomic on its own (the
        fetch: one ``UPDATE ... RETURNING``). Where the database offers it, each
        statement commits by itself, which spares the BEGIN and COMMIT round
        trips of :meth:`transaction`; elsewhere it is :meth:`transaction`."""
        ...

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        """Insert new jobs; return them with ids, states and timestamps set."""
        ...

    def single_statement_insert(self, jobs: Sequence[Job]) -> bool:
        """Whether :meth:`insert_jobs` of ``jobs`` is one statement, atomic on its
        own, so that an insert in no caller's transaction may run on
        :meth:`autocommit` (one round trip instead of three or four)."""
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

    def single_statement_ack(self, acks: Sequence[Ack]) -> bool:
        """Whether :meth:`ack_jobs` of ``acks`` is one statement, so that it may run on
        :meth:`autocommit` (an ack needs no transaction around others: each
        applies only while its attempt executes, so a batch retried after a
        partial write changes nothing twice)."""
        ...

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> dict[str, int]:
        """Make due scheduled/retryable jobs available; how many each queue got."""
        ...

    def get_job(self, conn: Connection, job_id: int) -> Job | None:
        """One job by id, or None."""
        ...

    def list_jobs(
        self, conn: Connection, where: JobFilter, limit: int, before: int | None
    ) -> list[Job]:
        """Up to ``limit`` jobs matching ``where``, newest (highest id) first,
        only ids below ``before`` when it is given (keyset pagination)."""
        ...

    def cancel_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        """Cancel matching jobs that are not final yet (``cancelled_at = now``).

        Reports the ids of those that were ``executing``, so the nodes running
        them can be told; on PostgreSQL the engine also NOTIFYs them.
        """
        ...

    def retry_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        """Make matching jobs that are neither available nor executing available now.

        ``max_attempts`` is raised to at least ``attempt + 1`` so the retry
        can run; ``completed_at``, ``discarded_at`` and ``cancelled_at`` are cleared.
        """
        ...

    def delete_jobs(self, conn: Connection, where: JobFilter) -> Changed:
        """Delete matching jobs, except executing ones (their ack would find no row)."""
        ...

    def cancelled_ids(self, conn: Connection, job_ids: Sequence[int]) -> list[int]:
        """Which of ``job_ids`` are ``cancelled`` now: the runtime's check on the
        jobs it runs, for cancels it was not told of (other processes, lost notices)."""
        ...

    def claimed_jobs(self, conn: Connection, queue: str, producer: str) -> list[tuple[int, int]]:
        """``(id, attempt)`` of every job of ``queue`` executing for ``producer``
        (the uuid in ``attempted_by``): what a producer compares with what it
        runs after a fetch failed, since the server may have committed a fetch
        whose reply was lost."""
        ...

    def close(self) -> None:
        """Release pools or other resources the engine owns."""
        ...


class ClusterEngine(Engine, Protocol):
    """An engine with :attr:`Capability.CLUSTER`: what several nodes share.

    ``name`` arguments are the Oban instance's name (``Oban(name=...)``), so
    several differently named instances can share one database.
    """

    def cluster_time(self, conn: Connection, fallback: datetime) -> datetime:
        """The time every node judges liveness by (heartbeats, rescue): the
        database server's clock on PostgreSQL, so that a node whose clock is off
        neither looks dead to the others nor takes a live node for dead;
        ``fallback`` (the node's own clock) where the nodes share one clock
        (SQLite: one machine)."""
        ...

    def record_heartbeats(self, conn: Connection, beats: Sequence[Heartbeat]) -> None:
        """Insert or refresh these producers' rows."""
        ...

    def delete_heartbeats(self, conn: Connection, uuids: Sequence[str]) -> None:
        """Remove these producers' rows (a clean stop, a stopped queue)."""
        ...

    def list_heartbeats(self, conn: Connection, name: str, since: datetime) -> list[Heartbeat]:
        """The rows of ``name``'s producers that heart-beat at ``since`` or later."""
        ...

    def take_lease(
        self, conn: Connection, name: str, node: str, now: datetime, lease: float
    ) -> Lease:
        """Take or renew ``name``'s leadership for ``lease`` seconds, in one
        conditional statement: granted if nobody holds it, its lease expired,
        or ``node`` already holds it."""
        ...

    def release_lease(self, conn: Connection, name: str, node: str) -> None:
        """Give up ``name``'s leadership if ``node`` holds it (and tell the others)."""
        ...

    def rescue_jobs(
        self, conn: Connection, now: datetime, rescue_after: float, limit: int
    ) -> Rescued:
        """Put back ``executing`` jobs whose producer has not heart-beaten for
        ``rescue_after`` seconds (or has no row at all): ``available`` when
        attempts remain, else ``discarded``, with an error entry naming the node."""
        ...

    def prune_jobs(self, conn: Connection, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` completed, cancelled and discarded jobs that
        finished before ``before``; return how many."""
        ...

    def prune_heartbeats(self, conn: Connection, before: datetime) -> int:
        """Delete producer rows last updated before ``before`` (long-dead nodes)."""
        ...

    def latest_cron_slots(self, conn: Connection, name: str) -> dict[str, datetime]:
        """The latest recorded slot of every cron entry of ``name``, by entry key."""
        ...

    def insert_cron_jobs(
        self,
        conn: Connection,
        name: str,
        slots: Sequence[tuple[str, datetime, Job | None]],
        now: datetime,
    ) -> list[Job]:
        """Record each (entry, slot) once and insert its job (None: record only).

        A slot already recorded, by this node or another, inserts nothing:
        the table's key makes each slot's job inserted once.
        """
        ...

    def prune_cron_slots(self, conn: Connection, name: str, before: datetime) -> int:
        """Delete slot rows recorded before ``before``, keeping each entry's latest."""
        ...

    def queue_states(self, conn: Connection, name: str) -> list[QueueState]:
        """Every queue of ``name`` paused, resumed or scaled cluster-wide."""
        ...

    def set_queue_state(
        self,
        conn: Connection,
        name: str,
        queue: str,
        *,
        paused: bool | None,
        local_limit: int | None,
        active: bool | None,
        now: datetime,
        signal: dict[str, Any],
    ) -> None:
        """Record a cluster-wide change of ``queue`` (None: unchanged) and send
        ``signal`` to every node (NOTIFY where the engine has it)."""
        ...

    def unrun_queues(
        self, conn: Connection, name: str, since: datetime, scan: int
    ) -> dict[str, int]:
        """Queues with available jobs that no producer of ``name`` heart-beaten at
        ``since`` or later runs, with how many are waiting (counted up to ``scan``):
        jobs that nothing will fetch, usually a queue missing from ``queues=``."""
        ...
