"""The acker: writes finished attempts back, the ones that end close together at once.

One statement per kind of outcome for a whole batch instead of one
transaction per job; a batch that is one statement (plain completions, on
PostgreSQL) runs on the engine's autocommit, one round trip where BEGIN,
the UPDATE and COMMIT were three. An ack that cannot be written (database down) stays in
memory and is retried, with the loop's back-off, until it is written or the
runtime stops; stopping waits for every pending ack (:meth:`Acker.drain`).
"""

from __future__ import annotations

import time

import anyio

from .. import telemetry
from ..config import RuntimeConfig
from ..outcomes import Ack
from .database import Database
from .loops import Loop

__all__ = ["Acker"]


class Acker:
    """Collects acks and writes them in batches, on a :class:`Loop` woken by :meth:`put`."""

    def __init__(self, database: Database, config: RuntimeConfig) -> None:
        self._database = database
        self._config = config
        self._pending: list[Ack] = []
        self._writing: list[Ack] = []
        self._idle = anyio.Event()
        self._idle.set()
        self.loop = Loop(
            "writing acks",
            self._write,
            interval=None,
            error_backoff=config.error_backoff,
            outage=database.outage,
        )

    def put(self, ack: Ack) -> None:
        self._pending.append(ack)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self.loop.wake()

    def held(self) -> set[int]:
        """Ids of the jobs whose ack is not written yet (waiting or being written)."""
        return {ack.job_id for ack in (*self._pending, *self._writing)}

    async def run(self) -> None:
        await self.loop.run()

    async def _write(self) -> None:
        # A short wait lets the acks of jobs finishing together share one write.
        await anyio.sleep(self._config.ack_delay)
        batch, self._pending = self._pending, []
        if batch:
            started = time.perf_counter()
            self._writing = batch
            try:
                with anyio.CancelScope(shield=True):
                    engine = self._database.engine
                    alone = engine.single_statement_ack(batch)
                    await self._database.run(engine.ack_jobs, batch, alone=alone)
            except Exception:
                self._pending = batch + self._pending  # kept, and retried after the pause
                raise
            finally:
                self._writing = []
            if telemetry.active:
                duration = time.perf_counter() - started
                telemetry.emit("ack.write", {"count": len(batch), "duration": duration})
        if not self._pending:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every ack put so far is written."""
        if self._pending:
            self.loop.wake()
        await self._idle.wait()
