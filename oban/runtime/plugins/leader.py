"""Leadership: one node per Oban name does the cluster's shared work.

A lease row in ``oban_peers`` (Elixir Oban's shape), taken or renewed with one
conditional statement. The leader renews at a third of the lease; the other
nodes bid when the current lease ends (and at once on PostgreSQL when a
leader that stops says so), so a dead leader is replaced within the lease
and a stopped one at once. Staging, pruning, rescue and cron run only where
:meth:`~oban.runtime.plugins.base.PluginContext.is_leader` is true.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from .base import ClusterPlugin, PluginContext

__all__ = ["Leader"]

MIN_WAIT = 0.05
"""The shortest wait between bids (a lease that just ended, a clock running fast)."""


class Leader(ClusterPlugin):
    name: ClassVar[str] = "electing a leader"
    immediate: ClassVar[bool] = True

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self._expires_at: datetime | None = None

    @property
    def interval(self) -> float:
        renew = self.context.config.leader_lease / 3
        if self.context.is_leader() or self._expires_at is None:
            return renew
        # Bid again right after the current lease ends, not a whole period later.
        left = (self._expires_at - self.context.clock()).total_seconds()
        return min(renew, max(MIN_WAIT, left + MIN_WAIT))

    async def tick(self) -> None:
        context = self.context
        config = context.config
        try:
            lease = await context.database.run(
                context.cluster.take_lease,
                config.name,
                context.leader_node,
                context.clock(),
                config.leader_lease,
            )
        except Exception:
            # Not knowing is not leading: two leaders are worse than none.
            context.set_leader(False)
            raise
        self._expires_at = lease.expires_at
        context.set_leader(lease.leader)

    async def stop(self) -> None:
        context = self.context
        if context.is_leader():
            context.set_leader(False)
            await context.database.run(
                context.cluster.release_lease, context.config.name, context.leader_node
            )
