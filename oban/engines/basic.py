"""Basic: jobs in PostgreSQL through psycopg 3, shared with Elixir Oban and oban-py.

The SQL is :class:`~oban.engines.sql.SqlEngine`'s; PostgreSQL adds what
SQLite cannot do:

* **fetch** is one ``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE
  SKIP LOCKED LIMIT n)) RETURNING``, each claimed row then found by its
  primary key (``id IN (...)`` may hash-join against a scan of the table):
  concurrent fetches on any number of nodes skip each other's rows instead
  of waiting, and never claim a row twice;
* **inserts** of a small batch are one ``INSERT ... SELECT ... FROM
  jsonb_array_elements(:rows)`` with the ``pg_notify`` that tells every
  node's producers of the queues that got available jobs inside the same
  statement: one round trip, and on autocommit (an enqueue in no caller's
  transaction) no BEGIN or COMMIT either. A big batch goes in by ``COPY``
  with ids drawn from the table's sequence first
  (:mod:`oban.engines.copy_rows`), two round trips and half the time, its
  ``pg_notify`` a statement after it. NOTIFY is transactional, so a
  rolled-back enqueue tells nobody;
* **acks**: the completions of a batch are one ``UPDATE ... FROM unnest(...)``
  statement; other outcomes one ``executemany`` per kind, which psycopg 3
  sends pipelined (one round trip per batch);
* a **listener** (LISTEN on a dedicated connection) lets the runtime's
  notifier wake producers at once.

The table may have been created by a peer, and the peers disagree on two
column types: Elixir Oban has ``errors jsonb[]`` and ``tags text[]``, oban-py
has ``errors jsonb`` and ``tags jsonb``; ours has ``errors jsonb`` and ``tags
text[]``. Converting a peer's table would break that peer, so the engine
looks at the table once and writes each column in the type it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ConfigError
from ..job import Job, JobState
from ..outcomes import Ack
from ..schema import JOB_STATE, Json, oban_jobs
from ..unique import lock_key
from .base import CANCELLABLE, Capability, Changed, JobFilter
from .copy_rows import COPY_THRESHOLD, copy_rows, copyable
from .listener import Listener
from .signals import (
    INSERT,
    LEADER,
    SIGNAL,
    channel_name,
    encode,
    inserted,
    leader_down,
    pkill,
)
from .sql import SqlEngine, translate_errors

__all__ = ["Basic", "TableShape"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

# With, on the ``id`` row, the sequence a COPY draws ids from and whether ids
# are ``GENERATED ALWAYS`` (then none can be given: the engine keeps the INSERT).
_COLUMN_TYPES = sa.text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_name, "
    "CASE WHEN a.attname = 'id' THEN pg_get_serial_sequence(format('%I.%I', n.nspname, "
    "c.relname), 'id') END AS id_sequence, a.attidentity = 'a' AS always "
    "FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = 'oban_jobs' AND n.nspname = COALESCE(:schema, current_schema()) "
    "AND a.attnum > 0 AND NOT a.attisdropped"
).bindparams(sa.bindparam("schema", type_=sa.Text()))

_LOCK_ONE = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(
    sa.bindparam("key", type_=sa.BigInteger())
)

# The subquery's ORDER BY fixes the order the locks are taken in.
_LOCK_MANY = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(:keys) AS k ORDER BY k) AS ks"
).bindparams(sa.bindparam("keys", type_=postgresql.ARRAY(sa.BigInteger())))

_NOTIFY = sa.text(
    "SELECT pg_notify(:channel, payload) FROM unnest(:payloads) AS payload"
).bindparams(
    sa.bindparam("channel", type_=sa.Text()),
    sa.bindparam("payloads", type_=postgresql.ARRAY(sa.Text())),
)


def check_prefix(prefix: str | None) -> str | None:
    """A prefix is a PostgreSQL schema name: a plain identifier, nothing to escape."""
    if prefix is None:
        return None
    if not isinstance(prefix, str) or not _IDENTIFIER.fullmatch(prefix):
        raise ConfigError(
            f"prefix must be a PostgreSQL schema name (letters, digits, _ and $, not "
            f"starting with a digit, at most 63 characters), got {prefix!r}"
        )
    return prefix


_CLUSTER_TIME = sa.select(sa.func.statement_timestamp())


class JsonbArray(sa.TypeDecorator[list[Any]]):
    """``jsonb[]``, Elixir Oban's type for ``errors``: a list of JSON values."""

    impl = postgresql.ARRAY(postgresql.JSONB())
    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> list[Any]:
        return [] if value is None else list(value)


