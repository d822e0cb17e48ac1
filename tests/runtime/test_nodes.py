"""Several nodes on one database, in one process: leader, lifeline, pruner, cron, queue control.

Each test runs on Lite (a SQLite file) and Basic (PostgreSQL). The separate
processes, SIGKILLs and outages are in ``tests/cluster``; here the nodes are
``Oban`` instances sharing a database, which is what the database sees too.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from oban import Job, JobState, NotRunningError, Oban, SchemaError
from oban.runtime.plugins import Cron, Lifeline, Pruner, UnrunQueues
from tests.conftest import SqlDatabase, wait_for
from tests.introspection import plugin_loop
from tests.runtime.workers import GATE, Complete, Effects, Gated

FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "stage_interval": 0.05,
    "leader_lease": 2,
    "rescue_after": 0.6,
}


@pytest.fixture
def oban_options() -> dict[str, Any]:
    return dict(FAST)


def jobs(database: SqlDatabase) -> list[dict[str, Any]]:
    with database.bind.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, state, attempt FROM {database.jobs_table}"))
        return [dict(row._mapping) for row in rows]


def leaders(nodes: list[Oban]) -> list[str]:
    return [node.node for node in nodes if node.is_leader]


@pytest.fixture
def three(database: SqlDatabase) -> Iterator[list[Oban]]:
    nodes = [database.make_oban(node=f"node-{n}", queues={"default": 2}) for n in range(3)]
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        if node.is_running:
            node.stop()


# -- leadership -----------------------------------------------------------------------------


def test_one_node_leads_and_a_clean_stop_hands_over_at_once(three: list[Oban]) -> None:
    wait_for(lambda: len(leaders(three)) == 1, message="one leader")
    first = next(node for node in three if node.is_leader)
    first.stop()
    assert not first.is_leader
    rest = [node for node in three if node is not first]
    wait_for(lambda: len(leaders(rest)) == 1, message="another node leads")


def test_each_start_has_a_fresh_instance_id(database: SqlDatabase) -> None:
    node = database.make_oban(queues={"default": 1})
    ids: list[str | None] = [node.instance_id]
    for _ in range(2):
        with node:
            ids.append(node.instance_id)
    ids.append(node.instance_id)
    assert ids[0] is None
    assert ids[3] is None
    assert ids[1] is not None
    assert ids[2] is not None
    assert ids[1] != ids[2]
    assert not node.is_leader


# -- lifeline -------------------------------------------------------------------------------


def orphan(database: SqlDatabase, maker: Oban, job: Job, *, ago: float) -> Job:
    """``job`` stored as executing since ``ago`` seconds, fetched by a producer that
    never heart-beat (its node died before it could)."""
    engine = maker.engine
    then = datetime.now(timezone.utc) - timedelta(seconds=ago)
    with engine.transaction() as conn:
        engine.insert_jobs(conn, [job], then)
        (fetched,) = engine.fetch_jobs(conn, job.queue, 1, ["dead-node", str(uuid.uuid4())], then)
    return fetched


def test_an_orphaned_job_is_rescued_and_runs_again_as_attempt_two(
    database: SqlDatabase, effects: Effects
) -> None:
    node = database.make_oban(queues={"default": 2})
    job = orphan(database, node, Complete.new({}), ago=5)
    with node:
        wait_for(lambda: (node.get_job(job.id or 0) or job).state is JobState.COMPLETED)
    done = node.get_job(job.id or 0)
    assert done is not None
    assert done.attempt == 2
    assert "orphaned" in done.errors[0]["error"]
    assert "dead-node" in done.errors[0]["error"]
    assert [attempt for _, _, attempt in effects.runs_of(job.id)] == [2]


def test_a_long_job_on_a_live_node_is_never_rescued(
    database: SqlDatabase, effects: Effects
) -> None:
    node = database.make_oban(queues={"default": 1})
    with node:
        job = node.enqueue(Gated.new({}))
        wait_for(lambda: effects.started(job.id), message="the job runs")
        lifeline = plugin_loop(node, Lifeline)
        looked = lifeline.ticks
        # Many rescue_after periods: the lifeline looks again and again.
        wait_for(lambda: lifeline.ticks >= looked + 6, message="the lifeline looked 6 times")
        GATE.set()
        wait_for(lambda: (node.get_job(job.id or 0) or job).state is JobState.COMPLETED)
    done = node.get_job(job.id or 0)
    assert done is not None
    assert (done.attempt, done.errors) == (1, [])
    assert [attempt for _, _, attempt in effects.runs_of(job.id)] == [1]


# -- pruner ---------------------------------------------------------------------------------


def test_finished_jobs_are_pruned_after_max_age(database: SqlDatabase) -> None:
    node = database.make_oban(queues={"default": 5}, prune=0.2, prune_interval=0.05)
    with node:
        node.enqueue_many(Complete.new({"n": n}) for n in range(5))
        wait_for(lambda: jobs(database) == [], message="every finished job pruned")


def test_prune_false_keeps_every_finished_job(database: SqlDatabase) -> None:
    node = database.make_oban(queues={"default": 5}, prune=False, prune_interval=0.05)
    with node:
        saved = node.enqueue_many(Complete.new({"n": n}) for n in range(3))
        wait_for(lambda: {row["state"] for row in jobs(database)} == {"completed"})
        pruner = plugin_loop(node, Pruner)
        ran = pruner.ticks
        wait_for(lambda: pruner.ticks >= ran + 3, message="the pruner ran 3 more times")
    assert {row["id"] for row in jobs(database)} == {job.id for job in saved}


# -- cron -------------------------------------------------------------------------------------


class FakeClock:
    """A clock every node shares; tests move it, nothing waits for real minutes."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, now: datetime) -> None:
        with self._lock:
            self.now = now


