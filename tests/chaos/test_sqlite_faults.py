"""Chaos scenario 8 (issue 13): one SQLite file, several processes, the file's own faults.

- A lock storm: four node processes drain jobs while another program keeps
  taking the file's write lock (``BEGIN IMMEDIATE``, hold, ``COMMIT``, again).
  Every job must run exactly once; the figures show what the storm costs.
- A full disk and a read-only connection: a node in the test's process (and
  its inserts) is refused every write for a while, through a switch on its
  SQLAlchemy engine that opens each new connection with ``PRAGMA
  max_page_count`` at the file's size (SQLite's ``SQLITE_FULL``, what a full
  disk answers) or ``PRAGMA query_only`` (``SQLITE_READONLY``, what a file
  without write permission answers; the suite runs as root, for whom
  ``chmod 0444`` changes nothing). The refused insert must raise
  :class:`oban.DatabaseError` (under :class:`oban.ObanError`) saying what to
  do, store none of its batch, and succeed once writes are allowed again;
  the jobs stored before all run once, those of the refused node included.

Counts come from the workers' log (``tests.cluster.workers.Note``), never from
the jobs table; the table is read only to check that a refused batch left no row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from oban import Job, JobState, Oban
from oban.config import RESCUE_AFTER as RESCUE_AFTER_DEFAULT
from tests.chaos.support import Tally, report, tally
from tests.cluster.support import FAST, REPO, Cluster
from tests.cluster.workers import Note, starts
from tests.conftest import SqlDatabase, wait_for

PENDING = [JobState.AVAILABLE, JobState.SCHEDULED, JobState.EXECUTING, JobState.RETRYABLE]

RESCUE_AFTER = 10.0
"""Longer than any refusal here: a node that cannot write its heartbeat for a
moment is not taken for dead (that would rerun its jobs by design)."""


@pytest.fixture
def cluster(chaos_lite_database: SqlDatabase, tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(chaos_lite_database, tmp_path)
    try:
        yield nodes
    finally:
        nodes.close()


def notes(log: Path, batch: str, count: int, *, queue: str = "q", **args: Any) -> list[Job]:
    """``count`` :class:`Note` jobs of ``batch`` (an arg, so its stored rows can be counted)."""
    return [Note.new({"log": str(log), "batch": batch, **args}, queue=queue) for _ in range(count)]


def ids_of(jobs: list[Job]) -> list[int]:
    return [job.id for job in jobs if job.id is not None]


def seconds_until_one_starts(log: Path, ids: list[int], since: float) -> float:
    """Seconds from ``since`` until the log shows one of ``ids`` starting."""
    wanted = set(ids)
    wait_for(lambda: wanted & set(starts(log)), timeout=60, message="jobs flow again")
    return round(time.monotonic() - since, 3)


def wait_until_all_ran(log: Path, ids: list[int], observer: Oban) -> None:
    """Every job started (by the log) and none is left to run (by the library)."""
    wanted = set(ids)
    wait_for(
        lambda: wanted <= set(starts(log)),
        timeout=90,
        message=f"all {len(wanted)} jobs start",
    )
    wait_for(
        lambda: not observer.list_jobs(state=PENDING, limit=1),
        timeout=30,
        message="no job is left to run",
    )
    # Every one of them completed (none discarded or cancelled on the way).
    unfinished = [
        job.id for job in observer.list_jobs(ids=ids, state=["discarded", "cancelled"], limit=1000)
    ]
    assert not unfinished, f"jobs that did not complete: {unfinished[:20]}"


def assert_exactly_once(result: Tally) -> None:
    assert not result.lost, f"{len(result.lost)} jobs never ran: {result.lost[:20]}"
    assert not result.twice, f"jobs ran more than once: {result.twice}"


# -- a lock storm -------------------------------------------------------------------


@dataclass
class Locker:
    """The ``tests.chaos.sqlite_locker`` process and its files."""

    process: subprocess.Popen[bytes]
    stop_path: Path
    count_path: Path

    @classmethod
    def start(cls, database: Path, directory: Path, hold: float, pause: float) -> Locker:
        stop, count = directory / "locker.stop", directory / "locker.count"
        command = [sys.executable, "-m", "tests.chaos.sqlite_locker", str(database)]
        command += [str(hold), str(pause), str(stop), str(count)]
        process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL)
        return cls(process, stop, count)

    def stop(self) -> int:
        """Stop it after its current hold; how many times it held the lock."""
        self.stop_path.touch()
        assert self.process.wait(timeout=60) == 0, "the locker failed"
        return int(self.count_path.read_text())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def test_lock_storms_lose_and_repeat_no_job(
    cluster: Cluster, chaos_lite_database: SqlDatabase, chaos_minutes: float | None
) -> None:
    storm = 12.0 if chaos_minutes is None else chaos_minutes * 60
    lifetime = storm + 150
    # The library's default rescue_after: with FAST's 2 s, a node starved of the lock
    # that long misses heartbeats, and its finished-but-unacked jobs are rescued and
    # run again, as any node's that looks dead (at least once, by design).
    nodes = [
        cluster.spawn(
            f"node-{n}", queues={"q": 4}, lifetime=lifetime, rescue_after=RESCUE_AFTER_DEFAULT
        )
        for n in range(4)
    ]
    for node in nodes:
        node.ready()
    log = cluster.path("note.log")
    inserter = chaos_lite_database.make_oban()
    database = Path(chaos_lite_database.bind.url.database or "")
    # Holds twice as long as it pauses: the others get the lock a third of the time at most.
    locker = Locker.start(database, cluster.directory, hold=0.2, pause=0.1)
    try:
        ids: list[int] = []
        slowest_insert = 0.0
        started = time.monotonic()
        while time.monotonic() - started < storm:
            before = time.monotonic()
            ids += ids_of(inserter.enqueue_many(notes(log, "storm", 25)))
            slowest_insert = max(slowest_insert, time.monotonic() - before)
            time.sleep(0.1)  # paces the inserts
        ran_in_storm = sum(starts(log).values())
        holds = locker.stop()
        calm = time.monotonic()
        probe = ids_of(inserter.enqueue_many(notes(log, "probe", 20)))
        recovery = seconds_until_one_starts(log, probe, calm)
        ids += probe
        wait_until_all_ran(log, ids, inserter)
        drained = time.monotonic() - calm
    finally:
        locker.kill()
    assert all(node.alive() for node in nodes), "a node died in the lock storm"

    result = tally("sqlite lock storm", log, ids)
    result.recovery_seconds = recovery
    result.notes = {
        "nodes": len(nodes),
        "storm_seconds": round(storm, 1),
        "locker_holds": holds,
        "ran_in_storm": ran_in_storm,
        "storm_jobs_per_second": round(ran_in_storm / storm, 1),
        "after_jobs_per_second": round((len(ids) - ran_in_storm) / max(drained, 1e-3), 1),
        "slowest_insert_seconds": round(slowest_insert, 3),
    }
    report(result)
    assert_exactly_once(result)


# -- a full disk, a read-only connection --------------------------------------------


@dataclass
class Refusal:
    """A switch on an engine: while on, each new connection refuses writes as ``kind`` does."""

    bind: sa.Engine
    kind: str
    """``"disk full"`` (``max_page_count`` at the file's size) or ``"read-only"``
    (``query_only``)."""
    on: bool = field(default=False)

    def __post_init__(self) -> None:
        sa.event.listen(self.bind, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, record: object) -> None:
        if not self.on:
            return
        if self.kind == "disk full":
            (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
            dbapi_connection.execute(f"PRAGMA max_page_count = {int(pages)}")
        else:
            dbapi_connection.execute("PRAGMA query_only = ON")

    def switch(self, on: bool) -> None:
        self.on = on
        self.bind.dispose()  # pooled connections reopen with, or without, the fault


EXPECTED = {
    "disk full": ("database or disk is full", "free space"),
    "read-only": ("readonly database", "write access"),
}
"""What the refused insert's message must say: SQLite's cause, and what to do."""


def stored(database: SqlDatabase, batch: str) -> int:
    """Rows of ``batch`` in the file, read through a connection of the test's own."""
    query = "SELECT count(*) FROM oban_jobs WHERE json_extract(args, '$.batch') = :batch"
    with database.bind.connect() as conn:
        return int(conn.execute(sa.text(query), {"batch": batch}).scalar_one())


def assert_refused(error: pytest.ExceptionInfo[oban.DatabaseError], kind: str) -> None:
    cause, remedy = EXPECTED[kind]
    message = str(error.value)
    assert isinstance(error.value, oban.ObanError)
    assert cause in message, f"the {kind} error does not say what happened: {message}"
    assert remedy in message, f"the {kind} error does not say what to do: {message}"
    assert isinstance(error.value.__cause__, sa.exc.DBAPIError), "the driver's error is attached"


def assert_read_only_url_refused(database: SqlDatabase, log: Path) -> None:
    """A file opened read-only (``mode=ro``) refuses inserts as clearly."""
    path = database.bind.url.database
    read_only = Oban(f"sqlite:///file:{path}?mode=ro&uri=true", name="read-only-url")
    try:
        with pytest.raises(oban.DatabaseError) as error:
            read_only.enqueue_many(notes(log, "read-only-url", 5))
        assert_refused(error, "read-only")
    finally:
        read_only.close()
    assert stored(database, "read-only-url") == 0


def pending(log: Path, ids: list[int]) -> list[int]:
    """Those of ``ids`` the log shows no start of yet."""
    ran = starts(log)
    return [job_id for job_id in ids if job_id not in ran]


@pytest.mark.parametrize("kind", ["disk full", "read-only"])
def test_refused_writes_store_no_partial_batch_and_lose_nothing(
    cluster: Cluster,
    chaos_lite_database: SqlDatabase,
    chaos_minutes: float | None,
    kind: str,
) -> None:
    rounds = 3 if chaos_minutes is None else None
    until = time.monotonic() + (chaos_minutes or 0) * 60
    options: dict[str, Any] = {**FAST, "rescue_after": RESCUE_AFTER, "prune": False}
    lifetime = (chaos_minutes or 0) * 60 + 150
    nodes = [
        cluster.spawn(f"node-{n}", queues={"q": 2}, lifetime=lifetime, **options) for n in "ab"
    ]
    for node in nodes:
        node.ready()
    log = cluster.path("note.log")
    refusal = Refusal(sa.create_engine(cluster.url, connect_args={"timeout": 30}), kind)
    # The refused node runs queue "own" alone: jobs stored there wait for it to write
    # again (its fetches, acks and heartbeats are refused too); "q" runs everywhere.
    victim = Oban(refusal.bind, queues={"q": 2, "own": 2}, node="victim", **options)
    victim.start()
    try:
        if kind == "read-only":
            assert_read_only_url_refused(chaos_lite_database, log)
        ids: list[int] = []
        flowing: list[float] = []
        own_back: list[float] = []
        round_ = 0
        while (round_ < rounds) if rounds is not None else (time.monotonic() < until):
            round_ += 1
            ids += ids_of(victim.enqueue_many(notes(log, f"stored-{round_}", 150, seconds=0.01)))
            own = notes(log, f"own-{round_}", 40, queue="own", seconds=0.02)
            own_ids = ids_of(victim.enqueue_many(own))
            ids += own_ids
            refusal.switch(on=True)
            # Big args: the batch needs new pages whatever the free list holds.
            refused = notes(log, f"refused-{round_}", 100, pad="x" * 4000)
            with pytest.raises(oban.DatabaseError) as error:
                victim.enqueue_many(refused)
            assert_refused(error, kind)
            assert stored(chaos_lite_database, f"refused-{round_}") == 0, "a partial batch"
            time.sleep(2)  # the refusal lasts a while, shorter than RESCUE_AFTER
            refusal.switch(on=False)
            allowed = time.monotonic()
            waiting = pending(log, own_ids)
            again = ids_of(victim.enqueue_many(refused))
            flowing.append(seconds_until_one_starts(log, again, allowed))
            if waiting:
                own_back.append(seconds_until_one_starts(log, waiting, allowed))
            ids += again
        wait_until_all_ran(log, ids, victim)
    finally:
        victim.stop(grace=5)
        victim.close()
        refusal.bind.dispose()
    assert all(node.alive() for node in nodes), f"a node died while the victim was refused ({kind})"

    result = tally(f"sqlite {kind}", log, ids)
    result.recovery_seconds = max(flowing)
    by_victim = sum(1 for line in log.read_text().splitlines() if line.endswith(f" {os.getpid()}"))
    result.notes = {
        "rounds": round_,
        "ran_on_refused_node": by_victim,
        "refused_node_back_seconds": max(own_back) if own_back else None,
    }
    report(result)
    assert_exactly_once(result)
