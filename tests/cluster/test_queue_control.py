"""Queue control across node processes: a pause or a scale on one node holds on every
node, including one that starts later (on SQLite several processes share the file).

The test process is node A; B, C and later D are node processes. "Not
fetched" is shown, not hoped for: every node has heart-beaten twice since
the jobs went in (so each has polled many times), and the jobs are still
available.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from oban import JobState, Oban, QueueInfo
from tests.cluster.support import FAST, HEARTBEAT, Cluster, heartbeats
from tests.cluster.workers import Note, starts
from tests.conftest import SqlDatabase, wait_for

pytestmark = pytest.mark.slow

JOBS = 20


def every_node(oban: Oban, names: set[str], check: Callable[[QueueInfo], bool]) -> bool:
    """``check`` holds for queue q on exactly the nodes ``names`` (one start each)."""
    infos = oban.check_queue("q")
    return sorted(info.node for info in infos) == sorted(names) and all(map(check, infos))


def beaten_since(database: SqlDatabase, names: set[str], since: datetime) -> Callable[[], bool]:
    """A condition: each of ``names`` wrote a heartbeat of q two intervals after ``since``."""
    after = since + timedelta(seconds=2 * HEARTBEAT)

    def check() -> bool:
        beats = {beat.node: beat for beat in heartbeats(database, "q")}
        return set(beats) >= names and all(beats[name].updated_at > after for name in names)

    return check


def states(oban: Oban) -> list[JobState]:
    return [job.state for job in oban.list_jobs(worker=Note, limit=1000)]


def test_pause_and_scale_on_one_node_hold_on_every_node_and_on_one_started_later(
    cluster: Cluster, database: SqlDatabase
) -> None:
    log = cluster.path("notes.log")
    a = database.make_oban(node="node-a", queues={"q": 2}, **FAST)
    a.start()
    for name in ("node-b", "node-c"):
        cluster.spawn(name, queues={"q": 2}).ready()
    names = {"node-a", "node-b", "node-c"}
    wait_for(lambda: every_node(a, names, lambda info: not info.paused), message="3 nodes run q")

    a.pause_queue("q")
    wait_for(lambda: every_node(a, names, lambda info: info.paused), message="q paused everywhere")
    jobs = a.enqueue_many(Note.new({"log": str(log), "n": n}) for n in range(JOBS))
    wait_for(
        beaten_since(database, names, datetime.now(timezone.utc)),
        message="every node heart-beat twice after the insert",
    )
    assert states(a) == [JobState.AVAILABLE] * JOBS
    assert not starts(log)

    a.scale_queue("q", limit=5)
    wait_for(
        lambda: every_node(a, names, lambda info: info.paused and info.limit == 5),
        message="q scaled to 5 everywhere and still paused",
    )

    late = cluster.spawn("node-d", queues={"q": 2})
    late.ready()
    names.add("node-d")
    wait_for(
        lambda: every_node(a, names, lambda info: info.paused and info.limit == 5),
        message="node-d starts paused, with the limit of the scale",
    )
    wait_for(
        beaten_since(database, {"node-d"}, datetime.now(timezone.utc)),
        message="node-d heart-beat twice more",
    )
    assert states(a) == [JobState.AVAILABLE] * JOBS
    assert not starts(log)

    a.resume_queue("q")
    wait_for(lambda: states(a) == [JobState.COMPLETED] * JOBS, message="every job completes")
    assert starts(log) == {job.id: 1 for job in jobs}
    wait_for(
        lambda: every_node(a, names, lambda info: not info.paused and info.limit == 5),
        message="q resumed everywhere",
    )
    for node in cluster.nodes:
        node.stop()
    a.stop()
