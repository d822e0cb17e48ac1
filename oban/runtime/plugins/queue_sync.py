"""Queue state: every node applies cluster-wide pause, resume, scale, start and stop.

``pause_queue`` and friends write the queue's row in ``oban_queue_states``
(and NOTIFY on PostgreSQL, which wakes this plugin at once); every node reads
the table every ``poll_interval`` (the only path on SQLite, where another
process cannot be signalled) and applies each change once, by its version.
A node that starts reads the pause and limit in force: a pause is state,
not only a message. A start or stop acts only on the nodes running when it
is made.
"""

from __future__ import annotations

from typing import ClassVar

from .base import ClusterPlugin, PluginContext

__all__ = ["QueueSync"]


class QueueSync(ClusterPlugin):
    name: ClassVar[str] = "reading queue state"
    immediate: ClassVar[bool] = True

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self._seen: dict[str, int] | None = None

    @property
    def interval(self) -> float:
        return self.context.config.poll_interval

    async def tick(self) -> None:
        context = self.context
        states = await context.database.run(context.cluster.queue_states, context.config.name)
        at_start = self._seen is None
        seen = self._seen or {}
        for state in states:
            if seen.get(state.queue) != state.version:
                context.apply_queue_state(state, at_start)
                seen[state.queue] = state.version
        self._seen = seen
