"""The drain every chaos scenario runs: node processes emptying a queue while a fault strikes.

:func:`start_nodes` spawns the nodes (``tests.cluster.support.Cluster``) on
the private server's database, :func:`insert` puts ``Note`` jobs in with the
log they append their start to, a :class:`Watch` samples how many starts the
log holds (so the recovery after a fault is read off the log, with the time
each count was first seen), :func:`wait_drained` waits with a deadline until
every job started by the log and none is left to run, and :func:`verdict`
tallies the log and asserts what a user relies on: none lost, none started
twice unless its first start was in a process that was killed, and then
twice at most.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from oban import Oban
from tests.chaos.support import Tally, tally
from tests.cluster.support import Cluster, Node
from tests.cluster.workers import Note, read_log
from tests.conftest import SqlDatabase, wait_for

QUEUE = "q"
"""The queue of :class:`tests.cluster.workers.Note`."""
APP_PREFIX = "chaos-node-"
"""Every node's name starts so; its connections' application names contain it
(pooled: the name itself, the notifier's: ``oban_notifier:<name>``)."""
INSERT_BATCH = 5_000
BOUNDED_JOBS = 2_000
"""Jobs of a bounded drain under faults (the long form drains 20,000)."""
BOUNDED_SECONDS = 7.0
"""About how long a bounded drain under faults lasts (the jobs are paced to it)."""


def node_name(index: int) -> str:
    return f"{APP_PREFIX}{index}"


def spawn(cluster: Cluster, index: int, *, limit: int, lifetime: float, **options: Any) -> Node:
    """Node ``index`` (again, after a kill: a new process under the same name)."""
    name = node_name(index)
    return cluster.spawn(
        name,
        queues={QUEUE: limit},
        application_name=name,
        lifetime=lifetime,
        prune=False,  # rows stay for the diagnosis of a job that never started
        **options,
    )


def start_nodes(
    cluster: Cluster, count: int, *, limit: int, lifetime: float, **options: Any
) -> dict[int, Node]:
    """``count`` nodes, each running; by index."""
    nodes = {
        index: spawn(cluster, index, limit=limit, lifetime=lifetime, **options)
        for index in range(count)
    }
    for node in nodes.values():
        node.ready()
    return nodes


def observer(database: SqlDatabase) -> Oban:
    """An instance that is never started: the test inserts through it."""
    return database.make_oban()


def insert(database: SqlDatabase, log: Path, count: int, *, seconds: float = 0) -> list[int]:
    """``count`` ``Note`` jobs logging to ``log``, each working ``seconds``; their ids."""
    oban = observer(database)
    args: dict[str, Any] = {"log": str(log)}
    if seconds:
        args["seconds"] = seconds
    ids: list[int] = []
    for first in range(0, count, INSERT_BATCH):
        batch = [Note.new(args) for _ in range(min(INSERT_BATCH, count - first))]
        ids.extend(job.id or 0 for job in oban.enqueue_many(batch))
    return ids


@dataclass
class Watch:
    """Samples the number of lines of the log every ``interval`` in a thread of its own.

    Reads only what was appended since the last sample, so a log of
    100,000 lines costs no more to watch than a short one.
    """

    log: Path
    interval: float = 0.02
    samples: list[tuple[float, int]] = field(default_factory=list)
    _offset: int = 0
    _lines: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        """The lines of the log now (complete ones), recorded with the time."""
        with self._lock:
            if self.log.exists():
                with self.log.open("rb") as handle:
                    handle.seek(self._offset)
                    chunk = handle.read()
                complete = chunk.rfind(b"\n") + 1
                self._offset += complete
                self._lines += chunk.count(b"\n", 0, complete)
            self.samples.append((time.monotonic(), self._lines))
            return self._lines

    @property
    def lines(self) -> int:
        return self._lines

    def seen_at(self, index: int) -> float | None:
        """When line ``index`` (from 0) of the log was first seen."""
        for at, count in self.samples:
            if count > index:
                return at
        return None

    def resumed(self, since: float, *, beyond: int) -> float | None:
        """Seconds from ``since`` until more than ``beyond`` starts were logged
        after it (the jobs already running at ``since`` cannot make that many),
        None if that never happened."""
        before = [count for at, count in self.samples if at <= since]
        base = before[-1] if before else 0
        for at, count in self.samples:
            if at > since and count > base + beyond:
                return round(at - since, 2)
        return None


@contextmanager
def connect(database: SqlDatabase) -> Iterator[sa.Connection]:
    """A connection of the test's own, outside any pool: a pooled one would not
    survive the server's restart."""
    engine = sa.create_engine(
        database.bind.url, poolclass=NullPool, connect_args={"application_name": "chaos-test"}
    )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def unfinished(database: SqlDatabase) -> int:
    """Jobs that may still start (any state but the final ones): the drain's end,
    never what is asserted (that comes from the log)."""
    with connect(database) as conn:
        return int(
            conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {database.jobs_table} "
                    "WHERE state NOT IN ('completed', 'discarded', 'cancelled')"
                )
            ).scalar_one()
        )


