"""How the runtime reaches the database without blocking the event loop.

Every engine operation is synchronous; here it runs in a worker thread under
Oban's own limiter (so job threads can never starve acks), inside one
transaction opened and closed in that same thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.engine import Connection
from typing_extensions import TypeVarTuple, Unpack

from ..engines.base import Engine

__all__ = ["Database"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Database:
    """Runs ``fn(conn, *args)`` in a thread, in a transaction of ``engine``."""

    def __init__(self, engine: Engine, *, threads: int) -> None:
        self.engine = engine
        self.limiter = anyio.CapacityLimiter(threads)

    def call(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """Blocking: run ``fn`` in a fresh transaction in this thread."""
        with self.engine.transaction() as conn:
            return fn(conn, *args)

    async def run(self, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """Run ``fn`` in a worker thread. Cancelling waits for the thread:
        a transaction is never abandoned half way."""
        return await anyio.to_thread.run_sync(self.call, fn, *args, limiter=self.limiter)
