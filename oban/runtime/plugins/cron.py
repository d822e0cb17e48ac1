"""Cron: the leader inserts each slot's job of every cron entry, once.

Every ``cron_interval`` the leader works out which slots of each entry came
due since it last looked (in the configured timezone, DST rules in
:mod:`oban.cron`) and records them with their jobs in one transaction. The
key of ``oban_cron_slots`` (name, entry, slot) makes each slot's job
inserted once, even when the leader changes mid-minute or two nodes briefly
both lead.

When a node becomes leader it starts from what the table says: for each
entry, the slots after the latest one recorded, limited to the catch-up
window (``cron_catch_up`` seconds; by default only the latest due slot), so
a slot missed while no leader ran (a deploy across the minute) is inserted
late, once. An entry never seen before starts from now: adding ``@daily``
at 15:00 does not run it at once. ``@reboot`` entries run once when the
cluster starts (every live node started within ``rescue_after`` of the
first).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy.engine import Connection

from ... import telemetry
from ...config import RuntimeConfig
from ...cron import latest_slot, slots_between
from ...engines.base import Heartbeat
from ...job import Job
from .base import ClusterPlugin, PluginContext

if TYPE_CHECKING:
    from ...cron import CronEntry

__all__ = ["Cron"]

logger = logging.getLogger("oban")

Slot = tuple[str, datetime, "Job | None"]


class Cron(ClusterPlugin):
    name: ClassVar[str] = "inserting cron jobs"
    leader_only: ClassVar[bool] = True
    immediate: ClassVar[bool] = True

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self._term = -1
        self._checked: dict[str, datetime] = {}
        """Per entry key: slots up to here are recorded (this term)."""
        self.inserted = 0

    @classmethod
    def wanted(cls, config: RuntimeConfig) -> bool:
        return config.cluster and bool(config.cron)

    @property
    def interval(self) -> float:
        return self.context.config.cron_interval

    def _entries(self) -> tuple[CronEntry, ...]:
        return self.context.config.cron

    async def tick(self) -> None:
        context = self.context
        now = context.clock()
        slots: list[Slot] = []
        term = context.leader_term()
        if term != self._term:
            slots.extend(await self._start_term(now))
            self._term = term
        tz = context.config.timezone
        for entry in self._entries():
            if entry.expression.reboot:
                continue
            after = self._checked.get(entry.key)
            if after is None:
                continue
            slots.extend(
                (entry.key, slot, entry.new_job(slot))
                for slot in slots_between(entry.expression, tz, after, now)
            )
        if not slots:
            if telemetry.active:
                telemetry.emit("plugin.cron", {"plugin": "cron", "count": 0})
            return
        saved = await context.database.run(
            context.cluster.insert_cron_jobs, context.config.name, slots, now
        )
        for entry_key, slot, _job in slots:
            self._checked[entry_key] = max(self._checked.get(entry_key, slot), slot)
        self.inserted += len(saved)
        if telemetry.active:
            telemetry.emit("plugin.cron", {"plugin": "cron", "count": len(saved)})
        context.wake_queues({job.queue for job in saved})

    async def _start_term(self, now: datetime) -> list[Slot]:
        """As this node becomes leader: the slots it owes, from the table's record."""
        context = self.context
        config = context.config
        recorded = await context.database.run(context.cluster.latest_cron_slots, config.name)
        catch_up = config.cron_catch_up
        slots: list[Slot] = []
        self._checked = {}
        reboots = [entry for entry in self._entries() if entry.expression.reboot]
        boot = await self._cluster_boot(now) if reboots else None
        if boot is not None:
            slots.extend((entry.key, boot, entry.new_job(boot)) for entry in reboots)
        for entry in self._entries():
            if entry.expression.reboot:
                continue
            last = latest_slot(entry.expression, config.timezone, now)
            known = recorded.get(entry.key)
            if last is None:
                continue
            if known is None:
                # New entry: mark the latest slot as seen without running it.
                slots.append((entry.key, last, None))
            elif catch_up is None:
                if last > known:
                    slots.append((entry.key, last, entry.new_job(last)))
            else:
                since = max(known, now - timedelta(seconds=catch_up))
                slots.extend(
                    (entry.key, slot, entry.new_job(slot))
                    for slot in slots_between(entry.expression, config.timezone, since, now)
                )
            self._checked[entry.key] = max(last, known) if known else last
        return slots

    async def _live_starts(self, now: datetime) -> list[datetime]:
        context = self.context
        beats = await context.database.run(self._live_beats, now)
        starts = [beat.started_at for beat in beats]
        if context.started_at is not None:
            starts.append(context.started_at)
        return starts

    def _live_beats(self, conn: Connection, clock_now: datetime) -> list[Heartbeat]:
        # Heartbeats are stamped with the database's clock where it has one.
        context = self.context
        now = context.cluster.cluster_time(conn, clock_now)
        since = now - timedelta(seconds=context.config.rescue_after)
        return context.cluster.list_heartbeats(conn, context.config.name, since)

    async def _cluster_boot(self, now: datetime) -> datetime | None:
        """When the cluster started, if it is starting now (every live node started
        within ``rescue_after`` of the first), else None: a leader handing over in
        a rolling deploy. The boot time is the slot of the ``@reboot`` entries."""
        starts = await self._live_starts(now)
        if not starts:
            return now.replace(microsecond=0)
        window = timedelta(seconds=self.context.config.rescue_after)
        if max(starts) - min(starts) <= window and now - min(starts) <= window:
            return min(starts).replace(microsecond=0)
        return None
