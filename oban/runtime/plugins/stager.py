"""The stager: makes due ``scheduled`` and ``retryable`` jobs ``available``.

Every ``stage_interval`` it moves up to ``stage_limit`` due jobs in one
statement and wakes the producers of their queues (on PostgreSQL the engine
also NOTIFYs every node). It runs on every node for now; once leadership
exists it becomes leader-only, as in Elixir Oban. Staging is idempotent, so
two nodes staging at once only do the same update twice.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Plugin

__all__ = ["Stager"]


class Stager(Plugin):
    name: ClassVar[str] = "staging scheduled jobs"
    leader_only: ClassVar[bool] = False  # every node, until a leader is elected (many nodes)
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
        context.wake_queues(queues)
