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
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from typing_extensions import TypeVarTuple, Unpack

from ..engines.base import Capability, Engine

if TYPE_CHECKING:
    # sqlalchemy.ext.asyncio needs greenlet; import it only when a caller
    # actually passes an async session or connection.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

__all__ = ["AnyConn", "Database", "SyncConn", "pool_threads"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

SyncConn: TypeAlias = "Connection | Session"
AnyConn: TypeAlias = "Connection | Session | AsyncConnection | AsyncSession"

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
        self.limiter = anyio.CapacityLimiter(threads or pool_threads(engine))

    def joins(self, conn: object) -> bool:
        """Whether a call with ``conn`` runs in the caller's transaction (not committed yet)."""
        return conn is not None and Capability.TRANSACTIONAL in self.engine.capabilities

    def transact(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """Blocking: run ``fn`` in a fresh transaction in this thread."""
        with self.engine.transaction() as conn:
            return fn(conn, *args)

    async def run(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """Run ``fn`` in a fresh transaction in a worker thread. Cancelling waits
        for the thread: a transaction is never abandoned half way."""
        return await anyio.to_thread.run_sync(self.transact, fn, *args, limiter=self.limiter)

    def call(
        self, conn: SyncConn | None, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]
    ) -> T:
        """Blocking: run ``fn`` in ``conn``'s transaction, or in one of its own."""
        if not self.joins(conn):
            return self.transact(fn, *args)
        if isinstance(conn, Session):
            return fn(conn.connection(), *args)
        if isinstance(conn, Connection):
            return fn(conn, *args)
        raise TypeError(
            f"conn must be a SQLAlchemy Session or Connection, got {type(conn).__name__}; "
            "use the _async method for AsyncSession / AsyncConnection"
        )

    async def call_async(
        self, conn: AnyConn | None, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]
    ) -> T:
        """Async twin of :meth:`call`; ``conn`` may also be an AsyncSession/AsyncConnection."""
        if not self.joins(conn):
            return await self.run(fn, *args)
        if isinstance(conn, (Session, Connection)):
            # A sync session in async code: its I/O still must not block the loop.
            return await anyio.to_thread.run_sync(
                lambda: self.call(conn, fn, *args), limiter=self.limiter
            )
        if type(conn).__module__.startswith("sqlalchemy.ext.asyncio"):
            from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

            if isinstance(conn, AsyncSession):
                return await conn.run_sync(lambda session: fn(session.connection(), *args))
            if isinstance(conn, AsyncConnection):
                return await conn.run_sync(lambda sync_conn: fn(sync_conn, *args))
        raise TypeError(
            "conn must be a SQLAlchemy Session, Connection, AsyncSession or "
            f"AsyncConnection, got {type(conn).__name__}"
        )
