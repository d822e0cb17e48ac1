"""Chaos in PostgreSQL (issue 13, scenarios 2 and 3): the nodes' connections
terminated at a steady rate, and the server restarted twice, while three node
processes drain a queue.

No process dies here, so no job may start twice, and none may be lost: a
fetch or an ack cut off half way is retried or undone, never dropped. The
nodes' ``rescue_after`` (10 s) outlasts each outage, so a live node is never
taken for a dead one. Every count comes from the workers' log
(``tests/chaos/drain.py``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.chaos.drain import (
    APP_PREFIX,
    BOUNDED_JOBS,
    BOUNDED_SECONDS,
    Watch,
    finish,
    insert,
    start_nodes,
    wait_progress,
)
from tests.chaos.server import PrivateServer
from tests.chaos.support import report
from tests.cluster.support import Cluster
from tests.cluster.workers import read_log
from tests.conftest import SqlDatabase

NODES = 3
LIMIT = 10
RESCUE_AFTER = 10.0
"""Longer than any outage here: the lifeline must not rescue jobs of live nodes."""


def database_name(database: SqlDatabase) -> str:
    name = database.bind.url.database
    assert name is not None
    return name


def test_terminated_connections_lose_no_job(
    chaos_server: PrivateServer,
    chaos_database: SqlDatabase,
    chaos_minutes: float | None,
    tmp_path: Path,
) -> None:
    jobs = 20_000 if chaos_minutes is not None else BOUNDED_JOBS
    duration = 60 * chaos_minutes if chaos_minutes is not None else BOUNDED_SECONDS
    every = 0.5
    seconds = duration * NODES * LIMIT / jobs
    log = tmp_path / "starts.log"
    name = database_name(chaos_database)
    cluster = Cluster(chaos_database, tmp_path)
    pooled = listeners = rounds = 0
    try:
        start_nodes(cluster, NODES, limit=LIMIT, lifetime=duration + 120, rescue_after=RESCUE_AFTER)
        with Watch(log) as watch:
            job_ids = insert(chaos_database, log, jobs, seconds=seconds)
            began = time.monotonic()
            wait_progress(watch, NODES * LIMIT, timeout=30)
            while time.monotonic() - began < duration and watch.lines < 0.8 * jobs:
                time.sleep(every)  # paces the injector
                listeners += chaos_server.terminate(
                    name, application_like=f"oban_notifier:{APP_PREFIX}%"
                )
                pooled += chaos_server.terminate(name, application_like=f"{APP_PREFIX}%")
                rounds += 1
            last = time.monotonic()
            assert pooled, "no pooled connection of the nodes was terminated"
            assert listeners, "no notifier connection of the nodes was terminated"
            result = finish(
                "connections terminated (pool and notifier)",
                chaos_database,
                watch,
                job_ids,
                timeout=60 + duration,
            )
            result.recovery_seconds = watch.resumed(last, beyond=NODES * LIMIT)
            assert result.recovery_seconds is not None, "no job started after the last cut"
            result.notes.update(
                rounds=rounds,
                pooled_terminated=pooled,
                notifier_terminated=listeners,
                every_seconds=every,
            )
    finally:
        cluster.close()
    report(result)


def test_a_restarted_server_loses_no_job_and_every_node_resumes(
    chaos_server: PrivateServer,
    chaos_database: SqlDatabase,
    chaos_minutes: float | None,
    tmp_path: Path,
) -> None:
    jobs = 20_000 if chaos_minutes is not None else BOUNDED_JOBS
    duration = 60 * chaos_minutes if chaos_minutes is not None else BOUNDED_SECONDS
    restarts = max(2, int(duration // 20))
    seconds = duration * NODES * LIMIT / jobs
    log = tmp_path / "starts.log"
    cluster = Cluster(chaos_database, tmp_path)
    recoveries: list[float] = []
    outages: list[float] = []
    """Seconds each ``pg_ctl restart`` took (the server down, then starting)."""
    try:
        nodes = start_nodes(
            cluster, NODES, limit=LIMIT, lifetime=duration + 120, rescue_after=RESCUE_AFTER
        )
        pids = {node.pid for node in nodes.values()}
        with Watch(log) as watch:
            job_ids = insert(chaos_database, log, jobs, seconds=seconds)
            began = time.monotonic()
            wait_progress(watch, NODES * LIMIT, timeout=30)
            for number in range(restarts):
                # Spread over the first 70 % of the drain; paces the injector.
                due = began + (number + 1) * 0.7 * duration / restarts
                time.sleep(max(0.0, due - time.monotonic()))
                down = time.monotonic()
                chaos_server.restart()
                back = time.monotonic()
                outages.append(round(back - down, 2))
                lines_then = watch.sample()
                wait_progress(watch, lines_then + NODES * LIMIT + 1, timeout=60)
                recovered = watch.resumed(back, beyond=NODES * LIMIT)
                assert recovered is not None
                recoveries.append(recovered)
            result = finish(
                "PostgreSQL restarted", chaos_database, watch, job_ids, timeout=60 + duration
            )
            # Every node, not just one, ran jobs again after the last restart: more
            # than it could have had under way before it.
            after = Counter(run.pid for run in read_log(log)[lines_then:] if run.event == "start")
            names = {node.pid: node.name for node in nodes.values()}
            per_node = {names[pid]: after[pid] for pid in sorted(pids)}
            stalled = [name for name, count in per_node.items() if count <= LIMIT]
            assert not stalled, f"nodes that ran (almost) nothing after the restart: {per_node}"
            result.recovery_seconds = max(recoveries)
            result.notes.update(
                restarts=restarts,
                recovery_each=recoveries,
                restart_seconds=outages,
                starts_after_last_restart=per_node,
            )
    finally:
        cluster.close()
    report(result)
