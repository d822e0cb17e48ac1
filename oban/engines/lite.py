"""Lite: jobs in a SQLite file (3.35 or newer), zero setup.

SQLite has no ``SKIP LOCKED``; claims are made safe by taking the database's
write lock up front (``BEGIN IMMEDIATE``) for every Oban transaction, so two
fetches, in one process or in several processes sharing the file, can never
claim the same row. Within a process a lock keeps Oban's own threads from
spinning in SQLite's busy handler; across processes the busy timeout waits.
The file runs in WAL mode so readers never block the writer.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ConfigError
from ..job import Job
from ..schema import Json, oban_jobs
from .base import Capability
from .sql import SqlEngine, translate_errors

__all__ = ["Lite"]

MIN_SQLITE = (3, 35, 0)
BUSY_TIMEOUT_MS = 30_000

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _file_lock(database: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(database, threading.Lock())


class Lite(SqlEngine):
    """The SQLite engine (``sqlite:///path.db``)."""

    name: ClassVar[str] = "lite"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PERSISTENT,
            Capability.SHARED,
            Capability.TRANSACTIONAL,
            Capability.UNIQUE,
            Capability.CLUSTER,
        }
    )

    def __init__(
        self, bind: sa.Engine, *, prefix: str | None = None, owns_bind: bool = False
    ) -> None:
        if bind.dialect.name != "sqlite":
            raise ConfigError(f"the Lite engine needs a sqlite:/// URL, got {bind.url!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigError(
                f"the Lite engine needs SQLite 3.35 or newer (for RETURNING); this Python "
                f"has {sqlite3.sqlite_version}"
            )
        database = bind.url.database
        if not database or database == ":memory:" or "mode=memory" in str(bind.url):
            raise ConfigError(
                "the Lite engine needs a database file (sqlite:///jobs.db): an in-memory "
                "SQLite database is private to one connection. For tests without a "
                "database use Oban(..., testing='inline')"
            )
        if "\x00" in database:
            raise ConfigError(f"the SQLite file name {database!r} contains a NUL character")
        if prefix:
            raise ConfigError("prefix is a PostgreSQL schema; SQLite has none, leave it unset")
        super().__init__(bind, prefix=None, owns_bind=owns_bind)
        self._lock = _file_lock(database)
        self._wal = False

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; on any exception its connection is retired.

        An exception raised while a statement's rows are being read (a result
        processor failing on one row, say) leaves that statement unfinished,
        and Python 3.11+ no longer resets statements on rollback: while the
        half-read cursor lives (the traceback keeps it), the connection's next
        COMMIT fails ("SQL statements in progress") and the one after that
        cannot BEGIN ("cannot start a transaction within a transaction"). So
        the transaction is rolled back, which releases the write lock at once,
        and the connection is invalidated instead of going back to the pool;
        the next transaction opens a fresh one. Failures are rare, a
        reconnect to a file is cheap. A failed COMMIT is handled the same way.
        """
        with self._lock, translate_errors(), self.bind.connect() as conn:
            self._begin(conn)
            try:
                yield conn
                conn.commit()
            except BaseException:
                _retire(conn)
                raise

    def _begin(self, conn: Connection) -> None:
        """Take the write lock, waiting out other processes.

        SQLite's busy handler covers most waits, but some moments (another
        process opening, checkpointing or closing the WAL) answer "database is
        locked" at once. Nothing has happened in the transaction yet, so the
        start is simply tried again, with jittered backoff, until the busy
        timeout has passed.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.005
        while True:
            try:
                if not self._wal:
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                    self._wal = True
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
                # pysqlite only opens transactions itself before DML; an explicit
                # BEGIN IMMEDIATE takes the write lock before we read anything.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except sa.exc.OperationalError as exc:
                busy = "locked" in str(exc.orig) or "busy" in str(exc.orig)
                if not busy or time.monotonic() > deadline:
                    raise
                conn.rollback()
                time.sleep(pause * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                pause = min(pause * 2, 0.25)
                continue
            return

    def _append_error(
        self, column: ColumnElement[Any], entry: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        return sa.func.json_insert(column, sa.literal("$[#]"), sa.func.json(entry))

    def _merge_meta(self, keys: Sequence[str]) -> ColumnElement[Any]:
        pairs: list[Any] = []
        for index, key in enumerate(keys):
            pairs.append(sa.literal(f'$."{key}"'))
            pairs.append(sa.func.json(sa.bindparam(f"b_meta_{index}", type_=Json())))
        return sa.func.json_set(oban_jobs.c.meta, *pairs)

    def _attempted_by(self, index: int) -> ColumnElement[str]:
        return sa.func.json_extract(oban_jobs.c.attempted_by, sa.literal(f"$[{index:d}]"))

    def _id_in(self, ids: Sequence[int]) -> ColumnElement[bool]:
        # One JSON parameter read by json_each: any number of ids, where an
        # IN list would stop at SQLite's limit on bound variables.
        listed = sa.bindparam(None, orjson.dumps(list(ids)).decode(), type_=sa.Text())
        values = sa.func.json_each(listed).table_valued("value")
        return oban_jobs.c.id.in_(sa.select(values.c.value))

    # -- unique jobs ------------------------------------------------------------------

    def _lock_unique(self, conn: Connection, jobs: Sequence[Job]) -> None:
        """Hold SQLite's write lock before looking for duplicates.

        Oban's own transactions already begin with ``BEGIN IMMEDIATE``. A
        caller's Session or Connection (``conn=``) may not hold the lock yet:
        a write that changes nothing takes it (pysqlite opens the transaction
        before it), so lookup and insert are one serialised step. Should the
        caller's transaction have read before, SQLite refuses the upgrade
        (``SQLITE_BUSY_SNAPSHOT``, a DatabaseError) rather than allow a duplicate.
        """
        self.execute(conn, sa.update(oban_jobs).where(sa.false()).values(id=oban_jobs.c.id))

    def _json_equals(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        # Stored JSON text is canonical (sorted keys, see schema.Json), and so is
        # the bound value: equal documents are equal strings.
        return column == sa.bindparam(None, value, type_=Json())

    def _json_key_equals(
        self, column: ColumnElement[Any], key: str, value: Any
    ) -> ColumnElement[bool]:
        # json_each finds the key by a bound value (no JSON path to escape) and
        # tells its JSON type, which keeps 1, "1", true and null apart.
        entry = _entries(column)
        conditions: list[ColumnElement[bool]] = [entry.c.key == sa.bindparam(None, key)]
        if value is None:
            conditions.append(entry.c.type == sa.literal("null"))
        elif isinstance(value, bool):
            conditions.append(entry.c.type == sa.literal("true" if value else "false"))
        elif isinstance(value, (int, float)):
            conditions.append(entry.c.type.in_(["integer", "real"]))
            conditions.append(entry.c.value == sa.bindparam(None, value))
        elif isinstance(value, str):
            conditions.append(entry.c.type == sa.literal("text"))
            conditions.append(entry.c.value == sa.bindparam(None, value, type_=sa.Text()))
        else:
            # Arrays and objects: json_each gives their JSON text, canonical as stored.
            kind = "object" if isinstance(value, dict) else "array"
            conditions.append(entry.c.type == sa.literal(kind))
            conditions.append(entry.c.value == sa.bindparam(None, value, type_=Json()))
        return sa.exists(sa.select(sa.literal(1)).select_from(entry).where(*conditions))

    def _json_key_missing(self, column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
        entry = _entries(column)
        named = entry.c.key == sa.bindparam(None, key)
        return ~sa.exists(sa.select(sa.literal(1)).select_from(entry).where(named))


def _retire(conn: Connection) -> None:
    """Roll back ``conn``'s transaction and close its connection for good (see
    :meth:`Lite.transaction`), without masking the exception being handled."""
    try:
        # Should the rollback fail, closing the connection discards the transaction too.
        with suppress(Exception):
            conn.rollback()
    finally:
        conn.invalidate()


def _entries(column: ColumnElement[Any]) -> Any:
    """``json_each(column)``: one row (key, value, type) per top-level entry."""
    return sa.func.json_each(column).table_valued("key", "value", "type").alias("entry")
