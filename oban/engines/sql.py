"""Job operations in SQLAlchemy Core, shared by the SQL engines.

Each operation is written once here; a dialect engine (Lite, Basic) only
supplies how a transaction starts and the few JSON expressions that differ
between SQLite and PostgreSQL. Every value travels as a bound parameter.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..errors import DatabaseError, SchemaError
from ..job import Job, JobState
from ..outcomes import Ack, error_entry
from ..schema import Json, Undecodable, oban_jobs
from ..unique import UniqueSpec
from .base import CANCELLABLE, NOT_RETRYABLE, Capability, Changed, JobFilter
from .cluster import ClusterSql, attempt_update

__all__ = ["SqlEngine", "translate_errors"]

c = oban_jobs.c

logger = logging.getLogger("oban")

_MISSING_TABLE = re.compile(r"no such table|relation .* does not exist|undefined.?table", re.I)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into :class:`~oban.DatabaseError` (cause attached)."""
    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        if _MISSING_TABLE.search(str(exc.orig)):
            raise SchemaError(
                "an Oban table is missing (a new database, or a new Oban version whose "
                "revision has not run): run `oban.migrate()` (or `oban migrate`, or `alembic "
                f"upgrade oban@head`) against this database first ({exc.orig})"
            ) from exc
        hint = _sqlite_hint(exc.orig)
        raise DatabaseError(f"database error: {exc.orig}{hint}") from exc
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"database error: {exc}") from exc


_SQLITE_HINTS = {
    "database or disk is full": (
        "the disk holding the SQLite file, or the connection's max_page_count, has no "
        "room left: free space, then retry the operation"
    ),
    "attempt to write a readonly database": (
        "this process may not write the SQLite file: give it write access to the file, "
        "its directory and its -wal/-shm files, and open it read-write (not mode=ro or "
        "PRAGMA query_only), then retry the operation"
    ),
    "unable to open database file": (
        "SQLite cannot open the file or its -wal/-shm files: check that the directory "
        "exists and that this process may read and write it"
    ),
    "database is locked": (
        "another connection held SQLite's write lock past the busy timeout: retry, and "
        "keep other writers' transactions short"
    ),
}
"""What to do about SQLite's refusals, by the start of SQLite's own message (the
same on every Python; ``sqlite_errorcode`` is 3.11+), which says what happened,
not what to do about it."""


def _sqlite_hint(error: BaseException | None) -> str:
    """``"; <what to do>"`` for a SQLite error whose remedy is known; else ``""``."""
    if not isinstance(error, sqlite3.Error):
        return ""
    text = str(error)
    for start, hint in _SQLITE_HINTS.items():
        if text.startswith(start):
            return f"; {hint}"
    return ""


_REPLACE_ATTEMPTS = 5
"""How often a unique insert re-reads a duplicate that changed state under its replace."""


def _sorted_fetch(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda job: (job.priority, job.scheduled_at, job.id))


# -- rows that cannot become jobs ---------------------------------------------------

# NULL reads as empty: Elixir Oban's meta, tags and attempted_by are nullable.
_OBJECT = (dict, type(None))
_ARRAY = (list, type(None))

_SHAPES: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
    ("args", dict, "a JSON object"),
    ("meta", _OBJECT, "a JSON object"),
    ("tags", _ARRAY, "a JSON array of strings"),
    ("errors", _ARRAY, "a JSON array"),
    ("attempted_by", _ARRAY, "a JSON array of strings"),
)
"""The JSON columns a Job needs in a given shape: name, accepted types, what is expected."""

_CLIP = 200
"""How much of an unreadable stored value an error message quotes."""


