"""The lifeline across node processes: a job whose node was SIGKILLed runs again
elsewhere, once; a long job on a live node is never taken from it.

Attempts are counted from the worker's own log (a line per start and end,
with the attempt and the pid), not from the job's row.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from oban import Job, JobState, Oban
from tests.cluster.support import FAST, Cluster, Node, heartbeats, lease
from tests.cluster.workers import Blocker, Run, read_log
from tests.conftest import SqlDatabase, wait_for

pytestmark = pytest.mark.slow

RESCUE_AFTER = float(FAST["rescue_after"])


def observer(database: SqlDatabase) -> Oban:
    """An instance that is never started: the test reads jobs through it."""
    return database.make_oban(rescue_after=RESCUE_AFTER)


def job_of(oban: Oban, job: Job) -> Job:
    found = oban.get_job(job.id or 0)
    assert found is not None, f"job {job.id} is gone"
    return found


def runner_of(nodes: list[Node], run: Run) -> Node:
    (node,) = [node for node in nodes if node.pid == run.pid]
    return node


def test_a_job_of_a_killed_node_runs_again_elsewhere_exactly_once(
    cluster: Cluster, database: SqlDatabase
) -> None:
    log, release = cluster.path("blocker.log"), cluster.path("release")
    nodes = [cluster.spawn(name, queues={"work": 1}) for name in ("node-a", "node-b")]
    for node in nodes:
        node.ready()
    oban = observer(database)
    job = oban.enqueue(Blocker.new({"log": str(log), "release": str(release)}))

    wait_for(lambda: read_log(log), message="the job starts on a node")
    (first,) = read_log(log)
    victim = runner_of(nodes, first)
    victim.kill()
    release.touch()  # the next attempt may finish; the killed one never will
    (survivor,) = [node for node in nodes if node is not victim]

    wait_for(
        lambda: job_of(oban, job).state is JobState.COMPLETED,
        timeout=30,
        message="the orphaned job is rescued and completed by the other node",
    )
    assert survivor.alive()
    runs = read_log(log)
    assert [(run.event, run.attempt, run.pid) for run in runs] == [
        ("start", 1, victim.pid),
        ("start", 2, survivor.pid),
        ("done", 2, survivor.pid),
    ]
    done = job_of(oban, job)
    assert done.attempt == 2
    assert len(done.errors) == 1
    assert "orphaned" in done.errors[0]["error"]
    assert victim.name in done.errors[0]["error"]
    assert done.attempted_by[0] == survivor.name
    survivor.stop()


def test_a_long_job_on_a_live_node_is_never_rescued(
    cluster: Cluster, database: SqlDatabase
) -> None:
    log, release = cluster.path("blocker.log"), cluster.path("release")
    nodes = [cluster.spawn(name, queues={"work": 1}) for name in ("node-a", "node-b")]
    for node in nodes:
        node.ready()
    oban = observer(database)
    job = oban.enqueue(Blocker.new({"log": str(log), "release": str(release)}))
    wait_for(lambda: read_log(log), message="the job starts on a node")
    attempted_at = job_of(oban, job).attempted_at
    assert attempted_at is not None
    # Several rescue_after periods later, by the nodes' own clocks: every node
    # has heart-beaten past that point and the leader has renewed its lease
    # since, so its lifeline has been looking all along.
    later = attempted_at + timedelta(seconds=3 * RESCUE_AFTER)

    def long_after() -> bool:
        beats = heartbeats(database, "work")
        current = lease(database)
        return (
            {beat.node for beat in beats} == {"node-a", "node-b"}
            and all(beat.updated_at > later for beat in beats)
            and current is not None
            and current.expires_at - timedelta(seconds=float(FAST["leader_lease"])) > later
        )

    wait_for(long_after, timeout=30, message="3 rescue_after periods of heartbeats and renewals")
    running = job_of(oban, job)
    assert (running.state, running.attempt, running.errors) == (JobState.EXECUTING, 1, [])

    release.touch()
    wait_for(lambda: job_of(oban, job).state is JobState.COMPLETED, message="the job completes")
    done = job_of(oban, job)
    assert (done.attempt, done.errors) == (1, [])
    (start, end) = read_log(log)
    runner = runner_of(nodes, start)
    assert [(run.event, run.attempt, run.pid) for run in (start, end)] == [
        ("start", 1, runner.pid),
        ("done", 1, runner.pid),
    ]
    for node in nodes:
        node.stop()
