"""How Oban reaches the database: one ``Database`` per ``Oban``, shared by its
public operations and its runtime.

Every engine operation is synchronous, on a SQLAlchemy ``Connection`` inside a
transaction, written once. Here it is routed:

* with no ``conn`` (or an engine that cannot join one), into a transaction of
  its own, in the caller's thread (:meth:`Database.call`) or, from async code
  and the runtime, in a worker thread (:meth:`Database.call_async`,
  :meth:`Database.run`) under this Database's limiter;
* with the caller's ``Session``/``Connection``, into that transaction;
* with an ``AsyncSession``/``AsyncConnection``, through SQLAlchemy's ``run_sync``.

The limiter is sized to the connection pool: more threads than connections
would only queue inside the pool (and time out there), and one limiter for
the face and the runtime means job threads can never starve the acks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, scoped_session
from typing_extensions import TypeVarTuple, Unpack

from ..engines.base import Capability, Engine
from .outage import Outage

if TYPE_CHECKING:
    # sqlalchemy.ext.asyncio needs greenlet; import it only when a caller
    # actually passes an async session or connection.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

__all__ = ["AnyConn", "Database", "SyncConn", "pool_threads"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

SyncConn: TypeAlias = "Connection | Session | scoped_session[Any]"
AnyConn: TypeAlias = (
    "Connection | Session | scoped_session[Any] | AsyncConnection | AsyncSession"
    " | async_scoped_session[Any]"
)

SYNC_KINDS = "a SQLAlchemy Session, scoped_session (Flask-SQLAlchemy's db.session) or Connection"
ASYNC_KINDS = "an AsyncSession, async_scoped_session or AsyncConnection"

DEFAULT_THREADS = 4
"""Threads for an engine without a sized pool (Inline, a NullPool, a StaticPool)."""


def pool_threads(engine: Engine) -> int:
    """How many database threads ``engine``'s pool can serve at once: its size."""
    pool = getattr(getattr(engine, "bind", None), "pool", None)
    size = getattr(pool, "size", None)
    if callable(size):
        value = size()
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_THREADS


class Database:
    """Runs ``fn(conn, *args)`` in the right transaction and thread for its caller."""

    def __init__(self, engine: Engine, *, threads: int | None = None) -> None:
        self.engine = engine
        self.threads = threads or pool_threads(engine)
        """How many threads may use the database at once (per event loop)."""
        self._limiters: RunVar[anyio.CapacityLimiter] = RunVar(f"oban-database-{id(self)}")
        self.outage = Outage()
        """Where the runtime's loops report database errors: one log line per outage."""

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """This event loop's limiter on database threads.

        One per event loop, made on first use there: an instance built in one
        loop (a trio app) may run its queues in another (``with oban:`` runs an
        asyncio loop in a thread) while callers await it in theirs, and a
        limiter belongs to the loop that made it.
        """
        try:
            return self._limiters.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.threads)
            self._limiters.set(limiter)
            return limiter

    def joins(self, conn: object) -> bool:
        """Whether a call with ``conn`` runs in the caller's transaction (not committed yet)."""
        return conn is not None and Capability.TRANSACTIONAL in self.engine.capabilities

    def transact(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """Blocking: run ``fn`` in a fresh transaction in this thread."""
        with self.engine.transaction() as conn:
            return fn(conn, *args)

    def _alone(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        with self.engine.autocommit() as conn:
            return fn(conn, *args)

    async def run_alone(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """:meth:`run` for ``fn`` whose every statement is atomic alone (the
        fetch): on the engine's :meth:`~oban.engines.base.Engine.autocommit`."""
        return await anyio.to_thread.run_sync(self._alone, fn, *args, limiter=self.limiter)

    async def run(
        self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts], alone: bool = False
    ) -> T:
        """Run ``fn`` in a fresh transaction in a worker thread (with ``alone``, on
        autocommit: see :meth:`run_alone`). Cancelling waits for the thread: a
        transaction is never abandoned half way."""
        if alone:
            return await self.run_alone(fn, *args)
        return await anyio.to_thread.run_sync(self.transact, fn, *args, limiter=self.limiter)

    def call(
        self,
        conn: SyncConn | None,
        fn: Callable[[Connection, Unpack[Ts]], T],
        *args: Unpack[Ts],
        alone: bool = False,
    ) -> T:
        """Blocking: run ``fn`` in ``conn``'s transaction, or in one of its own
        (with ``alone``, ``fn`` is one atomic statement: on the engine's autocommit)."""
        if not self.joins(conn):
            return self._alone(fn, *args) if alone else self.transact(fn, *args)
        if isinstance(conn, scoped_session):
            conn = conn()  # the Session of the current scope (request, thread)
        if isinstance(conn, Session):
            return fn(conn.connection(), *args)
        if isinstance(conn, Connection):
            return fn(conn, *args)
        hint = "; use the _async method (enqueue_async, ...) for it" if _is_async(conn) else ""
        raise TypeError(f"conn must be {SYNC_KINDS}, got {_kind(conn)}{hint}")

    async def call_async(
        self,
        conn: AnyConn | None,
        fn: Callable[[Connection, Unpack[Ts]], T],
        *args: Unpack[Ts],
        alone: bool = False,
    ) -> T:
        """Async twin of :meth:`call`; ``conn`` may also be an AsyncSession/AsyncConnection."""
        if not self.joins(conn):
            return await self.run(fn, *args, alone=alone)
        if isinstance(conn, scoped_session):
            # Resolved here: in the worker thread the scope (thread-local by
            # default) would hand out another session than the caller's.
            conn = conn()
        if isinstance(conn, (Session, Connection)):
            # A sync session in async code: its I/O still must not block the loop.
            sync_conn: SyncConn = conn
            return await anyio.to_thread.run_sync(
                lambda: self.call(sync_conn, fn, *args), limiter=self.limiter
            )
        if _is_async(conn):
            from sqlalchemy.ext.asyncio import (
                AsyncConnection,
                AsyncSession,
                async_scoped_session,
            )

            if isinstance(conn, async_scoped_session):
                conn = conn()  # the AsyncSession of the current scope
            if isinstance(conn, AsyncSession):
                return await conn.run_sync(lambda session: fn(session.connection(), *args))
            if isinstance(conn, AsyncConnection):
                return await conn.run_sync(lambda sync_conn: fn(sync_conn, *args))
        raise TypeError(f"conn must be {SYNC_KINDS}, or {ASYNC_KINDS}, got {_kind(conn)}")


def _is_async(conn: object) -> bool:
    """Whether ``conn`` is from SQLAlchemy's asyncio extension (without importing it)."""
    return type(conn).__module__.startswith("sqlalchemy.ext.asyncio")


def _kind(conn: object) -> str:
    kind = type(conn)
    return f"{kind.__module__}.{kind.__qualname__}"
