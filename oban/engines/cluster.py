"""What several nodes share through the database, in SQLAlchemy Core.

Leadership, heartbeats, the lifeline, the pruner, cron slots and queue
state: each operation written once here for both SQL engines. The few
differences between SQLite and PostgreSQL (reading an element of
``attempted_by``, sending a signal) are hooks the dialect engines fill in.
Every value travels as a bound parameter; the only literals are Oban's own
state names, which let PostgreSQL match its partial indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..job import Job, JobState
from ..outcomes import error_entry
from ..schema import Json, oban_cron_slots, oban_jobs, oban_peers, oban_producers, oban_queue_states
from .base import Heartbeat, Lease, QueueState, Rescued

__all__ = ["ClusterSql", "attempt_update"]

c = oban_jobs.c
FINISHED = (
    (JobState.COMPLETED, c.completed_at),
    (JobState.CANCELLED, c.cancelled_at),
    (JobState.DISCARDED, c.discarded_at),
)
"""Final states and the column that says when a job reached each: what the pruner deletes."""


def _state_is(state: JobState) -> ColumnElement[bool]:
    # A literal, not a parameter: PostgreSQL uses a partial index
    # (``WHERE state = 'completed'``) only when it can see the value at plan time.
    return c.state == sa.literal_column(f"'{state.value}'", c.state.type)


def _insert(conn: Connection, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` for ``conn``'s dialect (both spell it alike)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def attempt_update(values: dict[str, Any]) -> sa.Update:
    """``UPDATE`` of one attempt of one job (``b_id``, ``b_attempt``), only while that
    attempt still executes: how acks and rescues change a job, so neither can
    overwrite a later attempt or a cancel."""
    return (
        sa.update(oban_jobs)
        .where(
            c.id == sa.bindparam("b_id"),
            c.state == JobState.EXECUTING,
            c.attempt == sa.bindparam("b_attempt"),
        )
        .values(values)
    )


def _rows(result: sa.CursorResult[Any]) -> list[tuple[Any, ...]]:
    """A result's rows as plain tuples (to unpack by position)."""
    return [tuple(row) for row in result]


