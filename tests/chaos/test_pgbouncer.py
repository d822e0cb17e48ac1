"""Notifications lost: the nodes reach the database through PgBouncer in
transaction pooling mode (scenario 7 of issue 13).

LISTEN does not survive transaction pooling (the session that listened is
handed to another client after each transaction), so no insert signal
reaches the producers: jobs must still flow, each picked up within about
``poll_interval`` (the fetch a producer makes when nothing signals). The
nodes use the setting PgBouncer needs of psycopg 3, ``prepare_threshold=None``
(no server-side prepared statements, which a pooled connection may not have:
see ``oban.engines.create_bind``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from oban import Oban
from oban.engines import PGBOUNCER_CONNECT_ARGS, create_bind
from tests.chaos.pgbouncer import Bouncer, pgbouncer
from tests.chaos.server import PrivateServer, ServerUnavailable
from tests.chaos.support import completed, report, tally
from tests.cluster.support import Cluster
from tests.cluster.workers import Note, starts
from tests.conftest import SqlDatabase, wait_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POLL_INTERVAL = 0.5
"""Long enough next to a notification's few milliseconds to tell the two apart."""


@pytest.fixture
def bouncer(chaos_server: PrivateServer) -> Iterator[Bouncer]:
    try:
        with pgbouncer(chaos_server) as running:
            yield running
    except ServerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"cannot run pgbouncer (CI=true: must run): {exc}")
        pytest.skip(f"cannot run pgbouncer: {exc}")


def test_jobs_flow_through_pgbouncer_by_polling(
    chaos_server: PrivateServer,
    chaos_database: SqlDatabase,
    bouncer: Bouncer,
    cluster: Cluster,
    chaos_minutes: float | None,
) -> None:
    """Through transaction pooling every job runs once, picked up by the poll."""
    name = str(chaos_database.bind.url.database)
    url = chaos_server.url(name, port=bouncer.port)
    log = cluster.path("notes.log")
    nodes = [
        cluster.spawn(
            node,
            queues={"q": 5},
            url=url,
            connect_args=dict(PGBOUNCER_CONNECT_ARGS),
            poll_interval=POLL_INTERVAL,
        )
        for node in ("node-a", "node-b")
    ]
    for node in nodes:
        node.ready()
    singles = 20 if chaos_minutes is None else int(chaos_minutes * 60)
    bulk = 500 if chaos_minutes is None else 5000

    bind = create_bind(url, connect_args=dict(PGBOUNCER_CONNECT_ARGS))
    inserter = Oban(bind, name="inserter")
    ids: list[int] = []
    latencies: list[float] = []
    try:
        for _ in range(singles):
            job = inserter.enqueue(Note.new({"log": str(log)}))
            assert job.id is not None
            ids.append(job.id)
            inserted = time.monotonic()
            wait_for(partial(_started, log, job.id), message=f"job {job.id} starts")
            latencies.append(time.monotonic() - inserted)
        began = time.monotonic()
        ids += [
            int(job.id)
            for job in inserter.enqueue_many(Note.new({"log": str(log)}) for _ in range(bulk))
            if job.id is not None
        ]
        wait_for(lambda: len(starts(log)) >= len(ids), timeout=60, message="every job starts")
        drained = time.monotonic() - began
    finally:
        inserter.close()
        bind.dispose()  # a bind given to Oban stays the caller's to close

    wait_for(
        lambda: completed(chaos_database) == len(ids), message=f"all {len(ids)} jobs completed"
    )
    for node in nodes:
        assert node.alive(), f"{node.name} exited:\n{node.output()}"
    outputs = "".join(node.stderr_path.read_text(errors="replace") for node in nodes)
    assert "prepared statement" not in outputs, outputs[-4000:]

    result = tally("notifications lost (pgbouncer transaction pooling)", log, ids)
    result.notes = {
        "poll_interval": POLL_INTERVAL,
        "pickup_p50_seconds": round(statistics.median(latencies), 3),
        "pickup_max_seconds": round(max(latencies), 3),
        "bulk_jobs": bulk,
        "bulk_drain_seconds": round(drained, 2),
        "node_errors_logged": outputs.count("database unavailable"),
    }
    report(result)
    assert not result.lost, f"jobs never started: {result.lost[:20]}"
    assert not result.twice, f"jobs started twice: {result.twice}"


def _started(log: Path, job_id: int) -> bool:
    return job_id in starts(log)