def cron_slots(database: SqlDatabase) -> list[str]:
    with database.bind.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT meta FROM {database.jobs_table}")).scalars()
        return sorted(
            (meta if isinstance(meta, dict) else json.loads(meta))["cron_slot"] for meta in rows
        )


def has_slot(database: SqlDatabase, slot: str) -> bool:
    return slot in cron_slots(database)


def minute(n: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 2, 12, n, second, tzinfo=timezone.utc)


def test_cron_inserts_each_slot_once_across_nodes_and_leader_changes(
    database: SqlDatabase,
) -> None:
    clock = FakeClock(minute(0, 30))
    cron = [("* * * * *", Complete, {"args": {"from": "cron"}})]
    # The lease (in fake seconds) runs out at every step: leadership moves
    # between the nodes while the slots come due.
    nodes = [
        database.make_oban(node=f"node-{n}", queues={}, cron=cron, clock=clock, leader_lease=30)
        for n in range(3)
    ]
    for node in nodes:
        node.start()
    try:
        wait_for(lambda: len(leaders(nodes)) == 1)
        for step in range(1, 11):
            clock.set(minute(step, 5))
            for node in nodes:
                if node.is_leader:
                    plugin_loop(node, Cron).wake()
            slot = f"2026-12-02T12:{step:02d}:00Z"
            wait_for(partial(has_slot, database, slot), message=f"the {slot} slot")
    finally:
        for node in nodes:
            node.stop()
    expected = [f"2026-12-02T12:{step:02d}:00Z" for step in range(1, 11)]
    assert cron_slots(database) == expected, "each slot once; the 12:00 slot predates the entry"

    # Every node down across five minutes: the next leader inserts the last
    # missed slot late, once (the default catch-up), not the four before it.
    clock.set(minute(15, 20))
    late = database.make_oban(node="node-late", queues={}, cron=cron, clock=clock)
    with late:
        wait_for(lambda: "2026-12-02T12:15:00Z" in cron_slots(database))
        plugin_loop(late, Cron).wake()
        ticks = plugin_loop(late, Cron).ticks
        wait_for(lambda: plugin_loop(late, Cron).ticks > ticks)
    assert cron_slots(database) == [*expected, "2026-12-02T12:15:00Z"]


# -- queue control ------------------------------------------------------------------------------


def states(database: SqlDatabase) -> list[str]:
    return sorted(row["state"] for row in jobs(database))


def heartbeats_after(nodes: list[Oban], moment: datetime, queue: str = "default") -> bool:
    """Every node heart-beat (twice, at the heartbeat interval) after ``moment``."""
    infos = nodes[0].check_queue(queue)
    by_node = {info.node: info for info in infos}
    return all(node.node in by_node and by_node[node.node].updated_at > moment for node in nodes)