@dataclass(frozen=True)
class TableShape:
    """Which peer's column types an ``oban_jobs`` table has; inserts and acks follow it."""

    errors_array: bool = False
    """``errors`` is ``jsonb[]`` (Elixir Oban) rather than ``jsonb``."""
    tags_json: bool = False
    """``tags`` is ``jsonb`` (oban-py) rather than ``text[]``."""
    id_sequence: str | None = None
    """The sequence of ``id``, from which big batches draw their ids for COPY;
    None where ids cannot be given (see :mod:`oban.engines.copy_rows`)."""

    @classmethod
    def from_types(cls, types: dict[str, str], id_sequence: str | None = None) -> TableShape:
        return cls(
            errors_array=types.get("errors", "jsonb") == "jsonb[]",
            tags_json=types.get("tags", "text[]") == "jsonb",
            id_sequence=id_sequence,
        )


class Basic(SqlEngine):
    """The PostgreSQL engine (``postgresql+psycopg://`` URLs)."""

    name: ClassVar[str] = "basic"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PERSISTENT,
            Capability.SHARED,
            Capability.TRANSACTIONAL,
            Capability.NOTIFY,
            Capability.UNIQUE,
            Capability.CLUSTER,
        }
    )

    def __init__(
        self, bind: sa.Engine, *, prefix: str | None = None, owns_bind: bool = False
    ) -> None:
        if bind.dialect.name != "postgresql":
            raise ConfigError(
                f"the Basic engine needs a postgresql+psycopg:// URL, got {bind.url!r}"
            )
        if bind.dialect.driver != "psycopg":
            raise ConfigError(
                f"the Basic engine runs on psycopg 3: use a postgresql+psycopg:// URL "
                f"(got driver {bind.dialect.driver!r}; install with `pip install oban[postgres]`)"
            )
        super().__init__(bind, prefix=check_prefix(prefix), owns_bind=owns_bind)
        self._shape: TableShape | None = None
        self._insert_statements: dict[TableShape, sa.Select[Any]] = {}

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A pooled connection in psycopg's autocommit mode: the fetch's one
        statement is its own transaction, one round trip instead of three
        (BEGIN, the statement, COMMIT) on the path of every job's pickup."""
        with (
            translate_errors(),
            self.bind.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            yield conn

    # -- the table's shape ----------------------------------------------------------

    def shape(self, conn: Connection) -> TableShape:
        """The shape of this prefix's ``oban_jobs``, read once and then remembered.

        While the table does not exist yet the default shape is assumed and
        not remembered, so a later ``migrate()`` (or a peer's install) is seen.
        """
        if self._shape is not None:
            return self._shape
        rows = self.execute(conn, _COLUMN_TYPES, {"schema": self.prefix}).mappings().all()
        types = {str(row["attname"]): str(row["type_name"]) for row in rows}
        if not rows:
            return TableShape.from_types(types)
        ids = next((row for row in rows if row["attname"] == "id"), None)
        sequence = None if ids is None or ids["always"] else ids["id_sequence"]
        self._shape = TableShape.from_types(types, sequence)
        return self._shape

    # -- dialect hooks ----------------------------------------------------------------

    def _append_error(
        self, column: ColumnElement[Any], entry: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        if self._shape is not None and self._shape.errors_array:
            return sa.func.array_append(column, entry, type_=JsonbArray())
        return column.op("||", return_type=Json())(sa.func.jsonb_build_array(entry, type_=Json()))

    def _merge_meta(self, keys: Sequence[str]) -> ColumnElement[Any]:
        pairs: list[Any] = []
        for index, key in enumerate(keys):
            pairs.append(sa.literal(key, sa.Text()))
            pairs.append(sa.bindparam(f"b_meta_{index}", type_=Json()))
        # Elixir Oban's meta column is nullable; || with NULL would stay NULL.
        current = sa.func.coalesce(oban_jobs.c.meta, sa.cast(sa.literal("{}"), postgresql.JSONB()))
        return current.op("||", return_type=Json())(
            sa.func.jsonb_build_object(*pairs, type_=Json())
        )

    # -- operations -----------------------------------------------------------------------

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        saved = super().insert_jobs(conn, jobs, now)
        # Plain jobs told their queues as they went in (_insert_plain); unique
        # ones are told here, conflicts included: a replace may have made one available.
        unique = (
            (job.state, job.queue)
            for job, given in zip(saved, jobs, strict=True)
            if given.unique is not None
        )
        self.notify(conn, INSERT, _inserted_payloads(unique))
        return saved

    def single_statement_insert(self, jobs: Sequence[Job]) -> bool:
        """A small batch of plain jobs is one statement, NOTIFY included."""
        return len(jobs) < COPY_THRESHOLD and all(job.unique is None for job in jobs)

    def _insert_plain(self, conn: Connection, jobs: Sequence[Job], now: datetime) -> list[Job]:
        shape = self.shape(conn)
        if len(jobs) >= COPY_THRESHOLD and shape.id_sequence is not None and copyable(conn):
            saved = copy_rows(
                conn,
                self.prefix,
                shape.id_sequence,
                jobs,
                lambda job: self._insert_values(job, now),
                Job.from_insert,
                errors_array=shape.errors_array,
                tags_json=shape.tags_json,
            )
            self.notify(conn, INSERT, _inserted_payloads((job.state, job.queue) for job in saved))
            return saved
        rows = [self._insert_values(job, now) for job in jobs]
        with translate_errors():
            payloads = _inserted_payloads((row["state"], row["queue"]) for row in rows)
            result = conn.execute(
                self._insert_statement(shape),
                {
                    "b_rows": _encode_rows(rows),
                    "b_channel": channel_name(self.prefix, INSERT),
                    "b_payloads": [encode(payload) for payload in payloads],
                },
                execution_options=self._options,
            )
            # Identity values are drawn as rows are inserted, in the ORDER BY
            # of the array's ordinality: sorted ids line up with the input rows.
            ids = sorted(int(job_id) for job_id in result.scalars())
        return [Job.from_insert(row, job_id) for row, job_id in zip(rows, ids, strict=True)]

    # -- unique jobs ------------------------------------------------------------------

    def _lock_unique(self, conn: Connection, jobs: Sequence[Job]) -> None:
        """``pg_advisory_xact_lock`` on a 64-bit hash of each job's unique values.

        Blocking and held to the end of the transaction: a concurrent insert
        of the same job waits, then (READ COMMITTED: each statement sees what
        committed before it) finds the winner's row, or none if the winner
        rolled back. A try-lock would instead report a conflict with a job
        that may never commit. The keys are taken in sorted order, so two
        batches holding the same jobs in different orders cannot deadlock.
        """
        keys = sorted({lock_key(job.unique, job, self.prefix or "") for job in jobs if job.unique})
        if len(keys) == 1:
            self.execute(conn, _LOCK_ONE, {"key": keys[0]})
        elif keys:
            self.execute(conn, _LOCK_MANY, {"keys": keys})

    def _json_equals(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        # jsonb equality: key order and whitespace do not matter.
        return column.op("=")(_jsonb_param(value))

    def _json_key_equals(
        self, column: ColumnElement[Any], key: str, value: Any
    ) -> ColumnElement[bool]:
        # ``args -> key`` is jsonb (a JSON null is 'null', not SQL NULL).
        return _member(column, key).op("=")(_jsonb_param(value))

    def _json_key_missing(self, column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
        return _member(column, key).is_(None)

    def _tags_value(self, conn: Connection, tags: list[str]) -> Any:
        if self.shape(conn).tags_json:
            return _jsonb_param(tags)
        return tags

    def _insert_statement(self, shape: TableShape) -> sa.Select[Any]:
        """``WITH saved AS (INSERT ... SELECT ... FROM jsonb_array_elements(:rows)
        RETURNING id) SELECT id, (SELECT count(pg_notify(...)) ...) FROM saved``.

        The whole batch travels as one JSON document in one parameter, so any
        number of jobs is one statement and one round trip; PostgreSQL parses
        the JSON in C, where a multi-row VALUES list would cost 13 parameters
        per row (at most 65,535 per statement) and much client-side work.
        Only ids come back: every other value is the one we sent.
        """
        cached = self._insert_statements.get(shape)
        if cached is not None:
            return cached
        rows = (
            sa.func.jsonb_array_elements(_jsonb(sa.bindparam("b_rows", type_=_UntypedText())))
            .table_valued(sa.column("doc", postgresql.JSONB()), with_ordinality="ord")
            .render_derived(name="rows")
        )
        doc = rows.c.doc

        def text(name: str) -> ColumnElement[str]:
            field: ColumnElement[str] = doc[name].astext
            return field

        values: dict[str, Any] = {
            "state": sa.cast(text("state"), JOB_STATE),
            "queue": text("queue"),
            "worker": text("worker"),
            "attempt": sa.cast(text("attempt"), sa.Integer()),
            "max_attempts": sa.cast(text("max_attempts"), sa.Integer()),
            "priority": sa.cast(text("priority"), sa.Integer()),
            "args": doc["args"],
            "meta": doc["meta"],
            "tags": doc["tags"] if shape.tags_json else _text_array(doc["tags"], rows),
            "errors": _jsonb_array(doc["errors"], rows) if shape.errors_array else doc["errors"],
            "attempted_by": _text_array(doc["attempted_by"], rows),
            "inserted_at": sa.cast(text("inserted_at"), sa.DateTime()),
            "scheduled_at": sa.cast(text("scheduled_at"), sa.DateTime()),
        }
        select = sa.select(*values.values()).select_from(rows).order_by(rows.c.ord)
        saved = (
            sa.insert(oban_jobs)
            .from_select(list(values), select)
            .returning(oban_jobs.c.id)
            .cte("saved")
        )
        # The NOTIFY rides in the same statement: an uncorrelated subquery runs
        # once, and PostgreSQL delivers it only if the insert commits.
        payload = sa.func.unnest(
            sa.bindparam("b_payloads", type_=postgresql.ARRAY(sa.Text()))
        ).column_valued("payload")
        told = (
            sa.select(
                sa.func.count(
                    sa.func.pg_notify(sa.bindparam("b_channel", type_=sa.Text()), payload)
                )
            )
            .scalar_subquery()
            .label("told")
        )
        statement = sa.select(saved.c.id, told)
        self._insert_statements[shape] = statement
        return statement

    def single_statement_ack(self, acks: Sequence[Ack]) -> bool:
        """Plain completions (most acks) are one statement over arrays."""
        return all(_plain_completion(ack) for ack in acks)

    def ack_jobs(self, conn: Connection, acks: Sequence[Ack]) -> None:
        if not acks:
            return
        self.shape(conn)
        plain = [ack for ack in acks if _plain_completion(ack)]
        if plain:
            # Most acks: one statement over arrays, not one UPDATE per job.
            params = {
                "b_ids": [ack.job_id for ack in plain],
                "b_attempts": [ack.attempt for ack in plain],
                "b_ats": [ack.at for ack in plain],
            }
            self.execute(conn, _COMPLETE_MANY, params)
        if len(plain) < len(acks):
            super().ack_jobs(conn, [ack for ack in acks if not _plain_completion(ack)])

    def _discard_unreadable(
        self,
        conn: Connection,
        rows: Sequence[tuple[Mapping[Any, Any], dict[str, str]]],
        now: datetime,
    ) -> None:
        # The error is appended in the errors column's own type (jsonb or jsonb[]).
        self.shape(conn)
        super()._discard_unreadable(conn, rows, now)

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> dict[str, int]:
        queues = super().stage_jobs(conn, now, limit)
        self.notify(conn, INSERT, [inserted(queue) for queue in queues])
        return queues

    # -- many nodes (see cluster.py) ---------------------------------------------------------

    def _attempted_by(self, index: int) -> ColumnElement[str]:
        # PostgreSQL arrays count from 1; unqualified, so the prefix applies.
        return sa.literal_column(f"attempted_by[{index + 1:d}]", sa.Text())

    def _id_in_batch(self, batch: Any) -> ColumnElement[bool]:
        # ``id = ANY(ARRAY(batch))``: the ids as one array, each row found through
        # the primary key; ``id IN (batch)`` hash-joins the batch against a scan
        # of the whole table (the pruner's batches: 215 ms -> 42 ms at 1M rows).
        return oban_jobs.c.id == sa.any_(
            sa.func.array(batch, type_=postgresql.ARRAY(oban_jobs.c.id.type))
        )

    def _prepare(self, conn: Connection) -> None:
        self.shape(conn)  # _append_error writes Elixir's jsonb[] errors where it finds them

    def _announce(self, conn: Connection, queues: Sequence[str]) -> None:
        self.notify(conn, INSERT, [inserted(queue) for queue in queues])

    def _signal(self, conn: Connection, payload: dict[str, Any]) -> None:
        self.notify(conn, SIGNAL, [payload])

    def _leader_down(self, conn: Connection, name: str) -> None:
        self.notify(conn, LEADER, [leader_down(name)])

    # -- notifications ----------------------------------------------------------------------

    def notify(self, conn: Connection, name: str, payloads: Sequence[dict[str, Any]]) -> None:
        """Send ``payloads`` on channel ``name`` when ``conn``'s transaction commits.

        One statement for any number of payloads; PostgreSQL drops duplicates
        within a transaction and delivers nothing if it rolls back.
        """
        if not payloads:
            return
        params = {
            "channel": channel_name(self.prefix, name),
            "payloads": [encode(p) for p in payloads],
        }
        self.execute(conn, _NOTIFY, params)

    def cluster_time(self, conn: Connection, fallback: datetime) -> datetime:
        """The server's clock (``statement_timestamp()``, aware UTC): the one clock
        every node shares, for heartbeats and the rescue of orphaned jobs."""
        now: datetime = self.execute(conn, _CLUSTER_TIME).scalar_one()
        return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)

    def connect_params(self) -> dict[str, Any]:
        """``psycopg.connect`` keyword arguments for this engine's database."""
        _args, params = self.bind.dialect.create_connect_args(self.bind.url)
        # SQLAlchemy adds its own adapters map; a plain connection wants psycopg's.
        params.pop("context", None)
        return dict(params)

    def listener(self, names: Iterable[str], *, application_name: str) -> Listener:
        """A LISTEN connection of its own on this engine's channels ``names``
        (``insert``, ``signal``), for the runtime's notifier."""
        return Listener(
            self.connect_params(),
            [channel_name(self.prefix, name) for name in names],
            application_name=application_name,
        )

    # -- job management -----------------------------------------------------------------

    def _id_in(self, ids: Sequence[int]) -> ColumnElement[bool]:
        # ``id = ANY(:ids)``: one array parameter for any number of ids.
        listed = sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.BigInteger()))
        return oban_jobs.c.id == sa.any_(listed)

    def cancel_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        """One ``UPDATE ... FROM (SELECT id, state ... FOR UPDATE)``: the rows are
        locked as they are read, so each one's state before the cancel is exact
        even while other nodes fetch; executing ones get a ``pkill`` signal,
        sent when this transaction commits (never if it rolls back)."""
        states = where.only(CANCELLABLE)
        if where.matches_nothing or not states:
            return Changed()
        target = (
            sa.select(oban_jobs.c.id, oban_jobs.c.state)
            .where(*self._where(where), oban_jobs.c.state.in_(states))
            .with_for_update()
            .subquery("target")
        )
        statement = (
            sa.update(oban_jobs)
            .where(oban_jobs.c.id == target.c.id)
            .values(state=JobState.CANCELLED, cancelled_at=now)
            .returning(oban_jobs.c.id, target.c.state)
        )
        rows = self.execute(conn, statement).mappings().all()
        executing = tuple(
            sorted(int(row["id"]) for row in rows if row["state"] is JobState.EXECUTING)
        )
        self.notify(conn, SIGNAL, [pkill(job_id) for job_id in executing])
        return Changed(count=len(rows), executing=executing)

    def retry_jobs(self, conn: Connection, where: JobFilter, now: datetime) -> Changed:
        changed = super().retry_jobs(conn, where, now)
        self.notify(conn, INSERT, [inserted(queue) for queue in changed.queues])
        return changed


def _inserted_payloads(states: Iterable[tuple[JobState, str]]) -> list[dict[str, Any]]:
    """One ``oban_insert`` payload per queue that got available jobs, from the
    (state, queue) of each job saved or about to be."""
    queues = {queue for state, queue in states if state is JobState.AVAILABLE}
    return [inserted(queue) for queue in sorted(queues)]


class _UntypedText(sa.types.UserDefinedType[str]):
    """A text parameter sent without a type (no ``::VARCHAR``).

    ``CAST(:rows AS jsonb)`` then makes the parameter itself ``jsonb``, parsed
    once as it is bound; a ``varchar`` parameter would instead be converted
    while the statement is planned, which costs several times as much.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT"


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def _encode_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The insert's rows as one JSON array (timestamps as naive UTC ISO text)."""
    return orjson.dumps(
        [
            {
                **row,
                "inserted_at": _naive_utc(row["inserted_at"]),
                "scheduled_at": _naive_utc(row["scheduled_at"]),
            }
            for row in rows
        ]
    ).decode()


def _jsonb(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.cast(value, postgresql.JSONB())


def _jsonb_param(value: Any) -> ColumnElement[Any]:
    """``value`` as a bound jsonb parameter (JSON text cast once, like the insert's rows)."""
    return _jsonb(sa.bindparam(None, orjson.dumps(value).decode(), type_=_UntypedText()))


def _member(column: ColumnElement[Any], key: str) -> ColumnElement[Any]:
    """``column -> key``: the jsonb value under a top-level key, SQL NULL if absent."""
    return column.op("->", return_type=postgresql.JSONB())(sa.bindparam(None, key, type_=sa.Text()))


def _text_array(value: ColumnElement[Any], rows: Any) -> ColumnElement[Any]:
    """A JSON array of strings to ``text[]`` (a subquery on the current row of ``rows``)."""
    elements = sa.select(sa.func.jsonb_array_elements_text(value)).correlate(rows).scalar_subquery()
    return sa.func.array(elements, type_=postgresql.ARRAY(sa.Text()))


def _jsonb_array(value: ColumnElement[Any], rows: Any) -> ColumnElement[Any]:
    """A JSON array to ``jsonb[]`` (Elixir Oban's ``errors``), like :func:`_text_array`."""
    elements = sa.select(sa.func.jsonb_array_elements(value)).correlate(rows).scalar_subquery()
    return sa.func.array(elements, type_=JsonbArray())


def _plain_completion(ack: Ack) -> bool:
    """An ack that only marks its attempt completed (no error, meta or snooze)."""
    completed = ack.state is JobState.COMPLETED
    return completed and not ack.meta and ack.error is None and not ack.snoozed


def _complete_many() -> sa.Update:
    """``UPDATE ... FROM unnest(ids, attempts, ats)``: many completions in one
    statement, each still only while its attempt executes (as every ack)."""
    c = oban_jobs.c
    acked = (
        sa.func.unnest(
            sa.bindparam("b_ids", type_=postgresql.ARRAY(sa.BigInteger())),
            sa.bindparam("b_attempts", type_=postgresql.ARRAY(sa.Integer())),
            sa.bindparam("b_ats", type_=postgresql.ARRAY(c.completed_at.type)),
        )
        .table_valued("id", "attempt", "at")
        .render_derived(name="acked")
    )
    return (
        sa.update(oban_jobs)
        .where(
            c.id == acked.c.id,
            c.attempt == acked.c.attempt,
            c.state == JobState.EXECUTING,
        )
        .values(state=JobState.COMPLETED, completed_at=acked.c.at)
    )


_COMPLETE_MANY = _complete_many()
