"""The cancel check: stops jobs running here that were cancelled where no signal told us.

The backstop for a cancel by another process on the same SQLite file, a
NOTIFY lost while the notifier reconnected, or a cancel inside a caller's
transaction (whose ids cannot be trusted before it commits). Every
``cancel_check_interval``, or at once when woken, it asks the database which
of the running ids are ``cancelled`` and stops those: one small query, and
none at all while nothing runs. Every node runs it for its own jobs.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Plugin, PluginContext

__all__ = ["CancelCheck"]


class CancelCheck(Plugin):
    name: ClassVar[str] = "checking running jobs for cancels"

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self.checks = 0
        """How many times the running jobs were checked (for tests and metrics)."""

    @property
    def interval(self) -> float:
        return self.context.config.cancel_check_interval

    async def tick(self) -> None:
        context = self.context
        running = context.running_ids()
        if not running:
            return
        database = context.database
        cancelled = await database.run(database.engine.cancelled_ids, running)
        self.checks += 1
        context.kill(cancelled)
