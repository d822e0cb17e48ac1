"""What the database says of the queues: jobs by queue and state, and each
queue's oldest available job. One statement, written once for both SQL engines.

The figures ``check_queue``'s lag, the Prometheus collector and the
OpenTelemetry gauges report come from here, read at the moment they are
asked for: every process sees the same numbers, however many run the queues
(per-process counters would each see only their own jobs).

The statement is a ``GROUP BY queue, state`` over ``oban_jobs``, which
PostgreSQL answers from the ``(state, queue, ...)`` index; the pruner keeps
the table small enough for that to stay cheap at a scrape interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..job import JobState
from ..schema import oban_jobs

__all__ = ["QueueStats", "queue_stats"]

c = oban_jobs.c


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue as the jobs table has it right now."""

    queue: str
    counts: dict[JobState, int] = field(default_factory=dict)
    """Jobs per state (states without jobs are left out)."""
    oldest_available: datetime | None = None
    """``scheduled_at`` of the queue's oldest available job (None: none available)."""

    def count(self, state: JobState) -> int:
        return self.counts.get(state, 0)

    def lag(self, now: datetime) -> float:
        """Seconds the oldest available job has been waiting (0 when none waits)."""
        if self.oldest_available is None:
            return 0.0
        return max(0.0, (now - self.oldest_available).total_seconds())


def queue_stats(conn: Connection, *, prefix: str | None = None) -> dict[str, QueueStats]:
    """Every queue with jobs in the table, by name: counts per state, oldest available.

    ``prefix``: the PostgreSQL schema of the Oban tables (as ``Oban(prefix=)``).
    """
    statement = sa.select(c.queue, c.state, sa.func.count(), sa.func.min(c.scheduled_at)).group_by(
        c.queue, c.state
    )
    options = {"schema_translate_map": {None: prefix}} if prefix else {}
    counts: dict[str, dict[JobState, int]] = {}
    oldest: dict[str, datetime] = {}
    for queue, state, count, earliest in conn.execute(statement, execution_options=options):
        state = JobState(state)
        counts.setdefault(queue, {})[state] = int(count)
        if state is JobState.AVAILABLE and earliest is not None:
            oldest[queue] = earliest
    return {
        queue: QueueStats(queue, by_state, oldest.get(queue)) for queue, by_state in counts.items()
    }
