"""PostgreSQL going away under two node processes: every connection terminated several
times mid-run, and a server restart mid-run. No job is lost, every job completes, and
the nodes live on and elect a leader afterwards.

Delivery is at-least-once: a job whose ack was lost may run again. The test
counts starts from the workers' log, fails on a job that never started or
never completed, and prints how many ran more than once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from oban import Job
from oban.schema import oban_jobs
from tests.cluster.support import Cluster, Node, connect, lease
from tests.cluster.workers import Note, starts
from tests.conftest import SqlDatabase, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.parametrize("database", ["basic"], indirect=True),
]

JOBS = 400
WORK = 0.05
"""Seconds each job works, so that the run lasts while the connections go."""
RESCUE_AFTER = 10
"""Well above an outage's length: live nodes must not look dead after one."""
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _fresh_pool_at_the_end(database: SqlDatabase) -> Iterator[None]:
    """The outage cut the test's own pooled connections too; drop them before the
    database fixture drops the schema through that pool."""
    yield
    database.bind.dispose()


@contextmanager
def admin(url: str) -> Iterator[sa.Connection]:
    """A connection outside every pool (a terminated pool must not break the next use)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def terminate_every_other_connection(url: str) -> int:
    """Terminate every backend of the test database but our own; how many there were."""
    with admin(url) as conn:
        terminated = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
            )
        ).scalar_one()
        conn.commit()
    return int(terminated)


def accepts_connections(url: str) -> bool:
    try:
        with admin(url) as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError:
        return False
    return True


def start_nodes(cluster: Cluster) -> list[Node]:
    nodes = [
        cluster.spawn(name, queues={"q": 10}, samples=True, rescue_after=RESCUE_AFTER)
        for name in ("node-a", "node-b")
    ]
    for node in nodes:
        node.ready()
    wait_for(lambda: any(node.says_it_leads() for node in nodes), message="a node leads")
    return nodes


def insert_jobs(database: SqlDatabase, log: str) -> list[Job]:
    inserter = database.make_oban()
    return inserter.enqueue_many(
        Note.new({"log": log, "n": n, "seconds": WORK}) for n in range(JOBS)
    )


def job_states(database: SqlDatabase) -> Counter[str]:
    c = oban_jobs.c
    with connect(database) as conn:
        rows = conn.execute(sa.select(c.state, sa.func.count()).group_by(c.state))
        return Counter({str(state.value): int(count) for state, count in rows})


def listeners_since(url: str, since: datetime) -> set[str]:
    """The application names of the notifier connections opened after ``since``."""
    with admin(url) as conn:
        names = conn.execute(
            sa.text(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'oban_notifier:%' AND backend_start > :since"
            ),
            {"since": since},
        ).scalars()
        return set(names)


def assert_every_job_done_and_the_nodes_alive(
    cluster: Cluster, database: SqlDatabase, nodes: list[Node], jobs: list[Job], cut: datetime
) -> None:
    # The test's own pool lost its connections too: start it afresh.
    database.bind.dispose()
    wait_for(
        lambda: job_states(database) == Counter({"completed": JOBS}),
        timeout=90,
        message=f"all {JOBS} jobs completed",
    )
    counts = starts(cluster.path("notes.log"))
    assert set(counts) == {job.id for job in jobs}, "a job never started"
    twice = {job_id: count for job_id, count in counts.items() if count > 1}
    print(f"jobs that started more than once: {len(twice)} {twice}")
    for node in nodes:
        assert node.alive(), f"{node.name} exited:\n{node.output()}"
    identities = {node.leader_node: node for node in nodes}

    def one_leader() -> bool:
        current = lease(database)
        leaders = [node for node in nodes if node.says_it_leads()]
        return (
            current is not None
            and current.node in identities
            and leaders == [identities[current.node]]
        )

    wait_for(one_leader, message="after the outage one node leads, and the lease names it")
    # Each node's notifier was cut off and connected again by itself.
    assert listeners_since(cluster.url, cut) == {f"oban_notifier:{node.name}" for node in nodes}
    for node in nodes:
        node.stop()


def test_jobs_survive_every_connection_being_terminated_again_and_again(
    cluster: Cluster, database: SqlDatabase
) -> None:
    url = cluster.url
    log = cluster.path("notes.log")
    nodes = start_nodes(cluster)
    jobs = insert_jobs(database, str(log))
    terminated = []
    for fraction in (0.1, 0.3, 0.5, 0.7):
        wanted = fraction * JOBS
        wait_for(
            lambda: sum(starts(log).values()) >= wanted,  # noqa: B023 - called at once
            timeout=60,
            message=f"{fraction:.0%} of the jobs started",
        )
        cut = datetime.now(timezone.utc)
        terminated.append(terminate_every_other_connection(url))
    # Each time, at least the two nodes' listening connections were cut.
    assert all(count >= 2 for count in terminated), terminated
    print(f"connections terminated: {terminated}")
    assert_every_job_done_and_the_nodes_alive(cluster, database, nodes, jobs, cut)


def local_cluster(url: str) -> tuple[str, str] | None:
    """(version, name) of the local cluster serving ``url``, if this machine has it."""
    parsed = sa.make_url(url)
    if parsed.host not in (None, "127.0.0.1", "localhost", "::1") or not shutil.which(
        "pg_lsclusters"
    ):
        return None
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        version, name, port, *_ = line.split()
        if int(port) == (parsed.port or 5432):
            return version, name
    return None


def restart_server(url: str) -> None:
    found = local_cluster(url)
    reason = f"cannot restart the PostgreSQL server of {url} from here"
    if found is None:
        if IN_CI:
            pytest.fail(f"{reason}: no local cluster in pg_lsclusters (CI=true: must run)")
        pytest.skip(f"{reason}: no local cluster in pg_lsclusters")
    version, name = found
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        message = f"{reason}: {' '.join(command)} failed: {done.stdout}{done.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def test_jobs_survive_a_server_restart(cluster: Cluster, database: SqlDatabase) -> None:
    url = cluster.url
    log = cluster.path("notes.log")
    nodes = start_nodes(cluster)
    jobs = insert_jobs(database, str(log))
    wait_for(lambda: sum(starts(log).values()) >= JOBS // 4, message="a quarter of the jobs ran")
    started = sum(starts(log).values())
    cut = datetime.now(timezone.utc)
    try:
        restart_server(url)
    finally:
        # Whatever happened, the next test finds the server up.
        wait_for(lambda: accepts_connections(url), timeout=60, message="PostgreSQL is back")
    assert started < JOBS, "the jobs were all running before the restart"
    assert_every_job_done_and_the_nodes_alive(cluster, database, nodes, jobs, cut)
