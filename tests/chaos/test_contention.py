"""Other clients crowding the database: every connection slot taken (scenario 4), and
an idle-in-transaction session pinning the xmin horizon (scenario 5), issue 13.

Both are what a shared production database does to a job system without any
server going down: a connection leak elsewhere fills ``max_connections``, and
a forgotten ``BEGIN`` in a psql window stops vacuum from reclaiming the rows
every fetch and ack leaves behind. Jobs must wait out the first and keep
flowing through the second; none may be lost or run twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import sqlalchemy as sa

from oban import Job, Oban
from tests.chaos.server import PrivateServer
from tests.chaos.support import completed, report, tally
from tests.cluster.support import Cluster, Node
from tests.cluster.workers import Note, starts
from tests.conftest import SqlDatabase, wait_for

RESCUE_AFTER = 30
"""Well above the fault's length: nodes cut off for a while must not look dead."""
HOLDER = "chaos-holder"
"""application_name of the other clients' connections."""


def conninfo(url: str) -> str:
    """The libpq conninfo of a SQLAlchemy URL (the other clients are plain psycopg)."""
    parsed = sa.make_url(url)
    return f"host={parsed.host} port={parsed.port} dbname={parsed.database} user={parsed.username}"


def start_nodes(cluster: Cluster, limit: int) -> list[Node]:
    nodes = [
        cluster.spawn(name, queues={"q": limit}, rescue_after=RESCUE_AFTER)
        for name in ("node-a", "node-b")
    ]
    for node in nodes:
        node.ready()
    return nodes


def enqueue(inserter: Oban, log: Path, count: int, seconds: float = 0) -> list[int]:
    jobs: list[Job] = inserter.enqueue_many(
        Note.new({"log": str(log), "seconds": seconds}) for _ in range(count)
    )
    return [int(job.id) for job in jobs if job.id is not None]


def started(log: Path) -> int:
    return len(starts(log))


# -- scenario 4: connection slots exhausted ---------------------------------------------


