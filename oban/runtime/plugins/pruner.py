"""The pruner: the leader deletes finished jobs older than ``prune`` seconds.

Completed, cancelled and discarded jobs go in batches of at most
``prune_limit`` rows, each batch its own short transaction through the
partial index of its state, so a table of millions is pruned without a long
lock and fetching never waits for it. It also deletes the heartbeat rows of
long-dead nodes and old cron slots (keeping each entry's latest).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import anyio
import anyio.lowlevel
from sqlalchemy.engine import Connection

from ... import telemetry
from .base import ClusterPlugin, PluginContext

__all__ = ["Pruner"]

DEAD_AFTER = 10
"""Heartbeat rows silent for this many ``rescue_after`` periods are deleted."""
SLOTS_KEPT = timedelta(days=1)
"""Cron slot rows are kept this long (each entry's latest for ever)."""


class Pruner(ClusterPlugin):
    name: ClassVar[str] = "pruning finished jobs"
    leader_only: ClassVar[bool] = True
    jitter: ClassVar[float] = 0.1

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self.pruned = 0
        """How many jobs this node deleted (for tests and metrics)."""
        self.batches = 0

    @property
    def interval(self) -> float:
        return self.context.config.prune_interval

    async def tick(self) -> None:
        context = self.context
        config = context.config
        cluster = context.cluster
        database = context.database
        now = context.clock()
        pruned = 0
        if config.prune_max_age is not None:
            before = now - timedelta(seconds=config.prune_max_age)
            while True:
                deleted = await database.run(cluster.prune_jobs, before, config.prune_limit)
                self.pruned += deleted
                pruned += deleted
                self.batches += 1
                if deleted < config.prune_limit:
                    break
                await anyio.lowlevel.checkpoint()  # let fetches and acks in between batches
        await database.run(self._prune_heartbeats, now)
        await database.run(cluster.prune_cron_slots, config.name, now - SLOTS_KEPT)
        if telemetry.active:
            telemetry.emit("plugin.pruner", {"plugin": "pruner", "count": pruned})

    def _prune_heartbeats(self, conn: Connection, clock_now: datetime) -> int:
        # By the clock heartbeats are stamped with (the database's where it has
        # one): a node whose clock runs ahead must not delete live nodes' rows.
        now = self.context.cluster.cluster_time(conn, clock_now)
        dead = now - timedelta(seconds=self.context.config.rescue_after * DEAD_AFTER)
        return self.context.cluster.prune_heartbeats(conn, dead)
