"""Unique jobs on PostgreSQL: what the advisory lock guarantees, and peers' tables.

The lock is ``pg_advisory_xact_lock`` (blocking, released at commit or
rollback), so an insert racing an uncommitted winner waits for it and then
sees the truth: the winner's row if it committed, nothing if it rolled back.
(Elixir Oban's try-lock instead reports a conflict with a job that may never
commit.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

import oban
from oban import Job, JobState
from oban.engines.basic import Basic
from oban.job import utc_now
from tests.conftest import wait_for
from tests.postgres.support import table
from tests.postgres.test_basic import Statements
from tests.postgres.test_schema import (
    ELIXIR_ROW,
    OBAN_PY_ROW,
    PEERS,
    _peer_insert,
    _peer_table,
)

pytestmark = pytest.mark.postgres

WORKER = "tests.postgres.workers.Note"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@pytest.fixture
def basic(postgres_url: str, pg_prefix: str) -> Iterator[Basic]:
    engine = Basic(sa.create_engine(postgres_url, pool_size=10), prefix=pg_prefix, owns_bind=True)
    yield engine
    engine.close()


def unique_job(args: dict[str, object] | None = None, **options: object) -> Job:
    return Job(WORKER, args=args or {"id": 1}, unique={"period": None}, **options)  # type: ignore[arg-type]


def waiting_advisory_locks(bind: sa.Engine) -> int:
    with bind.connect() as conn:
        query = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(conn.execute(query).scalar_one())


def rows(bind: sa.Engine, prefix: str) -> int:
    with bind.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table(prefix)}")).scalar_one())


class Racer(threading.Thread):
    """Inserts ``job`` in a transaction of its own; keeps the result or the error."""

    def __init__(self, engine: Basic, job: Job) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.job = job
        self.result: Job | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.engine.transaction() as conn:
                (self.result,) = self.engine.insert_jobs(conn, [self.job], utc_now())
        except BaseException as exc:
            self.error = exc


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_a_racing_insert_waits_for_the_uncommitted_winner(
    basic: Basic, pg_prefix: str, outcome: str
) -> None:
    with basic.bind.connect() as conn:
        transaction = conn.begin()
        (winner,) = basic.insert_jobs(conn, [unique_job()], utc_now())
        assert winner.conflict is False

        racer = Racer(basic, unique_job())
        racer.start()
        wait_for(
            lambda: waiting_advisory_locks(basic.bind) >= 1,
            message="the second insert waits on the advisory lock",
        )
        assert racer.is_alive()
        if outcome == "commit":
            transaction.commit()
        else:
            transaction.rollback()
        racer.join(timeout=30)

    assert racer.error is None, racer.error
    assert racer.result is not None
    if outcome == "commit":
        # The winner's row, never a second one.
        assert racer.result.conflict is True
        assert racer.result.id == winner.id
    else:
        # No phantom conflict with a job that never committed.
        assert racer.result.conflict is False
        assert racer.result.id != winner.id
    assert rows(basic.bind, pg_prefix) == 1


def test_batches_holding_the_same_jobs_in_opposite_orders_never_deadlock(
    basic: Basic, pg_prefix: str
) -> None:
    errors: list[BaseException] = []
    for round_ in range(10):
        barrier = threading.Barrier(2)
        a, b = {"id": f"a{round_}"}, {"id": f"b{round_}"}

        def insert(order: list[dict[str, object]], barrier: threading.Barrier) -> None:
            try:
                with basic.transaction() as conn:
                    barrier.wait(timeout=10)
                    basic.insert_jobs(conn, [unique_job(args) for args in order], utc_now())
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=insert, args=([a, b], barrier)),
            threading.Thread(target=insert, args=([b, a], barrier)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert rows(basic.bind, pg_prefix) == 20


def test_the_lock_is_the_blocking_transaction_scoped_one_taken_once_per_batch(
    basic: Basic,
) -> None:
    recorder = Statements(basic.bind)
    try:
        with basic.transaction() as conn:
            basic.insert_jobs(
                conn,
                [unique_job({"id": n}) for n in range(5)] + [Job(WORKER)],
                NOW,
            )
    finally:
        recorder.close()
    locks = [text for text, _ in recorder.seen if "advisory" in text]
    assert len(locks) == 1
    assert "pg_advisory_xact_lock" in locks[0]
    assert "try" not in locks[0]


def test_plain_batches_take_no_lock(basic: Basic) -> None:
    recorder = Statements(basic.bind)
    try:
        with basic.transaction() as conn:
            basic.insert_jobs(conn, [Job(WORKER) for _ in range(3)], NOW)
    finally:
        recorder.close()
    assert not [text for text, _ in recorder.seen if "advisory" in text]


def test_prefixes_do_not_wait_on_each_others_locks(
    basic: Basic, pg_prefix: str, pg_bind: sa.Engine
) -> None:
    """The prefix is part of the lock key: the same job in another schema is not held up."""
    other = f"{pg_prefix}_b"
    oban.migrate(pg_bind, prefix=other)
    try:
        elsewhere = Basic(pg_bind, prefix=other)
        with basic.bind.connect() as holder, holder.begin():
            basic.insert_jobs(holder, [unique_job()], NOW)  # holds its lock
            with elsewhere.transaction() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                (job,) = elsewhere.insert_jobs(conn, [unique_job()], NOW)
            assert job.conflict is False
    finally:
        with pg_bind.begin() as conn:
            conn.execute(sa.schema.DropSchema(other, cascade=True, if_exists=True))


# -- peers' tables -------------------------------------------------------------------------


@pytest.mark.parametrize("peer", list(PEERS))
def test_unique_and_replace_on_a_peers_table(
    peer: str, postgres_url: str, pg_bind: sa.Engine, pg_schema: str
) -> None:
    """A job the peer inserted is a duplicate; replace writes tags in the peer's type
    (``text[]`` for Elixir Oban, ``jsonb`` for oban-py)."""
    ddl, insert_row, _types = PEERS[peer]
    _peer_table(pg_bind, ddl, pg_schema)
    oban.migrate(pg_bind, prefix=pg_schema)
    assert insert_row in (ELIXIR_ROW, OBAN_PY_ROW)
    peer_id = _peer_insert(postgres_url, insert_row.format(s=pg_schema), WORKER, {"id": 7})

    engine = Basic(pg_bind, prefix=pg_schema)
    replace = {"available": ["tags", "meta", "priority"]}
    new = Job(
        WORKER,
        args={"id": 7},
        tags=["ours"],
        meta={"m": 1},
        priority=2,
        unique=True,
        replace=replace,
    )
    with engine.transaction() as conn:
        (found,) = engine.insert_jobs(conn, [new], utc_now())
    assert found.conflict is True
    assert found.id == peer_id
    assert found.tags == ["ours"]
    assert found.meta == {"m": 1}
    assert found.priority == 2
    assert found.state is JobState.AVAILABLE
    with engine.transaction() as conn:
        stored = engine.get_job(conn, peer_id)
    assert stored is not None
    assert stored.tags == ["ours"]
