"""Basic: jobs in PostgreSQL through psycopg 3, shared with Elixir Oban and oban-py.

The SQL is :class:`~oban.engines.sql.SqlEngine`'s; PostgreSQL adds what
SQLite cannot do:

* **fetch** is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
  LOCKED LIMIT n) RETURNING``: concurrent fetches on any number of nodes skip
  each other's rows instead of waiting, and never claim a row twice;
* **inserts** go out as multi-row ``INSERT ... VALUES`` pages as large as
  PostgreSQL's 65,535 bind parameters allow, so 10,000 jobs take two
  statements, not 10,000; in the same transaction a ``pg_notify`` per queue
  tells every node's producers, and because NOTIFY is transactional a
  rolled-back enqueue tells nobody;
* **acks** are one ``executemany`` per kind of outcome, which psycopg 3 sends
  pipelined (one round trip per batch);
* a **notifier** (LISTEN on a dedicated connection) wakes producers at once.

The table may have been created by a peer, and the peers disagree on two
column types: Elixir Oban has ``errors jsonb[]`` and ``tags text[]``, oban-py
has ``errors jsonb`` and ``tags jsonb``; ours has ``errors jsonb`` and ``tags
text[]``. Converting a peer's table would break that peer, so the engine
looks at the table once and writes each column in the type it has.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ConfigError
from ..job import Job, JobState
from ..runtime.notifier import INSERT, Notifier, channel_name, encode
from ..schema import Json, oban_jobs
from .base import Ack, Capability
from .sql import SqlEngine, translate_errors

__all__ = ["Basic", "TableShape"]

# PostgreSQL's wire protocol counts bind parameters in an int16.
MAX_BIND_PARAMS = 65_535

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

_COLUMN_TYPES = sa.text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_name "
    "FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = 'oban_jobs' AND n.nspname = COALESCE(:schema, current_schema()) "
    "AND a.attnum > 0 AND NOT a.attisdropped"
).bindparams(sa.bindparam("schema", type_=sa.Text()))

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


class JsonbArray(sa.TypeDecorator[list[Any]]):
    """``jsonb[]``, Elixir Oban's type for ``errors``: a list of JSON values."""

    impl = postgresql.ARRAY(postgresql.JSONB())
    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> list[Any]:
        return [] if value is None else list(value)


@dataclass(frozen=True)
class TableShape:
    """Which peer's column types an ``oban_jobs`` table has, and a Table that writes them."""

    errors_array: bool = False
    """``errors`` is ``jsonb[]`` (Elixir Oban) rather than ``jsonb``."""
    tags_json: bool = False
    """``tags`` is ``jsonb`` (oban-py) rather than ``text[]``."""

    @classmethod
    def from_types(cls, types: dict[str, str]) -> TableShape:
        return cls(
            errors_array=types.get("errors", "jsonb") == "jsonb[]",
            tags_json=types.get("tags", "text[]") == "jsonb",
        )

    def table(self) -> sa.Table:
        """``oban_jobs`` itself, or a copy whose errors/tags columns bind this shape's types."""
        if not (self.errors_array or self.tags_json):
            return oban_jobs
        columns = []
        for column in oban_jobs.c:
            column_type: Any = column.type
            if column.name == "errors" and self.errors_array:
                column_type = JsonbArray()
            elif column.name == "tags" and self.tags_json:
                column_type = Json()
            columns.append(
                sa.Column(
                    column.name,
                    column_type,
                    primary_key=column.primary_key,
                    nullable=column.nullable,
                )
            )
        return sa.Table("oban_jobs", sa.MetaData(), *columns)


class Basic(SqlEngine):
    """The PostgreSQL engine (``postgresql+psycopg://`` URLs)."""

    name: ClassVar[str] = "basic"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PERSISTENT, Capability.SHARED, Capability.TRANSACTIONAL, Capability.NOTIFY}
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
        self._table: sa.Table = oban_jobs
        self._shape_lock = threading.Lock()

    # -- the table's shape ----------------------------------------------------------

    def shape(self, conn: Connection) -> TableShape:
        """The shape of this prefix's ``oban_jobs``, read once and then remembered.

        While the table does not exist yet the default shape is assumed and
        not remembered, so a later ``migrate()`` (or a peer's install) is seen.
        """
        if self._shape is not None:
            return self._shape
        rows = self.execute(conn, _COLUMN_TYPES, {"schema": self.prefix}).mappings().all()
        shape = TableShape.from_types({str(row["attname"]): str(row["type_name"]) for row in rows})
        if rows:
            with self._shape_lock:
                self._shape, self._table = shape, shape.table()
        return shape

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
        if not jobs:
            return []
        self.shape(conn)
        table = self._table
        rows = [self._insert_values(job, now) for job in jobs]
        statement = sa.insert(table).returning(*table.c, sort_by_parameter_order=True)
        options = {
            **self._options,
            # As many rows per statement as the bind-parameter limit allows.
            "insertmanyvalues_page_size": max(1, MAX_BIND_PARAMS // len(rows[0])),
        }
        with translate_errors():
            result = conn.execute(statement, rows, execution_options=options)
            inserted = [Job.from_row(dict(row)) for row in result.mappings()]
        self.notify(
            conn,
            INSERT,
            [
                {"queue": queue}
                for queue in _queues(job for job in inserted if job.state is JobState.AVAILABLE)
            ],
        )
        return inserted

    def ack_jobs(self, conn: Connection, acks: Sequence[Ack]) -> None:
        if acks:
            self.shape(conn)
        super().ack_jobs(conn, acks)

    def stage_jobs(self, conn: Connection, now: datetime, limit: int) -> list[str]:
        queues = super().stage_jobs(conn, now, limit)
        self.notify(conn, INSERT, [{"queue": queue} for queue in queues])
        return queues

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

    def connect_params(self) -> dict[str, Any]:
        """``psycopg.connect`` keyword arguments for this engine's database."""
        _args, params = self.bind.dialect.create_connect_args(self.bind.url)
        # SQLAlchemy adds its own adapters map; a plain connection wants psycopg's.
        params.pop("context", None)
        return dict(params)

    def notifier(self, *, application_name: str = "oban_notifier") -> Notifier:
        """A notifier listening on this engine's channels on a dedicated connection."""
        return Notifier(
            self.connect_params(), prefix=self.prefix, application_name=application_name
        )


def _queues(jobs: Any) -> list[str]:
    return sorted({job.queue for job in jobs})