def wait_drained(
    database: SqlDatabase, watch: Watch, job_ids: Collection[int], *, timeout: float
) -> bool:
    """Wait until the log holds a start of every job and no job can start any more
    (a job of a killed node rescued late starts again before this returns).
    False at the deadline: :func:`verdict` then names what was lost."""
    expected = set(job_ids)

    def drained() -> bool:
        if watch.sample() < len(expected):
            return False
        started = {run.job_id for run in read_log(watch.log) if run.event == "start"}
        return started >= expected and unfinished(database) == 0

    deadline = time.monotonic() + timeout
    while not drained():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def states_of(database: SqlDatabase, job_ids: Iterable[int]) -> list[tuple[Any, ...]]:
    """(id, state, attempt, attempted_by) of ``job_ids``: what a failure message shows."""
    ids = list(job_ids)[:20]
    with connect(database) as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT id, state, attempt, attempted_by FROM {database.jobs_table} "
                "WHERE id = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        )
        return [tuple(row) for row in rows]


def verdict(
    scenario: str,
    database: SqlDatabase,
    log: Path,
    job_ids: Collection[int],
    *,
    killed: Collection[int] = (),
) -> Tally:
    """The log's tally, asserted: every job started; a job started more than once
    only if every start but its last was in a killed process (``killed``: pids).
    So a job starts twice at most, unless the node its rescue landed on was
    killed in turn (each repeat is printed with the pids of its starts)."""
    result = tally(scenario, log, job_ids)
    assert not result.lost, (
        f"{scenario}: {len(result.lost)} of {result.jobs} jobs never started: "
        f"{result.lost[:20]}; their rows: {states_of(database, result.lost)}"
    )
    pids: dict[int, list[int]] = defaultdict(list)
    for run in read_log(log):
        if run.event == "start" and run.job_id in result.twice:
            pids[run.job_id].append(run.pid)
    wrong = {
        job_id: pids[job_id]
        for job_id, count in result.twice.items()
        if any(pid not in killed for pid in pids[job_id][:-1])
    }
    if pids:
        # Each repeat by its job id, with the pids of its starts (the first one killed).
        print(f"{scenario}: started twice, job id -> pids: {sorted(pids.items())}")
    assert not wrong, (
        f"{scenario}: jobs started again though an earlier start's process was not "
        f"killed, job id -> pids of its starts: {sorted(wrong.items())[:20]}"
    )
    return result


def finish(
    scenario: str,
    database: SqlDatabase,
    watch: Watch,
    job_ids: Collection[int],
    *,
    timeout: float,
    killed: Collection[int] = (),
) -> Tally:
    """:func:`wait_drained`, then :func:`verdict`; fails if jobs were left to run
    at the deadline although every one had started (a rescue that never came)."""
    drained = wait_drained(database, watch, job_ids, timeout=timeout)
    result = verdict(scenario, database, watch.log, job_ids, killed=killed)
    if not drained:
        pytest.fail(f"{scenario}: {unfinished(database)} jobs still unfinished after {timeout}s")
    failed = not_completed(database)
    assert not failed, f"{scenario}: jobs that ended other than completed: {failed[:20]}"
    return result


def not_completed(database: SqlDatabase) -> list[tuple[Any, ...]]:
    """(id, state, attempt) of the finished jobs that did not complete (discarded after
    repeated rescues, say): every job of a scenario must complete."""
    with connect(database) as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT id, state, attempt FROM {database.jobs_table} "
                "WHERE state <> 'completed' ORDER BY id"
            )
        ).all()
    return [tuple(row) for row in rows]


def wait_progress(watch: Watch, at_least: int, *, timeout: float) -> None:
    """Wait until the log holds ``at_least`` starts (the drain is under way)."""
    wait_for(lambda: watch.sample() >= at_least, timeout=timeout, message=f"{at_least} starts")
