"""The lifeline: the leader rescues jobs whose node died while running them.

A job is orphaned when it is ``executing``, started more than
``rescue_after`` seconds ago, and the producer that fetched it has not
heart-beaten for ``rescue_after`` (or has no row at all). It goes back to
``available`` if attempts remain, else ``discarded``, with an error entry
naming the node. A job on a live node is never rescued, however long it
runs, and the rescue is guarded by the attempt, like an ack: a late ack from
a node that comes back cannot overwrite the next attempt.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import ClassVar

from sqlalchemy.engine import Connection

from ... import telemetry
from ...engines.base import Rescued
from .base import ClusterPlugin

__all__ = ["Lifeline"]

logger = logging.getLogger("oban")


class Lifeline(ClusterPlugin):
    name: ClassVar[str] = "rescuing orphaned jobs"
    leader_only: ClassVar[bool] = True
    jitter: ClassVar[float] = 0.1

    @property
    def interval(self) -> float:
        return self.context.config.rescue_after / 3

    async def tick(self) -> None:
        context = self.context
        rescued = await context.database.run(self._rescue, context.clock())
        if rescued.available or rescued.discarded:
            logger.warning(
                "rescued %d orphaned job(s) (their node stopped heart-beating): "
                "%d back to available, %d discarded (no attempts left)",
                rescued.available + rescued.discarded,
                rescued.available,
                rescued.discarded,
            )
        if telemetry.active:
            data = {"available": rescued.available, "discarded": rescued.discarded}
            count = rescued.available + rescued.discarded
            telemetry.emit("plugin.lifeline", {"plugin": "lifeline", "count": count, **data})
        context.wake_queues(rescued.queues)

    def _rescue(self, conn: Connection, clock_now: datetime) -> Rescued:
        # Heartbeats are stamped with the database's clock where it has one: so
        # is the cutoff, or a node whose clock runs ahead rescues live jobs and
        # one whose clock runs behind has its own rescued (tests/chaos/test_clock_skew.py).
        config = self.context.config
        now = self.context.cluster.cluster_time(conn, clock_now)
        return self.context.cluster.rescue_jobs(conn, now, config.rescue_after, config.rescue_limit)