def _unreadable(row: Mapping[Any, Any]) -> dict[str, str] | None:
    """Which JSON columns of ``row`` cannot become a Job's fields, and why; None if all can.

    A row written by hand or by another program may hold text that is not
    JSON (SQLite; the column reads as :class:`~oban.schema.Undecodable`) or
    JSON of the wrong kind (an array as args, on either database). Building a
    Job from it anyway would hand a worker a list where it expects a dict, or
    break the runtime's own reads of ``meta``. On the common path this is
    five ``isinstance`` checks (spelt out: this runs for every fetched row).
    """
    if (
        isinstance(row["args"], dict)
        and isinstance(row["meta"], _OBJECT)
        and isinstance(row["tags"], _ARRAY)
        and isinstance(row["errors"], _ARRAY)
        and isinstance(row["attempted_by"], _ARRAY)
    ):
        return None
    problems: dict[str, str] = {}
    for name, kinds, expected in _SHAPES:
        value = row[name]
        if not isinstance(value, kinds):
            problems[name] = _describe(name, value, expected)
    return problems


def _describe(name: str, value: object, expected: str) -> str:
    if isinstance(value, Undecodable):
        return f"could not decode {name}: {value.reason}; stored text: {_clip(value.stored)}"
    stored = orjson.dumps(value, default=repr)
    return (
        f"could not decode {name}: {_json_kind(value)} where {expected} is expected; "
        f"stored value: {_clip(stored)}"
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


def _clip(stored: str | bytes) -> str:
    text = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else stored
    return repr(text if len(text) <= _CLIP else text[:_CLIP] + "...")


_EMPTY: dict[str, type[dict[str, Any]] | type[list[Any]]] = {
    "args": dict,
    "meta": dict,
    "tags": list,
    "errors": list,
    "attempted_by": list,
}


def _job(row: Mapping[Any, Any]) -> Job:
    """A stored row as a Job, whatever it holds (for reads: get, list, unique lookups).

    A column that cannot be read comes back empty (``{}`` or ``[]``) and is
    named, with the reason and the stored text, in
    ``job.extra["undecodable"]`` (column -> message): one such row must not
    make a whole listing fail, and its other fields are still worth seeing.
    """
    problems = _unreadable(row)
    if problems is None:
        return Job.from_row(dict(row))
    job = Job.from_row({**row, **{name: _EMPTY[name]() for name in problems}})
    job.extra["undecodable"] = problems
    return job


class SqlEngine(ClusterSql):
    """Common SQL for engines that store jobs in ``oban_jobs``."""

    name: ClassVar[str] = "sql"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PERSISTENT, Capability.TRANSACTIONAL}
    )

    def __init__(
        self, bind: sa.Engine, *, prefix: str | None = None, owns_bind: bool = False
    ) -> None:
        self.bind = bind
        self.prefix = prefix
        self._owns_bind = owns_bind
        self._options: dict[str, Any] = {"schema_translate_map": {None: prefix}} if prefix else {}

    # -- hooks for dialects ---------------------------------------------------

    def _append_error(
        self, column: ColumnElement[Any], entry: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        raise NotImplementedError

    def _merge_meta(self, keys: Sequence[str]) -> ColumnElement[Any]:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with translate_errors(), self.bind.begin() as conn:
            yield conn

    def autocommit(self) -> AbstractContextManager[Connection]:
        return self.transaction()

    def single_statement_insert(self, jobs: Sequence[Job]) -> bool:
        return False

    def single_statement_ack(self, acks: Sequence[Ack]) -> bool:
        return False

    def close(self) -> None:
        if self._owns_bind:
            self.bind.dispose()

    # -- operations -------------------------------------------------------------

    def execute(
        self, conn: Connection, statement: sa.Executable, params: Any = None
    ) -> sa.CursorResult[Any]:
        with translate_errors():
            return conn.execute(statement, params, execution_options=self._options)

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        """Insert ``jobs``; unique ones only if no duplicate exists (then the duplicate).

        Runs of plain jobs go in as one batch each. Unique jobs are checked one
        by one, in input order, after :meth:`_lock_unique` has made concurrent
        inserts of the same unique job wait for each other, so two equal
        unique jobs in one batch give one row and one conflict. The result is
        in input order either way.
        """
        if not jobs:
            return []
        unique = [job for job in jobs if job.unique is not None]
        if not unique:
            return self._insert_plain(conn, jobs, now)
        self._lock_unique(conn, unique)
        results: list[Job] = []
        plain: list[Job] = []
        for job in jobs:
            if job.unique is None:
                plain.append(job)
                continue
            if plain:
                results.extend(self._insert_plain(conn, plain, now))
                plain = []
            results.append(self._insert_unique(conn, job, job.unique, now))
        if plain:
            results.extend(self._insert_plain(conn, plain, now))
        return results

    def _insert_plain(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        """Insert ``jobs`` as they are, in one statement; returned in input order."""
        rows = [self._insert_values(job, now) for job in jobs]
        # Only ids come back: every other value is the one we sent, and
        # decoding 10,000 rows of JSON and timestamps would double the cost.
        statement = sa.insert(oban_jobs).returning(c.id, sort_by_parameter_order=True)
        ids = self.execute(conn, statement, rows).scalars().all()
        return [Job.from_insert(row, job_id) for row, job_id in zip(rows, ids, strict=True)]

    # -- unique jobs ------------------------------------------------------------------

    def _lock_unique(self, conn: Connection, jobs: Sequence[Job]) -> None:
        """Make inserts of these unique jobs in other transactions wait for this one.

        Held until ``conn``'s transaction ends, so a concurrent insert of the
        same job looks for duplicates only after this one committed (and sees
        its row) or rolled back (and sees none). Dialects implement it.
        """
        raise NotImplementedError

    def _json_equals(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        """``column`` (args or meta) equals the JSON document ``value``."""
        raise NotImplementedError

    def _json_key_equals(
        self, column: ColumnElement[Any], key: str, value: Any
    ) -> ColumnElement[bool]:
        """``column`` has top-level ``key`` and its value equals ``value`` as JSON."""
        raise NotImplementedError

    def _json_key_missing(self, column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
        """``column`` has no top-level ``key``."""
        raise NotImplementedError

    def _tags_value(self, conn: Connection, tags: list[str]) -> Any:
        """``tags`` as the tags column of this table takes them in an UPDATE."""
        return tags

    def _unique_conditions(
        self, job: Job, spec: UniqueSpec, now: datetime
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [c.state.in_(spec.states)]
        since = spec.since(now)
        if since is not None:
            stamp = c.scheduled_at if spec.timestamp == "scheduled_at" else c.inserted_at
            conditions.append(stamp >= since)
        for name, value in spec.compared(job).items():
            if name == "worker":
                conditions.append(c.worker == value)
            elif name == "queue":
                conditions.append(c.queue == value)
            elif not spec.keys:
                conditions.append(self._json_equals(c[name], value))
            else:
                for key in spec.keys:
                    if key in value:
                        conditions.append(self._json_key_equals(c[name], key, value[key]))
                    else:
                        conditions.append(self._json_key_missing(c[name], key))
        return conditions

    def _find_duplicate(
        self, conn: Connection, job: Job, spec: UniqueSpec, now: datetime
    ) -> Job | None:
        """The oldest stored job ``job`` would duplicate under ``spec``, or None."""
        statement = (
            sa.select(oban_jobs)
            .where(*self._unique_conditions(job, spec, now))
            .order_by(c.id)
            .limit(1)
        )
        row = self.execute(conn, statement).mappings().first()
        return None if row is None else _job(row)

    def _insert_unique(self, conn: Connection, job: Job, spec: UniqueSpec, now: datetime) -> Job:
        existing: Job | None = None
        # A replace is guarded by the state it was chosen for; if a fetch or an
        # ack moved the row meanwhile (PostgreSQL), look again and re-decide.
        for _ in range(_REPLACE_ATTEMPTS):
            existing = self._find_duplicate(conn, job, spec, now)
            if existing is None:
                return self._insert_plain(conn, [job], now)[0]
            fields = job.replace.fields_for(existing.state) if job.replace else ()
            if not fields:
                break
            replaced = self._replace(conn, existing, job, fields, now)
            if replaced is not None:
                existing = replaced
                break
        assert existing is not None
        existing.conflict = True
        return existing

    def _replace(
        self, conn: Connection, existing: Job, job: Job, fields: Sequence[str], now: datetime
    ) -> Job | None:
        """Copy ``fields`` of ``job`` onto ``existing``'s row if it is still in its state."""
        values: dict[str, Any] = {}
        for name in fields:
            if name == "scheduled_at":
                scheduled_at = job.scheduled_for(now)
                values["scheduled_at"] = scheduled_at
                # Moving an available/scheduled job in time moves its state too.
                if existing.state in (JobState.AVAILABLE, JobState.SCHEDULED):
                    due = scheduled_at <= now
                    values["state"] = JobState.AVAILABLE if due else JobState.SCHEDULED
            elif name == "max_attempts":
                # Never below the attempts already made (the attempt_range check).
                wanted = sa.literal(job.max_attempts, sa.SmallInteger())
                values["max_attempts"] = sa.case((c.attempt > wanted, c.attempt), else_=wanted)
            elif name == "tags":
                values["tags"] = self._tags_value(conn, job.tags)
            else:
                values[name] = getattr(job, name)
        statement = (
            sa.update(oban_jobs)
            .where(c.id == existing.id, c.state == existing.state)
            .values(values)
            .returning(*c)
        )
        row = self.execute(conn, statement).mappings().first()
        return None if row is None else _job(row)

    @staticmethod
    def _insert_values(job: Job, now: datetime) -> dict[str, Any]:
        scheduled_at = job.scheduled_for(now)
        state = job.state
        if state is JobState.AVAILABLE and scheduled_at > now:
            state = JobState.SCHEDULED
        return {
            "state": state,
            "queue": job.queue,
            "worker": job.worker,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "priority": job.priority,
            "args": job.args,
            "meta": job.meta,
            "tags": job.tags,
            "errors": job.errors,
            "attempted_by": job.attempted_by,
            "inserted_at": now,
            "scheduled_at": scheduled_at,
        }

    def fetch_jobs(
        self, conn: Connection, queue: str, demand: int, attempted_by: list[str], now: datetime
    ) -> list[Job]:
        """Claim up to ``demand`` available jobs of ``queue`` for ``attempted_by``.

        A claimed row that cannot become a job (args that are not a JSON
        object, meta/tags/errors that cannot be read: see :func:`_unreadable`)
        is not returned: in the same transaction it is ``discarded`` with an
        error saying what could not be read, since no retry would read it
        better. The other rows of the fetch are returned as usual, so one bad
        row never holds up its queue.
        """
        if demand <= 0:
            return []
        params = {"b_queue": queue, "b_demand": demand, "b_now": now, "b_by": attempted_by}
        jobs: list[Job] = []
        unreadable: list[tuple[Mapping[Any, Any], dict[str, str]]] = []
        for row in self.execute(conn, self._fetch_statement, params).mappings():
            problems = _unreadable(row)
            if problems is None:
                jobs.append(Job.from_row(dict(row)))
            else:
                unreadable.append((row, problems))
        if unreadable:
            self._discard_unreadable(conn, unreadable, now)
        return _sorted_fetch(jobs)

    @cached_property
    def _fetch_statement(self) -> sa.Update:
        """The fetch, built once with bound parameters: building it and its cache
        key anew cost about 0.2 ms a fetch, on the path of every job."""
        candidates = (
            sa.select(c.id)
            .where(c.state == JobState.AVAILABLE, c.queue == sa.bindparam("b_queue"))
            .order_by(c.priority, c.scheduled_at, c.id)
            .limit(sa.bindparam("b_demand", type_=sa.Integer()))
            .with_for_update(skip_locked=True)
        )
        return (
            sa.update(oban_jobs)
            .where(self._id_in_batch(candidates.scalar_subquery()))
            .values(
                state=JobState.EXECUTING,
                attempt=c.attempt + 1,
                attempted_at=sa.bindparam("b_now", type_=c.attempted_at.type),
                attempted_by=sa.bindparam("b_by", type_=c.attempted_by.type),
            )
            .returning(*c)
        )

    def _discard_unreadable(
        self,
        conn: Connection,
        rows: Sequence[tuple[Mapping[Any, Any], dict[str, str]]],
        now: datetime,
    ) -> None:
        """Discard claimed rows that cannot become jobs, each with an error saying why.

        The entry is appended to ``errors`` like any failure's; when
        ``errors`` itself cannot be read (or is NULL) it is replaced by a list
        holding just this entry, which is all that can be said about it.
        """
        for row, problems in rows:
            reason = "; ".join(problems.values())
            entry = error_entry(row["attempt"], now, f"{reason} (discarded without running)")
            if "errors" in problems or row["errors"] is None:
                errors: Any = sa.bindparam(None, [entry], type_=Json())
            else:
                errors = self._append_error(c.errors, sa.bindparam(None, entry, type_=Json()))
            statement = (
                sa.update(oban_jobs)
                .where(c.id == row["id"], c.state == JobState.EXECUTING)
                .values(state=JobState.DISCARDED, discarded_at=now, errors=errors)
            )
            self.execute(conn, statement)
            logger.warning(
                "job %s in queue %r cannot be read and was discarded: %s",
                row["id"],
                row["queue"],
                reason,
            )

    def ack_jobs(self, conn: Connection, acks: Sequence[Ack]) -> None:
        groups: dict[tuple[JobState, tuple[str, ...], bool, bool], list[Ack]] = defaultdict(list)
        for ack in acks:
            key = (ack.state, tuple(sorted(ack.meta)), ack.error is not None, ack.snoozed)
            groups[key].append(ack)
        for (state, meta_keys, has_error, snoozed), group in groups.items():
            statement = self._ack_statement(state, meta_keys, has_error=has_error, snoozed=snoozed)
            params = [
                {
                    "b_id": ack.job_id,
                    "b_attempt": ack.attempt,
                    "b_at": ack.at,
                    "b_scheduled_at": ack.scheduled_at,
                    "b_error": ack.error,
                    **{f"b_meta_{index}": ack.meta[key] for index, key in enumerate(meta_keys)},
                }
                for ack in group
            ]
            self.execute(conn, statement, params)

    def _ack_statement(
        self, state: JobState, meta_keys: tuple[str, ...], *, has_error: bool, snoozed: bool
    ) -> sa.Update:
        values: dict[str, Any] = {"state": state}
        if state is JobState.COMPLETED:
            values["completed_at"] = sa.bindparam("b_at", type_=c.completed_at.type)
        elif state is JobState.DISCARDED:
            values["discarded_at"] = sa.bindparam("b_at", type_=c.discarded_at.type)
        elif state is JobState.CANCELLED:
            values["cancelled_at"] = sa.bindparam("b_at", type_=c.cancelled_at.type)
        elif state is JobState.AVAILABLE:
            # Interrupted (shutdown, rescue): the attempt did not really happen.
            values["attempt"] = c.attempt - 1
        if state in (JobState.RETRYABLE, JobState.SCHEDULED):
            values["scheduled_at"] = sa.bindparam("b_scheduled_at", type_=c.scheduled_at.type)
        if has_error:
            values["errors"] = self._append_error(c.errors, sa.bindparam("b_error", type_=Json()))
        if meta_keys:
            values["meta"] = self._merge_meta(meta_keys)
        if snoozed:
            values["max_attempts"] = c.max_attempts + 1
        return attempt_update(values)

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> dict[str, int]:
        due = (
            sa.select(c.id)
            .where(c.state.in_([JobState.SCHEDULED, JobState.RETRYABLE]), c.scheduled_at <= now)
            .order_by(c.scheduled_at, c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.update(oban_jobs)
            .where(c.id.in_(due.scalar_subquery()))
            .values(state=JobState.AVAILABLE)
            .returning(c.queue)
        )
        return dict(sorted(Counter(self.execute(conn, statement).scalars()).items()))

    def get_job(self, conn: Connection, job_id: int) -> Job | None:
        """The job with ``job_id``, or None.

        A row with a column that cannot be read still comes back: that column
        empty and named, with why, in ``job.extra["undecodable"]``.
        """
        row = self.execute(conn, sa.select(oban_jobs).where(c.id == job_id)).mappings().first()
        return None if row is None else _job(row)

    # -- job management and queries ------------------------------------------------------

    def _id_in(self, ids: Sequence[int]) -> ColumnElement[bool]:
        """``id IN (...)``; dialects pass the ids as one parameter instead, so a
        list of any length stays under the driver's limit on parameters."""
        return c.id.in_(list(ids))

    def _where(self, where: JobFilter) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if where.ids is not None:
            conditions.append(self._id_in(where.ids))
        if where.queues is not None:
            conditions.append(c.queue.in_(where.queues))
        if where.workers is not None:
            conditions.append(c.worker.in_(where.workers))
        if where.states is not None:
            conditions.append(c.state.in_(where.states))
        return conditions

    def list_jobs(
        self, conn: Connection, where: JobFilter, limit: int, before: int | None
    ) -> list[Job]:
        """Matching jobs, newest first; rows that cannot be read are listed as
        :meth:`get_job` returns them, so one bad row never hides the others."""
        if where.matches_nothing:
            return []
        statement = sa.select(oban_jobs).where(*self._where(where))
        if before is not None:
            statement = statement.where(c.id < before)
        statement = statement.order_by(c.id.desc()).limit(limit)
        return [_job(row) for row in self.execute(conn, statement).mappings()]

    def cancel_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        states = where.only(CANCELLABLE)
        if where.matches_nothing or not states:
            return Changed()
        conditions = self._where(where)
        # Two statements are exact only where writers are serialised (SQLite's
        # BEGIN IMMEDIATE); Basic overrides this with a single statement.
        executing: tuple[int, ...] = ()
        if JobState.EXECUTING in states:
            found = sa.select(c.id).where(*conditions, c.state == JobState.EXECUTING)
            executing = tuple(int(job_id) for job_id in self.execute(conn, found).scalars())
        statement = (
            sa.update(oban_jobs)
            .where(*conditions, c.state.in_(states))
            .values(state=JobState.CANCELLED, cancelled_at=now)
        )
        count = self.execute(conn, statement).rowcount
        return Changed(count=count, executing=executing)

    def _retry_values(self, now: datetime) -> dict[str, Any]:
        return {
            "state": JobState.AVAILABLE,
            # GREATEST(max_attempts, attempt + 1), in a form both dialects know:
            # a job that used up its attempts gets one more, as Elixir Oban does.
            "max_attempts": sa.case(
                (c.max_attempts > c.attempt, c.max_attempts), else_=c.attempt + 1
            ),
            "scheduled_at": now,
            "completed_at": None,
            "discarded_at": None,
            "cancelled_at": None,
        }

    def retry_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        states = where.only(state for state in JobState if state not in NOT_RETRYABLE)
        if where.matches_nothing or not states:
            return Changed()
        conditions = [*self._where(where), c.state.in_(states)]
        # The queues first (a small DISTINCT), so a retry of a million jobs does
        # not bring a million rows back just to learn which producers to wake.
        queues = sa.select(c.queue).where(*conditions).distinct()
        woken = tuple(sorted(self.execute(conn, queues).scalars()))
        statement = sa.update(oban_jobs).where(*conditions).values(self._retry_values(now))
        count = self.execute(conn, statement).rowcount
        return Changed(count=count, queues=woken if count else ())

    def delete_jobs(self, conn: Connection, where: JobFilter) -> Changed:
        states = where.only(state for state in JobState if state is not JobState.EXECUTING)
        if where.matches_nothing or not states:
            return Changed()
        statement = sa.delete(oban_jobs).where(*self._where(where), c.state.in_(states))
        return Changed(count=self.execute(conn, statement).rowcount)

    def claimed_jobs(self, conn: Connection, queue: str, producer: str) -> list[tuple[int, int]]:
        statement = sa.select(c.id, c.attempt).where(
            c.state == JobState.EXECUTING, c.queue == queue, self._attempted_by(1) == producer
        )
        rows = self.execute(conn, statement).mappings()
        return [(int(row["id"]), int(row["attempt"])) for row in rows]

    def cancelled_ids(self, conn: Connection, job_ids: Sequence[int]) -> list[int]:
        if not job_ids:
            return []
        statement = sa.select(c.id).where(self._id_in(job_ids), c.state == JobState.CANCELLED)
        return [int(job_id) for job_id in self.execute(conn, statement).scalars()]
