"""Heartbeats: every queue running on this node says so in ``oban_producers``.

One row per producer (its uuid is the second entry of ``attempted_by`` of
the jobs it runs), refreshed every ``heartbeat_interval``: the lifeline
rescues the jobs of producers whose row went quiet, and ``check_queue``
reads the rows to show every node's limit, running jobs and pause. Rows
are deleted when the runtime stops cleanly.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy.engine import Connection

from ...engines.base import Heartbeat as Beat
from .base import ClusterPlugin

__all__ = ["Heartbeat"]


class Heartbeat(ClusterPlugin):
    name: ClassVar[str] = "writing heartbeats"
    immediate: ClassVar[bool] = True
    jitter: ClassVar[float] = 0.1

    @property
    def interval(self) -> float:
        return self.context.config.heartbeat_interval

    async def tick(self) -> None:
        context = self.context
        if context.producers():
            await context.database.run(self._record, context.clock())

    def _record(self, conn: Connection, clock_now: datetime) -> None:
        context = self.context
        # The database's clock where it has one: the lifeline of a node whose
        # clock is off compares it with the same clock (tests/chaos/test_clock_skew.py).
        now = context.cluster.cluster_time(conn, clock_now)
        beats = [
            Beat(
                uuid=producer.uuid,
                name=context.config.name,
                node=context.config.node,
                queue=producer.queue,
                meta=producer.heartbeat_meta(context.instance_id),
                started_at=producer.started_at,
                updated_at=now,
            )
            for producer in context.producers()
        ]
        if beats:
            context.cluster.record_heartbeats(conn, beats)

    async def stop(self) -> None:
        uuids = [producer.uuid for producer in self.context.producers()]
        if uuids:
            await self.context.database.run(self.context.cluster.delete_heartbeats, uuids)