class Crowd:
    """Idle connections of other clients, opened until the server refuses more."""

    def __init__(self, url: str) -> None:
        self.conninfo = conninfo(url)
        self.held: list[psycopg.Connection] = []
        self.refusal = ""

    def fill(self) -> int:
        """Open connections until the server says no; how many are held."""
        while True:
            try:
                conn = psycopg.connect(
                    self.conninfo, application_name=HOLDER, autocommit=True, connect_timeout=5
                )
            except psycopg.OperationalError as exc:
                self.refusal = str(exc).strip()
                return len(self.held)
            self.held.append(conn)

    def evict_others(self) -> int:
        """Terminate every backend of the database not ours (the nodes' pooled
        ones): the nodes must now get new slots, and there are none."""
        row = (
            self.held[0]
            .execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name <> %s "
                "AND backend_type = 'client backend'",
                (HOLDER,),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def release(self) -> None:
        for conn in self.held:
            with suppress(psycopg.Error):
                conn.close()
        self.held.clear()


def test_connection_slots_exhausted(
    chaos_server: PrivateServer,
    chaos_database: SqlDatabase,
    cluster: Cluster,
    chaos_minutes: float | None,
) -> None:
    """With every slot held by other clients the nodes cannot reach the database:
    they log it once, keep retrying, and drain every job once the slots free."""
    log = cluster.path("notes.log")
    outage = 6.0 if chaos_minutes is None else chaos_minutes * 60 / 2
    count = 800 if chaos_minutes is None else 6000
    nodes = start_nodes(cluster, limit=5)
    ids = enqueue(chaos_database.make_oban(), log, count, seconds=0.05)
    wait_for(lambda: started(log) > 0, message="the nodes run jobs")

    crowd = Crowd(cluster.url)
    chaos_database.bind.dispose()  # the test's own pool is another client's too
    evicted = 0
    try:
        deadline = time.monotonic() + outage
        while time.monotonic() < deadline:
            # Pace the injector: take every slot that came free, push the nodes out.
            crowd.fill()
            evicted += crowd.evict_others()
            time.sleep(0.02)
        held = crowd.fill()
        during = started(log)
        assert during < len(ids), "the nodes drained every job through the fault"
    finally:
        crowd.release()
    released = time.monotonic()
    assert evicted > 0, "the nodes had no connections to lose"
    assert "too many clients" in crowd.refusal, crowd.refusal

    wait_for(
        lambda: started(log) > during,
        timeout=60,
        message="jobs flow after the release:\n" + "\n".join(node.output() for node in nodes),
    )
    recovery = time.monotonic() - released
    wait_for(lambda: started(log) >= len(ids), timeout=90, message=f"all {len(ids)} jobs started")
    drained = time.monotonic() - released
    wait_for(lambda: completed(chaos_database) == len(ids), message="every job completed")
    for node in nodes:
        assert node.alive(), f"{node.name} exited:\n{node.output()}"
    # The whole of each node's stderr: what an operator reads in the node's log.
    outputs = "".join(node.stderr_path.read_text(errors="replace") for node in nodes)
    assert "database unavailable" in outputs, node.output()
    # Only an outage's first error is logged (its later ones at DEBUG): whether the
    # refusal itself shows depends on which error came first, so it is reported.
    names_refusal = "too many clients" in outputs
    wait_for(
        lambda: all(
            "database available again" in node.stderr_path.read_text(errors="replace")
            for node in nodes
        ),
        message="every node logs the end of the outage",
    )

    result = tally("connection slots exhausted", log, ids)
    result.recovery_seconds = round(recovery, 2)
    result.notes = {
        "max_connections": chaos_server.max_connections,
        "held_by_others": held,
        "node_backends_evicted": evicted,
        "started_during_fault": during,
        "drained_seconds_after_release": round(drained, 2),
        "node_log_names_refusal": names_refusal,
    }
    report(result)
    assert not result.lost, f"jobs never started: {result.lost[:20]}"
    assert not result.twice, f"jobs started twice: {result.twice}"


# -- scenario 5: xmin horizon pinned -----------------------------------------------------


@contextmanager
def pinned_horizon(url: str) -> Iterator[int]:
    """A session idle in a transaction that holds a txid: vacuum keeps every row
    version deleted after it began, for as long as it stays open."""
    with psycopg.connect(conninfo(url), application_name=HOLDER) as conn:
        row = conn.execute("SELECT txid_current()").fetchone()
        assert row is not None
        try:
            yield int(row[0])
        finally:
            conn.rollback()


def dead_tuples(database: SqlDatabase) -> dict[str, int]:
    with database.bind.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        rows = conn.execute(
            sa.text(
                "SELECT relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables "
                "WHERE relname = 'oban_jobs'"
            )
        ).first()
    return {} if rows is None else {"n_dead_tup": int(rows[1]), "n_live_tup": int(rows[2])}


def test_xmin_horizon_pinned(
    chaos_database: SqlDatabase, cluster: Cluster, chaos_minutes: float | None
) -> None:
    """Jobs keep completing while an idle transaction pins the horizon and dead
    rows pile up; the time to drain each batch is printed, first vs last."""
    log = cluster.path("notes.log")
    duration = 16.0 if chaos_minutes is None else chaos_minutes * 60
    batch = 200
    start_nodes(cluster, limit=10)
    inserter = chaos_database.make_oban()
    ids: list[int] = []
    drains: list[float] = []
    with pinned_horizon(cluster.url) as txid:
        before = dead_tuples(chaos_database)
        end = time.monotonic() + duration
        while time.monotonic() < end:
            began = time.monotonic()
            ids += enqueue(inserter, log, batch)
            expected = len(ids)
            wait_for(
                lambda expected=expected: started(log) >= expected,  # type: ignore[misc]
                timeout=60,
                message=f"batch {len(drains) + 1} drains under the pin",
            )
            drains.append(time.monotonic() - began)
        under_pin = dead_tuples(chaos_database)
    wait_for(lambda: completed(chaos_database) == len(ids), message="every job completed")

    result = tally("xmin horizon pinned", log, ids)
    first, last = drains[: max(1, len(drains) // 4)], drains[-max(1, len(drains) // 4) :]
    result.notes = {
        "pin_txid": txid,
        "batches": len(drains),
        "batch_size": batch,
        "jobs_per_second_first": round(batch * len(first) / sum(first), 1),
        "jobs_per_second_last": round(batch * len(last) / sum(last), 1),
        "dead_tuples_at_pin": before.get("n_dead_tup"),
        "dead_tuples_end_of_pin": under_pin.get("n_dead_tup"),
        "live_tuples_end_of_pin": under_pin.get("n_live_tup"),
    }
    report(result)
    assert not result.lost, f"jobs never started: {result.lost[:20]}"
    assert not result.twice, f"jobs started twice: {result.twice}"
