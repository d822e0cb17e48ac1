"""Chaos in the node processes (issue 13, scenarios 1 and 6): nodes SIGKILLed at
random while three of them drain a queue, and a burst of jobs across three nodes.

A killed node's jobs that were running are orphans: the leader's lifeline
puts them back once the node's heartbeat is ``rescue_after`` old (2 s here),
and they start a second time, which is the one repeat allowed, logged with
the job id. Every count comes from the workers' log (``tests/chaos/drain.py``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.chaos.drain import (
    BOUNDED_JOBS,
    BOUNDED_SECONDS,
    Watch,
    finish,
    insert,
    spawn,
    start_nodes,
    wait_progress,
)
from tests.chaos.support import report
from tests.cluster.support import Cluster
from tests.cluster.workers import read_log
from tests.conftest import SqlDatabase

NODES = 3
LIMIT = 10
"""Jobs each node runs at once: at most ``NODES * LIMIT`` are under way at any time."""


def test_nodes_killed_at_random_lose_no_job_and_rerun_only_their_orphans(
    chaos_database: SqlDatabase, chaos_minutes: float | None, tmp_path: Path
) -> None:
    long_form = chaos_minutes is not None
    jobs = 20_000 if long_form else BOUNDED_JOBS
    duration = 60 * chaos_minutes if chaos_minutes is not None else BOUNDED_SECONDS
    kill_every = 3.0 if long_form else 2.0
    # Each job works long enough that the drain lasts about `duration`.
    seconds = duration * NODES * LIMIT / jobs
    log = tmp_path / "starts.log"
    cluster = Cluster(chaos_database, tmp_path)
    rng = random.Random(13)
    killed_at: dict[int, float] = {}
    try:
        lifetime = duration + 120
        nodes = start_nodes(cluster, NODES, limit=LIMIT, lifetime=lifetime)
        with Watch(log) as watch:
            job_ids = insert(chaos_database, log, jobs, seconds=seconds)
            began = time.monotonic()
            wait_progress(watch, NODES * LIMIT, timeout=30)
            # Kill while most jobs are still to run, so every kill hits a busy node
            # and enough are left after the last one to show the drain going on.
            while True:
                time.sleep(kill_every)  # paces the injector
                if time.monotonic() - began >= duration or watch.lines >= 0.7 * jobs:
                    break
                index = rng.randrange(NODES)
                victim = nodes[index]
                victim.kill()
                killed_at[victim.pid] = time.monotonic()
                nodes[index] = spawn(cluster, index, limit=LIMIT, lifetime=lifetime)
                nodes[index].ready()
            assert len(killed_at) >= 2, f"the drain ended after {len(killed_at)} kill(s)"
            last_kill = max(killed_at.values())
            result = finish(
                "node processes SIGKILLed at random",
                chaos_database,
                watch,
                job_ids,
                timeout=60 + duration,
                killed=set(killed_at),
            )
            result.recovery_seconds = watch.resumed(last_kill, beyond=NODES * LIMIT)
            assert result.recovery_seconds is not None, "no job started after the last kill"
            result.notes.update(
                kills=len(killed_at),
                orphans_rescued=len(result.twice),
                rescue_seconds=rescue_seconds(watch, log, killed_at),
                seconds_per_job=round(seconds, 3),
            )
    finally:
        cluster.close()
    report(result)


def rescue_seconds(watch: Watch, log: Path, killed_at: dict[int, float]) -> float | None:
    """The longest time from a kill to the second start of one of its orphans."""
    first_pid: dict[int, int] = {}
    longest: float | None = None
    for index, run in enumerate(read_log(log)):
        if run.event != "start":
            continue
        if run.job_id not in first_pid:
            first_pid[run.job_id] = run.pid
            continue
        seen = watch.seen_at(index)
        kill = killed_at.get(first_pid[run.job_id])
        if seen is not None and kill is not None:
            longest = max(longest or 0.0, seen - kill)
    return None if longest is None else round(longest, 2)


def test_a_burst_across_three_nodes_runs_every_job_once(
    chaos_database: SqlDatabase, chaos_minutes: float | None, tmp_path: Path
) -> None:
    jobs = 100_000 if chaos_minutes is not None else 15_000
    log = tmp_path / "starts.log"
    cluster = Cluster(chaos_database, tmp_path)
    try:
        start_nodes(cluster, NODES, limit=20, lifetime=600)
        with Watch(log) as watch:
            began = time.monotonic()
            job_ids = insert(chaos_database, log, jobs)
            inserted = time.monotonic() - began
            result = finish("a burst across 3 nodes", chaos_database, watch, job_ids, timeout=300)
            last_start = watch.seen_at(jobs - 1)
            assert last_start is not None
            elapsed = last_start - began
            result.notes.update(
                jobs_per_second=round(jobs / elapsed),
                seconds=round(elapsed, 2),
                insert_seconds=round(inserted, 2),
            )
    finally:
        cluster.close()
    report(result)