def test_a_pause_on_one_node_stops_fetching_on_every_node_even_those_started_later(
    database: SqlDatabase,
) -> None:
    a = database.make_oban(node="node-a", queues={"default": 2})
    b = database.make_oban(node="node-b", queues={"default": 2})
    late = database.make_oban(node="node-late", queues={"default": 2})
    with a, b:
        a.pause_queue("default")
        wait_for(
            lambda: [info.paused for info in b.check_queue("default")] == [True, True],
            message="both nodes report the pause",
        )
        saved = b.enqueue_many(Complete.new({"n": n}) for n in range(4))
        inserted = datetime.now(timezone.utc)
        wait_for(
            lambda: heartbeats_after([a, b], inserted + timedelta(seconds=0.5)),
            message="both nodes heart-beat well after the insert",
        )
        assert states(database) == ["available"] * 4, "no paused node fetched"

        with late:
            wait_for(
                lambda: any(
                    info.node == "node-late" and info.paused for info in a.check_queue("default")
                ),
                message="a node started after the pause is paused too",
            )
            seen = datetime.now(timezone.utc)
            wait_for(
                lambda: heartbeats_after([a, b, late], seen),
                message="every node heart-beat again",
            )
            assert states(database) == ["available"] * 4

            b.resume_queue("default")
            wait_for(lambda: states(database) == ["completed"] * 4, message="all run after resume")
            wait_for(
                lambda: [info.paused for info in a.check_queue("default")] == [False] * 3,
                message="every node reports the resume",
            )
    assert {job.id for job in saved} == {row["id"] for row in jobs(database)}


def test_scale_reaches_every_node_and_local_only_stays_on_one(database: SqlDatabase) -> None:
    a = database.make_oban(node="node-a", queues={"default": 2})
    b = database.make_oban(node="node-b", queues={"default": 2})
    with a, b:
        b.scale_queue("default", limit=7)
        wait_for(lambda: [info.limit for info in a.check_queue("default")] == [7, 7])
        a.pause_queue("default", local_only=True)
        assert [(info.node, info.paused) for info in a.check_queue("default", local_only=True)] == [
            ("node-a", True)
        ]
        saved = a.enqueue_many(Complete.new({"n": n}) for n in range(3))
        wait_for(lambda: states(database) == ["completed"] * 3)
        ran_on = {tuple((a.get_job(job.id or 0) or job).attempted_by[:1]) for job in saved}
        assert ran_on == {("node-b",)}, "only the node not paused ran them"


def test_start_and_stop_a_queue_on_every_running_node(database: SqlDatabase) -> None:
    a = database.make_oban(node="node-a", queues={"default": 1})
    b = database.make_oban(node="node-b", queues={"default": 1})
    with a, b:
        a.start_queue("extra", limit=3)
        wait_for(
            lambda: (
                sorted((i.node, i.limit) for i in b.check_queue("extra"))
                == [("node-a", 3), ("node-b", 3)]
            ),
            message="both nodes run the new queue",
        )
        job = a.enqueue(Complete.new({}, queue="extra"))
        wait_for(lambda: (a.get_job(job.id or 0) or job).state is JobState.COMPLETED)
        b.stop_queue("extra")
        wait_for(lambda: b.check_queue("extra") == [], message="the queue stopped everywhere")
        assert [info.queue for info in a.check_all_queues()] == ["default", "default"]


def test_local_queue_commands_need_a_running_node_and_a_queue_it_runs(
    database: SqlDatabase,
) -> None:
    node = database.make_oban(queues={"default": 1})
    with pytest.raises(NotRunningError, match="start it first"):
        node.pause_queue("default", local_only=True)
    with node, pytest.raises(Exception, match="does not run on this node"):
        node.pause_queue("nope", local_only=True)


def test_bad_queue_commands_are_refused_with_a_clear_error(database: SqlDatabase) -> None:
    node = database.make_oban()
    with pytest.raises(ValueError, match="limit"):
        node.scale_queue("default", limit=0)
    with pytest.raises(ValueError, match="queue name"):
        node.pause_queue("  ")


def test_the_inline_engine_has_no_queues_to_control() -> None:
    inline = Oban(testing="inline")
    with pytest.raises(NotRunningError, match="no shared queues"):
        inline.pause_queue("default")
    assert inline.check_all_queues() == []
    assert not inline.is_leader


