"""A warning, once per start, about queues whose jobs no running node will fetch.

The common first mistake with any job queue: enqueueing into a queue that no
worker process runs (``queue="media"`` while ``queues=`` lists only
``default``). Nothing fails, the jobs just wait, so the log says it once,
one heartbeat interval after start (by then every node started at the same
time has written its own heartbeat, so a queue a peer runs is not named).
``oban queues`` shows the same from the command line.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy.engine import Connection

from .base import ClusterPlugin

__all__ = ["UnrunQueues"]

logger = logging.getLogger("oban")

SCAN = 10_000
"""Waiting jobs counted per queue at most (the figure is for the message only)."""


class UnrunQueues(ClusterPlugin):
    name: ClassVar[str] = "looking for queues no node runs"
    done = False

    @property
    def interval(self) -> float | None:
        return None if self.done else self.context.config.heartbeat_interval

    async def tick(self) -> None:
        context = self.context
        waiting = await context.database.run(self._unrun, context.clock())
        self.done = True
        for queue, count in sorted(waiting.items()):
            logger.warning(
                "queue %r has %s available job(s) but no running node runs it, so they "
                "will wait: add it to this instance's queues (Oban(..., queues={%r: 10})), "
                "start a node that runs it (oban start --queues %s:10), or move the jobs",
                queue,
                f"{count}+" if count >= SCAN else count,
                queue,
                queue,
            )

    def _unrun(self, conn: Connection, clock_now: datetime) -> dict[str, int]:
        # Heartbeats are stamped with the database's clock where it has one.
        context = self.context
        now = context.cluster.cluster_time(conn, clock_now)
        since = now - timedelta(seconds=context.config.rescue_after)
        return context.cluster.unrun_queues(conn, context.config.name, since, SCAN)