class ClusterSql:
    """The :class:`~oban.engines.base.ClusterEngine` operations, mixed into the SQL engines."""

    def execute(
        self, conn: Connection, statement: sa.Executable, params: Any = None
    ) -> sa.CursorResult[Any]:
        raise NotImplementedError

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        raise NotImplementedError

    # -- dialect hooks -------------------------------------------------------------------

    def _attempted_by(self, index: int) -> ColumnElement[str]:
        """Element ``index`` (0-based) of ``attempted_by``: 0 the node, 1 the producer."""
        raise NotImplementedError

    def _append_error(
        self, column: ColumnElement[Any], entry: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        raise NotImplementedError

    def _signal(self, conn: Connection, payload: dict[str, Any]) -> None:
        """Tell every node of a queue change at commit; polling engines do nothing."""

    def _leader_down(self, conn: Connection, name: str) -> None:
        """Tell the other nodes at commit that ``name`` has no leader now."""

    def _announce(self, conn: Connection, queues: Sequence[str]) -> None:
        """Tell every node's producers that ``queues`` got available jobs."""

    def _id_in_batch(self, batch: Any) -> ColumnElement[bool]:
        """``id IN (batch)`` for a subquery of ids, as the dialect finds rows fastest."""
        return c.id.in_(batch)

    def _prepare(self, conn: Connection) -> None:
        """Anything a dialect must learn about the table before changing jobs."""

    # -- heartbeats ----------------------------------------------------------------------

    def cluster_time(self, conn: Connection, fallback: datetime) -> datetime:
        return fallback

    def record_heartbeats(self, conn: Connection, beats: Sequence[Heartbeat]) -> None:
        if not beats:
            return
        statement = _insert(conn, oban_producers)
        statement = statement.on_conflict_do_update(
            index_elements=[oban_producers.c.uuid],
            set_={"meta": statement.excluded.meta, "updated_at": statement.excluded.updated_at},
        )
        rows = [
            {
                "uuid": beat.uuid,
                "name": beat.name,
                "node": beat.node,
                "queue": beat.queue,
                "meta": beat.meta,
                "started_at": beat.started_at,
                "updated_at": beat.updated_at,
            }
            for beat in beats
        ]
        self.execute(conn, statement.values(rows))

    def delete_heartbeats(self, conn: Connection, uuids: Sequence[str]) -> None:
        if uuids:
            statement = sa.delete(oban_producers).where(oban_producers.c.uuid.in_(list(uuids)))
            self.execute(conn, statement)

    def list_heartbeats(self, conn: Connection, name: str, since: datetime) -> list[Heartbeat]:
        p = oban_producers.c
        statement = (
            sa.select(oban_producers)
            .where(p.name == name, p.updated_at >= since)
            .order_by(p.queue, p.node, p.started_at)
        )
        return [
            Heartbeat(
                uuid=row["uuid"],
                name=row["name"],
                node=row["node"],
                queue=row["queue"],
                meta=row["meta"] if isinstance(row["meta"], dict) else {},
                started_at=row["started_at"],
                updated_at=row["updated_at"],
            )
            for row in self.execute(conn, statement).mappings()
        ]

    def prune_heartbeats(self, conn: Connection, before: datetime) -> int:
        statement = sa.delete(oban_producers).where(oban_producers.c.updated_at < before)
        return int(self.execute(conn, statement).rowcount)

    # -- leadership ------------------------------------------------------------------------

    def take_lease(
        self, conn: Connection, name: str, node: str, now: datetime, lease: float
    ) -> Lease:
        peers = oban_peers.c
        statement = _insert(conn, oban_peers).values(
            name=name, node=node, started_at=now, expires_at=now + timedelta(seconds=lease)
        )
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[peers.name],
            set_={
                "node": new.node,
                # Renewing keeps the time this node became leader.
                "started_at": sa.case(
                    (peers.node == new.node, peers.started_at), else_=new.started_at
                ),
                "expires_at": new.expires_at,
            },
            where=sa.or_(peers.node == new.node, peers.expires_at < new.started_at),
        ).returning(peers.expires_at)
        granted = self.execute(conn, statement).scalar()
        if granted is not None:
            return Lease(leader=True, expires_at=granted)
        held = sa.select(peers.expires_at).where(peers.name == name)
        return Lease(leader=False, expires_at=self.execute(conn, held).scalar())

    def release_lease(self, conn: Connection, name: str, node: str) -> None:
        peers = oban_peers.c
        statement = sa.delete(oban_peers).where(peers.name == name, peers.node == node)
        if self.execute(conn, statement).rowcount:
            self._leader_down(conn, name)

    # -- the lifeline ----------------------------------------------------------------------

    def rescue_jobs(
        self, conn: Connection, now: datetime, rescue_after: float, limit: int
    ) -> Rescued:
        self._prepare(conn)
        cutoff = now - timedelta(seconds=rescue_after)
        p = oban_producers.c
        alive = sa.exists(
            sa.select(sa.literal(1)).where(
                sa.cast(p.uuid, sa.Text) == self._attempted_by(1), p.updated_at >= cutoff
            )
        )
        # NOT EXISTS, not a LEFT JOIN: a job whose producer row is gone
        # altogether is orphaned too, and is found.
        orphans = (
            sa.select(c.id, c.attempt, c.max_attempts, c.queue, self._attempted_by(0))
            .where(_state_is(JobState.EXECUTING), c.attempted_at < cutoff, ~alive)
            .order_by(c.id)
            .limit(limit)
            .with_for_update(of=oban_jobs.c.id, skip_locked=True)
        )
        found = _rows(self.execute(conn, orphans))
        if not found:
            return Rescued()
        back: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        queues: set[str] = set()
        for job_id, attempt, max_attempts, queue, node in found:
            message = (
                f"orphaned: node {node!r} stopped heart-beating while attempt {attempt} ran; "
                "rescued by the lifeline"
            )
            params = {
                "b_id": job_id,
                "b_attempt": attempt,
                "b_error": error_entry(attempt, now, message),
            }
            if attempt < max_attempts:
                back.append(params)
                queues.add(queue)
            else:
                dead.append(params)
        for state, group in ((JobState.AVAILABLE, back), (JobState.DISCARDED, dead)):
            if group:
                self.execute(conn, self._rescue_statement(state, now), group)
        woken = tuple(sorted(queues))
        self._announce(conn, woken)
        return Rescued(available=len(back), discarded=len(dead), queues=woken)

    def _rescue_statement(self, state: JobState, now: datetime) -> sa.Update:
        values: dict[str, Any] = {
            "state": state,
            "errors": self._append_error(c.errors, sa.bindparam("b_error", type_=Json())),
        }
        if state is JobState.DISCARDED:
            values["discarded_at"] = now
        # Guarded like an ack: only the attempt that was orphaned, still executing.
        return attempt_update(values)

    # -- the pruner ------------------------------------------------------------------------

    def prune_jobs(self, conn: Connection, before: datetime, limit: int) -> int:
        deleted = 0
        for state, finished_at in FINISHED:
            if deleted >= limit:
                break
            # Each state through its own partial index (``oban_jobs_<column>_index``):
            # ordered by its column, or PostgreSQL scans the whole table for the
            # first rows when most of it is prunable; oldest first either way.
            batch = (
                sa.select(c.id)
                .where(_state_is(state), finished_at < before)
                .order_by(finished_at)
                .limit(limit - deleted)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            statement = sa.delete(oban_jobs).where(self._id_in_batch(batch))
            deleted += int(self.execute(conn, statement).rowcount)
        return deleted

    # -- cron ------------------------------------------------------------------------------

    def latest_cron_slots(self, conn: Connection, name: str) -> dict[str, datetime]:
        slots = oban_cron_slots.c
        statement = (
            sa.select(slots.entry, sa.func.max(slots.slot_at))
            .where(slots.name == name)
            .group_by(slots.entry)
        )
        return {str(entry): slot_at for entry, slot_at in _rows(self.execute(conn, statement))}

    def insert_cron_jobs(
        self,
        conn: Connection,
        name: str,
        slots: Sequence[tuple[str, datetime, Job | None]],
        now: datetime,
    ) -> list[Job]:
        if not slots:
            return []
        table = oban_cron_slots.c
        rows = [
            {"name": name, "entry": entry, "slot_at": slot_at, "inserted_at": now}
            for entry, slot_at, _job in slots
        ]
        statement = (
            _insert(conn, oban_cron_slots)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(table.entry, table.slot_at)
        )
        recorded = set(_rows(self.execute(conn, statement)))
        wanted = [
            (entry, slot_at, job)
            for entry, slot_at, job in slots
            if job is not None and (entry, slot_at) in recorded
        ]
        if not wanted:
            return []
        saved = self.insert_jobs(conn, [job for _, _, job in wanted], now)
        link = (
            sa.update(oban_cron_slots)
            .where(
                table.name == name,
                table.entry == sa.bindparam("b_entry"),
                table.slot_at == sa.bindparam("b_slot", type_=table.slot_at.type),
            )
            .values(job_id=sa.bindparam("b_job"))
        )
        self.execute(
            conn,
            link,
            [
                {"b_entry": entry, "b_slot": slot_at, "b_job": job.id}
                for (entry, slot_at, _), job in zip(wanted, saved, strict=True)
            ],
        )
        return saved

    def prune_cron_slots(self, conn: Connection, name: str, before: datetime) -> int:
        slots = oban_cron_slots.c
        newer = oban_cron_slots.alias("newer")
        later = sa.exists(
            sa.select(sa.literal(1)).where(
                newer.c.name == slots.name,
                newer.c.entry == slots.entry,
                newer.c.slot_at > slots.slot_at,
            )
        )
        statement = sa.delete(oban_cron_slots).where(
            slots.name == name, slots.inserted_at < before, later
        )
        return int(self.execute(conn, statement).rowcount)

    # -- queue state -------------------------------------------------------------------------

    def queue_states(self, conn: Connection, name: str) -> list[QueueState]:
        q = oban_queue_states.c
        statement = sa.select(q.queue, q.paused, q.local_limit, q.active, q.version).where(
            q.name == name
        )
        return [
            QueueState(
                queue=queue, paused=paused, local_limit=limit, active=active, version=int(version)
            )
            for queue, paused, limit, active, version in _rows(self.execute(conn, statement))
        ]

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
        q = oban_queue_states.c
        statement = _insert(conn, oban_queue_states).values(
            name=name,
            queue=queue,
            paused=paused,
            local_limit=local_limit,
            active=active,
            version=1,
            updated_at=now,
        )
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[q.name, q.queue],
            set_={
                "paused": sa.func.coalesce(new.paused, q.paused),
                "local_limit": sa.func.coalesce(new.local_limit, q.local_limit),
                "active": sa.func.coalesce(new.active, q.active),
                "version": q.version + 1,
                "updated_at": new.updated_at,
            },
        )
        self.execute(conn, statement)
        self._signal(conn, signal)

    # -- queues nobody runs ------------------------------------------------------------------

    def unrun_queues(
        self, conn: Connection, name: str, since: datetime, scan: int
    ) -> dict[str, int]:
        p = oban_producers.c
        running = sa.select(p.queue).where(p.name == name, p.updated_at >= since)
        waiting = dict.fromkeys(self._available_queues(conn), 0)
        for (queue,) in _rows(self.execute(conn, running)):
            waiting.pop(queue, None)
        for queue in waiting:
            some = sa.select(c.id).where(_state_is(JobState.AVAILABLE), c.queue == queue)
            counted = sa.select(sa.func.count()).select_from(some.limit(scan).subquery())
            waiting[queue] = int(self.execute(conn, counted).scalar_one())
        return waiting

    def _available_queues(self, conn: Connection) -> list[str]:
        """Distinct queues with available jobs, one index probe per queue (a
        recursive ``min(queue) > previous``), not a scan of every available row:
        a backlog of millions costs as much as an empty table."""
        lowest = sa.select(sa.func.min(c.queue).label("queue")).where(_state_is(JobState.AVAILABLE))
        found = lowest.cte("available_queues", recursive=True)
        previous = found.alias("previous")
        following = (
            sa.select(sa.func.min(c.queue))
            .where(_state_is(JobState.AVAILABLE), c.queue > previous.c.queue)
            .scalar_subquery()
        )
        found = found.union_all(
            sa.select(following.label("queue")).where(previous.c.queue.is_not(None))
        )
        statement = sa.select(found.c.queue).where(found.c.queue.is_not(None))
        return [queue for (queue,) in _rows(self.execute(conn, statement))]
