"""The stager: makes due ``scheduled`` and ``retryable`` jobs ``available``.

Every ``stage_interval`` it moves up to ``stage_limit`` due jobs in one
statement and wakes the producers of their queues (on PostgreSQL the engine
also NOTIFYs every node). Only the leader stages, as in Elixir Oban; a node
without many-node support (a testing mode) is its own leader. Staging is
idempotent, so two nodes that briefly both lead only do the same update twice.
"""

from __future__ import annotations

from typing import ClassVar

from ... import telemetry
from .base import Plugin

__all__ = ["Stager"]


class Stager(Plugin):
    name: ClassVar[str] = "staging scheduled jobs"
    leader_only: ClassVar[bool] = True
    immediate: ClassVar[bool] = True

    @property
    def interval(self) -> float:
        return self.context.config.stage_interval

    async def tick(self) -> None:
        context = self.context
        database = context.database
        queues = await database.run(
            database.engine.stage_jobs, context.clock(), context.config.stage_limit
        )
        if telemetry.active:
            count = sum(queues.values())
            telemetry.emit("plugin.stager", {"plugin": "stager", "count": count, "queues": queues})
        context.wake_queues(queues)
