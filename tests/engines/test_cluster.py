"""What several nodes share through the database, engine by engine (capability CLUSTER).

Each operation is called on the engine directly with an explicit ``now``, so
leases expire, heartbeats go stale and jobs age without waiting: the
semantics the leader, the lifeline, the pruner and cron rely on.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest

from oban import Job, JobState
from oban.engines import Capability, Engine
from oban.engines.base import ClusterEngine, Heartbeat
from oban.outcomes import Ack

pytestmark = pytest.mark.requires(Capability.CLUSTER)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
LEASE = 30.0
RESCUE_AFTER = 30.0


def cluster(engine: Engine) -> ClusterEngine:
    return cast("ClusterEngine", engine)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def run(engine: Engine, method: str, *args: Any, **kwargs: Any) -> Any:
    with engine.transaction() as conn:
        return getattr(engine, method)(conn, *args, **kwargs)


def executing(engine: Engine, producer: str, at: datetime, *, max_attempts: int = 20) -> Job:
    """One job fetched at ``at`` by ``producer`` on node ``"node-a"``."""
    run(engine, "insert_jobs", [Job("app.Work", queue="q", max_attempts=max_attempts)], at)
    (fetched,) = run(engine, "fetch_jobs", "q", 1, ["node-a", producer], at)
    return cast("Job", fetched)


def beat(engine: Engine, producer: str, at: datetime, *, queue: str = "q") -> None:
    run(
        engine,
        "record_heartbeats",
        [Heartbeat(producer, "oban", "node-a", queue, {"local_limit": 1}, at, at)],
    )


def get(engine: Engine, job_id: int | None) -> Job:
    found = run(engine, "get_job", job_id)
    assert found is not None
    return cast("Job", found)


# -- leadership ---------------------------------------------------------------------------


def test_one_node_holds_the_lease_until_it_expires(engine: Engine) -> None:
    first = run(engine, "take_lease", "oban", "a", T0, LEASE)
    assert first.leader
    assert first.expires_at == T0 + seconds(LEASE)

    other = run(engine, "take_lease", "oban", "b", T0 + seconds(10), LEASE)
    assert not other.leader
    assert other.expires_at == T0 + seconds(LEASE), "the loser learns when the lease ends"

    renewed = run(engine, "take_lease", "oban", "a", T0 + seconds(10), LEASE)
    assert renewed.leader
    assert renewed.expires_at == T0 + seconds(10 + LEASE)

    # a dies: its lease runs out and b takes over; a's next renewal is refused.
    taken = run(engine, "take_lease", "oban", "b", T0 + seconds(10 + LEASE + 1), LEASE)
    assert taken.leader
    assert not run(engine, "take_lease", "oban", "a", T0 + seconds(10 + LEASE + 2), LEASE).leader


def test_a_released_lease_is_taken_at_once_and_only_by_its_holder(engine: Engine) -> None:
    assert run(engine, "take_lease", "oban", "a", T0, LEASE).leader
    run(engine, "release_lease", "oban", "b")  # not the holder: nothing happens
    assert not run(engine, "take_lease", "oban", "b", T0 + seconds(1), LEASE).leader
    run(engine, "release_lease", "oban", "a")
    assert run(engine, "take_lease", "oban", "b", T0 + seconds(1), LEASE).leader


def test_each_oban_name_has_its_own_leader(engine: Engine) -> None:
    assert run(engine, "take_lease", "oban", "a", T0, LEASE).leader
    assert run(engine, "take_lease", "reports", "b", T0, LEASE).leader


# -- heartbeats ---------------------------------------------------------------------------


def test_heartbeats_are_refreshed_listed_by_age_and_deleted(engine: Engine) -> None:
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    beat(engine, one, T0)
    beat(engine, two, T0)
    beat(engine, one, T0 + seconds(20))  # refreshed: one row, newer updated_at
    fresh = run(engine, "list_heartbeats", "oban", T0 + seconds(10))
    assert [(b.uuid, b.updated_at, b.started_at) for b in fresh] == [(one, T0 + seconds(20), T0)]
    assert run(engine, "list_heartbeats", "other", T0) == []
    assert run(engine, "prune_heartbeats", T0 + seconds(10)) == 1
    run(engine, "delete_heartbeats", [one])
    assert run(engine, "list_heartbeats", "oban", T0) == []


# -- the lifeline ---------------------------------------------------------------------------


def test_a_job_whose_producer_went_quiet_is_rescued_once_with_an_error(engine: Engine) -> None:
    producer = str(uuid.uuid4())
    beat(engine, producer, T0)
    job = executing(engine, producer, T0)
    later = T0 + seconds(RESCUE_AFTER + 1)

    rescued = run(engine, "rescue_jobs", later, RESCUE_AFTER, 100)
    assert (rescued.available, rescued.discarded, rescued.queues) == (1, 0, ("q",))
    back = get(engine, job.id)
    assert back.state is JobState.AVAILABLE
    assert back.attempt == 1, "the orphaned attempt counts"
    assert "orphaned" in back.errors[-1]["error"]
    assert "node-a" in back.errors[-1]["error"]
    assert run(engine, "rescue_jobs", later, RESCUE_AFTER, 100).available == 0


def test_a_job_whose_producer_row_is_gone_is_rescued(engine: Engine) -> None:
    job = executing(engine, str(uuid.uuid4()), T0)  # never heart-beat (or its row was pruned)
    assert run(engine, "rescue_jobs", T0 + seconds(RESCUE_AFTER + 1), RESCUE_AFTER, 100).available
    assert get(engine, job.id).state is JobState.AVAILABLE


def test_a_job_on_a_live_node_is_never_rescued_however_long_it_runs(engine: Engine) -> None:
    producer = str(uuid.uuid4())
    job = executing(engine, producer, T0)
    for minutes in range(1, 120):
        now = T0 + timedelta(minutes=minutes)
        beat(engine, producer, now - seconds(5))
        assert run(engine, "rescue_jobs", now, RESCUE_AFTER, 100).available == 0
    assert get(engine, job.id).state is JobState.EXECUTING


def test_a_job_just_fetched_is_not_rescued_before_its_node_could_heartbeat(engine: Engine) -> None:
    job = executing(engine, str(uuid.uuid4()), T0)
    assert (
        run(engine, "rescue_jobs", T0 + seconds(RESCUE_AFTER - 1), RESCUE_AFTER, 100).available == 0
    )
    assert get(engine, job.id).state is JobState.EXECUTING


def test_an_orphan_without_attempts_left_is_discarded(engine: Engine) -> None:
    job = executing(engine, str(uuid.uuid4()), T0, max_attempts=1)
    rescued = run(engine, "rescue_jobs", T0 + seconds(RESCUE_AFTER + 1), RESCUE_AFTER, 100)
    assert (rescued.available, rescued.discarded, rescued.queues) == (0, 1, ())
    dead = get(engine, job.id)
    assert dead.state is JobState.DISCARDED
    assert dead.discarded_at is not None
    assert "orphaned" in dead.errors[-1]["error"]


def test_a_late_ack_of_the_orphaned_attempt_cannot_overwrite_the_next(engine: Engine) -> None:
    job = executing(engine, str(uuid.uuid4()), T0)
    later = T0 + seconds(RESCUE_AFTER + 1)
    run(engine, "rescue_jobs", later, RESCUE_AFTER, 100)
    (again,) = run(engine, "fetch_jobs", "q", 1, ["node-b", str(uuid.uuid4())], later)
    assert again.attempt == 2
    # The first node comes back and acks attempt 1.
    run(engine, "ack_jobs", [Ack(job.id or 0, 1, JobState.COMPLETED, later)])
    current = get(engine, job.id)
    assert (current.state, current.attempt) == (JobState.EXECUTING, 2)


def test_rescue_takes_at_most_the_limit_per_call(engine: Engine) -> None:
    producer = str(uuid.uuid4())
    for _ in range(3):
        executing(engine, producer, T0)
    later = T0 + seconds(RESCUE_AFTER + 1)
    assert run(engine, "rescue_jobs", later, RESCUE_AFTER, 2).available == 2
    assert run(engine, "rescue_jobs", later, RESCUE_AFTER, 2).available == 1


# -- the pruner -------------------------------------------------------------------------------


def finished(engine: Engine, state: JobState, at: datetime) -> Job:
    job = executing(engine, str(uuid.uuid4()), at)
    run(engine, "ack_jobs", [Ack(job.id or 0, 1, state, at, error=None)])
    return job


def test_the_pruner_deletes_old_finished_jobs_only(engine: Engine) -> None:
    old = [finished(engine, state, T0) for state in (
        JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED
    )]  # fmt: skip
    young = finished(engine, JobState.COMPLETED, T0 + seconds(100))
    waiting = run(engine, "insert_jobs", [Job("app.Work", queue="q")], T0)[0]
    running = executing(engine, str(uuid.uuid4()), T0)

    assert run(engine, "prune_jobs", T0 + seconds(60), 10_000) == 3
    for job in old:
        assert run(engine, "get_job", job.id) is None
    for job in (young, waiting, running):
        assert run(engine, "get_job", job.id) is not None


def test_the_pruner_deletes_at_most_the_limit_per_batch(engine: Engine) -> None:
    for _ in range(5):
        finished(engine, JobState.COMPLETED, T0)
    assert run(engine, "prune_jobs", T0 + seconds(60), 2) == 2
    assert run(engine, "prune_jobs", T0 + seconds(60), 2) == 2
    assert run(engine, "prune_jobs", T0 + seconds(60), 2) == 1
    assert run(engine, "prune_jobs", T0 + seconds(60), 2) == 0


# -- cron slots -------------------------------------------------------------------------------


def test_each_cron_slot_inserts_its_job_once(engine: Engine) -> None:
    slot = T0
    first = run(engine, "insert_cron_jobs", "oban", [("e", slot, Job("app.Work"))], T0)
    second = run(engine, "insert_cron_jobs", "oban", [("e", slot, Job("app.Work"))], T0)
    assert len(first) == 1
    assert second == []
    assert run(engine, "latest_cron_slots", "oban") == {"e": slot}


def test_a_slot_recorded_without_a_job_inserts_none_and_counts_as_seen(engine: Engine) -> None:
    assert run(engine, "insert_cron_jobs", "oban", [("e", T0, None)], T0) == []
    assert run(engine, "insert_cron_jobs", "oban", [("e", T0, Job("app.Work"))], T0) == []
    assert run(engine, "latest_cron_slots", "oban") == {"e": T0}
    assert run(engine, "latest_cron_slots", "another") == {}


def test_old_cron_slots_are_pruned_but_each_entrys_latest_is_kept(engine: Engine) -> None:
    slots = [("e", T0 + timedelta(minutes=n), None) for n in range(3)]
    run(engine, "insert_cron_jobs", "oban", [*slots, ("f", T0, None)], T0)
    assert run(engine, "prune_cron_slots", "oban", T0 + seconds(1)) == 2
    assert run(engine, "latest_cron_slots", "oban") == {"e": T0 + timedelta(minutes=2), "f": T0}


# -- queue state ---------------------------------------------------------------------------------


def test_queue_state_merges_changes_and_counts_versions(engine: Engine) -> None:
    def change(**values: Any) -> None:
        fields = {"paused": None, "local_limit": None, "active": None, **values}
        run(engine, "set_queue_state", "oban", "q", now=T0, signal={"action": "x"}, **fields)

    change(paused=True)
    change(local_limit=7)
    (state,) = run(engine, "queue_states", "oban")
    assert (state.queue, state.paused, state.local_limit, state.active, state.version) == (
        "q", True, 7, None, 2
    )  # fmt: skip
    change(paused=False, active=True)
    (state,) = run(engine, "queue_states", "oban")
    assert (state.paused, state.local_limit, state.active, state.version) == (False, 7, True, 3)
    assert run(engine, "queue_states", "other") == []
