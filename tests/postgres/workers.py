"""Workers for the PostgreSQL tests, importable by name (``tests.postgres.workers.X``).

In-process runs are recorded in ``SEEN``; the two-process drain records each
execution as a row in a side table, so a job that ran twice shows up twice.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from oban import Job, Worker, worker


@dataclass
class Seen:
    """Job ids per attempt, recorded from any thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: Counter[int] = field(default_factory=Counter)

    def add(self, job: Job) -> None:
        with self.lock:
            self.runs[job.id or 0] += 1

    def count(self) -> int:
        with self.lock:
            return sum(self.runs.values())

    def has(self, job_id: int | None) -> bool:
        with self.lock:
            return self.runs[job_id or 0] > 0

    def reset(self) -> None:
        with self.lock:
            self.runs.clear()


SEEN = Seen()


@worker(queue="default")
class Note(Worker):
    """Records that it ran; succeeds."""

    def process(self, job: Job) -> None:
        SEEN.add(job)


@worker(queue="default", max_attempts=1)
class Explode(Worker):
    """Records that it ran; fails (with one attempt, it is discarded)."""

    def process(self, job: Job) -> None:
        SEEN.add(job)
        raise RuntimeError(f"exploded on purpose: {job.args}")


@worker(queue="default")
class AsyncNote(Worker):
    """The ``async def`` twin of ``Note``."""

    async def process(self, job: Job) -> None:
        SEEN.add(job)


_side: dict[str, sa.Engine] = {}
_side_lock = threading.Lock()


def _side_bind() -> sa.Engine:
    url = os.environ["OBAN_TEST_SIDE_URL"]
    with _side_lock:
        if url not in _side:
            _side[url] = sa.create_engine(url, pool_size=12)
        return _side[url]


@worker(queue="drain")
class SideEffect(Worker):
    """Writes one row per execution (job id, attempt, node) to ``{prefix}.side_effects``.

    The side table has no unique key on purpose: a job that ran twice leaves
    two rows, which the test counts.
    """

    def process(self, job: Job) -> None:
        schema = os.environ["OBAN_TEST_SIDE_SCHEMA"]
        side = sa.Table(
            "side_effects",
            sa.MetaData(),
            sa.Column("job_id", sa.BigInteger),
            sa.Column("attempt", sa.Integer),
            sa.Column("node", sa.Text),
            schema=schema,
        )
        with _side_bind().begin() as conn:
            conn.execute(
                sa.insert(side).values(
                    job_id=job.id, attempt=job.attempt, node=os.environ["OBAN_TEST_NODE"]
                )
            )