def test_cron_catch_up_inserts_every_missed_slot_of_the_window_once(
    database: SqlDatabase,
) -> None:
    clock = FakeClock(minute(0, 30))
    cron = [("* * * * *", Complete, {"args": {"from": "cron"}})]
    first = database.make_oban(node="node-a", queues={}, cron=cron, clock=clock)
    with first:
        wait_for(lambda: first.is_leader and plugin_loop(first, Cron).ticks > 0)
        clock.set(minute(1, 5))
        plugin_loop(first, Cron).wake()
        wait_for(partial(has_slot, database, "2026-12-02T12:01:00Z"))
    # Down from 12:01 to 12:07: with a window of 4 minutes the slots
    # 12:04..12:07 are owed (12:02 and 12:03 are outside it).
    clock.set(minute(7, 10))
    second = database.make_oban(node="node-b", queues={}, cron=cron, clock=clock, cron_catch_up=240)
    with second:
        wait_for(partial(has_slot, database, "2026-12-02T12:07:00Z"))
    assert cron_slots(database) == [
        "2026-12-02T12:01:00Z",
        "2026-12-02T12:04:00Z",
        "2026-12-02T12:05:00Z",
        "2026-12-02T12:06:00Z",
        "2026-12-02T12:07:00Z",
    ]


def reboots(database: SqlDatabase) -> int:
    with database.bind.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"SELECT count(*) FROM {database.jobs_table} WHERE worker LIKE '%Complete'")
            ).scalar_one()
        )


def test_reboot_runs_once_per_cluster_start_not_per_rolling_restart(
    database: SqlDatabase,
) -> None:
    cron = [("@reboot", Complete, {"args": {"from": "reboot"}})]
    a = database.make_oban(node="node-a", queues={"default": 1}, cron=cron)
    b = database.make_oban(node="node-b", queues={"default": 1}, cron=cron)
    c = database.make_oban(node="node-c", queues={"default": 1}, cron=cron)
    a.start()
    b.start()
    try:
        wait_for(lambda: reboots(database) == 1, message="the cluster's start ran @reboot")
        # Both have run for longer than rescue_after (0.6 s): a restart of one
        # of them now is a rolling deploy, not a cluster start.
        started = datetime.now(timezone.utc)
        wait_for(lambda: datetime.now(timezone.utc) - started > timedelta(seconds=1.5))
        leader = a if a.is_leader else b
        leader.stop()
        with c:
            wait_for(lambda: b.is_leader or c.is_leader, message="a new leader")
            new_leader = b if b.is_leader else c
            cron_loop = plugin_loop(new_leader, Cron)
            ticked = cron_loop.ticks
            wait_for(lambda: cron_loop.ticks >= ticked + 2, message="the new leader's cron ran")
            assert reboots(database) == 1, "a rolling restart does not run @reboot again"
    finally:
        for node in (a, b):
            if node.is_running:
                node.stop()


def test_starting_on_a_schema_without_the_node_tables_says_to_migrate(tmp_path: Any) -> None:
    """The library upgraded, ``oban_0002`` not run yet: the start fails and says what to do."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    oban.migrate(url, revision="oban_0001")
    node = Oban(url, queues={"default": 1})
    try:
        with pytest.raises(SchemaError, match=r"oban.migrate\(\)"):
            node.start()
        assert not node.is_running
    finally:
        node.close()


# -- queues nobody runs ---------------------------------------------------------------------


def unrun_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "oban" and "no running node runs it" in record.getMessage()
    ]


def test_a_queue_no_node_runs_is_named_once_in_the_log(
    database: SqlDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's first mistake: jobs enqueued into a queue no ``queues=`` lists.

    Each node says it once, one heartbeat after start; a queue another node
    runs (even while its jobs wait for a free slot) is never named.
    """
    caplog.set_level("WARNING", logger="oban")
    maker = database.make_oban(testing="manual")
    maker.enqueue_many(
        [Complete.new({"n": n}, queue="media") for n in range(3)]
        + [Gated.new({"n": n}, queue="mailers") for n in range(3)]
    )
    GATE.clear()
    web = database.make_oban(node="web", queues={"default": 2})
    mail = database.make_oban(node="mail", queues={"mailers": 1})
    try:
        # mail first: its heartbeat is written before web's check, one
        # heartbeat interval after web's start, however slow this machine is.
        with mail, web:
            wait_for(lambda: len(unrun_warnings(caplog)) == 2, message="each node warns once")
            for node in (web, mail):  # the check is done: no second warning can come
                wait_for(lambda node=node: plugin_loop(node, UnrunQueues).ticks == 1)  # type: ignore[misc]
            GATE.set()
    finally:
        GATE.set()
        maker.close()
    messages = unrun_warnings(caplog)
    assert len(messages) == 2
    for message in messages:
        assert message.startswith("queue 'media' has 3 available job(s)")
        assert "queues={'media': 10}" in message
        assert "oban start --queues media:10" in message
