"""Clock skew: one node's clock is 30 s off (scenario 9 of issue 13).

Nodes compare times they did not write: the lifeline reads other nodes'
heartbeats, a leader bids against another's lease, cron works out its slots.
A node whose clock runs ahead must not take a live node's heartbeat for a
dead one (rescuing, and so running twice, a job that is still running); a
node whose clock runs behind must not look dead to the others. Each cron slot
must still run once, whichever node inserts it.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from oban.schema import oban_cron_slots
from tests.chaos.support import Tally, report, tally
from tests.cluster.node_process import write_atomically
from tests.cluster.support import Cluster, Node, connect, lease
from tests.cluster.workers import Blocker, read_log
from tests.conftest import SqlDatabase, wait_for

SKEW = 30.0
SPEED = 2.5
"""The cron test's simulated clocks: below 3, so leases (renewed every third of
their length in real seconds) never lapse."""
RESCUE_AFTER = 3.0
"""Far below the skew: a lifeline that trusts another node's clock rescues at once."""


def leads(database: SqlDatabase, node: Node) -> bool:
    current = lease(database)
    return current is not None and current.node == node.leader_node


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_skewed_clock_rescues_no_live_job(
    chaos_database: SqlDatabase, cluster: Cluster, offset: float
) -> None:
    """A job runs on one node for several ``rescue_after`` while the other node
    leads, one of the two with its clock ``offset`` seconds off: it runs once."""
    log, release = cluster.path("blocker.log"), cluster.path("release")
    # The node ahead takes the lease (the other's looks expired to it): it leads
    # and the normal node runs the job. Behind, the normal node leads and the
    # skewed one runs it.
    clock = {"offset": offset}
    skewed = cluster.spawn(
        "skewed", clock=clock, rescue_after=RESCUE_AFTER, queues={} if offset > 0 else {"work": 1}
    )
    normal = cluster.spawn(
        "normal", rescue_after=RESCUE_AFTER, queues={"work": 1} if offset > 0 else {}
    )
    leader, runner = (skewed, normal) if offset > 0 else (normal, skewed)
    for node in (skewed, normal):
        node.ready()
    wait_for(lambda: leads(chaos_database, leader), message=f"{leader.name} leads")

    inserter = chaos_database.make_oban()
    job = inserter.enqueue(Blocker.new({"log": str(log), "release": str(release)}))
    assert job.id is not None
    job_id = job.id
    wait_for(lambda: any(run.event == "start" for run in read_log(log)), message="the job starts")
    started = time.monotonic()
    # The fault's length: the job outlives several heartbeats and lifeline runs.
    time.sleep(2.5 * RESCUE_AFTER)
    assert leads(chaos_database, leader), f"{leader.name} lost the lease meanwhile"
    release.touch()
    wait_for(lambda: any(run.event == "done" for run in read_log(log)), message="the job finishes")
    held = time.monotonic() - started
    # A rescued job runs again once the slot frees: only a completed row (its
    # last attempt acked) says every start that will happen is in the log.
    wait_for(lambda: state(chaos_database, job_id) == "completed", message="the job completes")
    for node in (skewed, normal):
        assert node.alive(), f"{node.name} exited:\n{node.output()}"

    result = tally(f"clock skew {offset:+.0f}s: no early rescue", log, [job_id])
    runs = [run.pid for run in read_log(log) if run.event == "start"]
    result.notes = {
        "skew_seconds": offset,
        "rescue_after": RESCUE_AFTER,
        "job_ran_seconds": round(held, 1),
        "leader": leader.name,
        "ran_on": runner.name,
        "ran_on_pids": runs,
    }
    report(result)
    assert not result.lost
    assert not result.twice, (
        f"a live node's job was rescued and run again ({offset:+.0f}s skew):\n"
        + leader.output()[-1500:]
    )


def test_each_cron_slot_once_across_skewed_leaders(
    chaos_database: SqlDatabase, cluster: Cluster
) -> None:
    """A node 30 s ahead leads across a minute boundary and inserts that slot, then
    hands over to a normal node that reaches the same minute 30 s later: the
    slot is inserted (and its job run) once.

    Bounded: both clocks are simulated (``node_process.SimulatedClock``) from
    just before a boundary, at twice the wall clock's speed, so the normal
    node reaches the boundary the node ahead crossed in about 16 s."""
    go = cluster.path("go")
    boundary = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    entries = [("* * * * *", {"args": {"entry": "minute"}, "queue": "cron"})]

    def clock(base: datetime) -> dict[str, Any]:
        end = base + timedelta(minutes=10)
        return {"base": base.isoformat(), "end": end.isoformat(), "speed": SPEED, "go": str(go)}

    options: dict[str, Any] = {"cron": entries, "queues": {"cron": 2}, "rescue_after": 30}
    ahead_base = boundary - timedelta(seconds=2)
    ahead = cluster.spawn("ahead", clock=clock(ahead_base), **options)
    ahead.ready()
    wait_for(lambda: leads(chaos_database, ahead), message="the node ahead leads")
    normal = cluster.spawn("normal", clock=clock(ahead_base - timedelta(seconds=SKEW)), **options)
    normal.ready()
    write_atomically(go, f"{time.time():.6f}")
    began = time.monotonic()
    wait_for(lambda: boundary in slots(chaos_database), message="the node ahead inserts the slot")
    ahead.stop()
    wait_for(lambda: leads(chaos_database, normal), message="the normal node leads")
    handed = time.monotonic() - began
    # Pace: until the normal node's clock is past the boundary the node ahead crossed.
    time.sleep(max(0.0, (SKEW + 4) / SPEED - (time.monotonic() - began)))
    recorded = slots(chaos_database)
    with connect(chaos_database) as conn:
        jobs = int(
            conn.execute(
                sa.text("SELECT count(*) FROM oban_jobs WHERE queue = 'cron'")
            ).scalar_one()
        )
    doubled = {slot: n for slot, n in Counter(recorded).items() if n > 1}
    assert normal.alive(), normal.output()

    result = Tally("clock skew +30s: each cron slot once", jobs, [], {})
    result.recovery_seconds = round(handed, 2)
    result.notes = {"slots": [slot.isoformat() for slot in recorded], "cron_jobs": jobs}
    report(result)
    assert recorded == [boundary], f"slots: {recorded}"
    assert not doubled, f"slots inserted twice: {doubled}"
    assert jobs == 1, f"{jobs} cron jobs for one slot"


def state(database: SqlDatabase, job_id: int) -> str:
    with connect(database) as conn:
        found = conn.execute(
            sa.text("SELECT state FROM oban_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
    return str(found)


def slots(database: SqlDatabase) -> list[datetime]:
    """The slots whose job was inserted (a new entry's first row only marks a slot seen)."""
    table = oban_cron_slots.c
    with connect(database) as conn:
        return list(
            conn.execute(
                sa.select(table.slot_at).where(table.job_id.is_not(None)).order_by(table.slot_at)
            ).scalars()
        )
