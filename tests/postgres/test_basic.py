"""The Basic engine's PostgreSQL-specific behaviour: round trips, locking, notices, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from oban import Capability, DatabaseError, Job, JobState, SchemaError
from oban.engines import basic as basic_module
from oban.engines import copy_rows
from oban.engines.basic import Basic
from oban.outcomes import Ack, error_entry
from tests.postgres.support import table

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@pytest.fixture
def basic(postgres_url: str, pg_prefix: str) -> Iterator[Basic]:
    engine = Basic(sa.create_engine(postgres_url, pool_size=10), prefix=pg_prefix, owns_bind=True)
    yield engine
    engine.close()


class Statements:
    """Every statement the engine's pool sends, with whether it went as executemany."""

    def __init__(self, bind: sa.Engine) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._bind = bind
        sa.event.listen(bind, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        executemany = bool(rest[-1])
        self.seen.append((" ".join(statement.split()), executemany))

    def close(self) -> None:
        sa.event.remove(self._bind, "before_cursor_execute", self._record)

    def starting(self, verb: str) -> list[tuple[str, bool]]:
        return [(text, many) for text, many in self.seen if text.upper().startswith(verb)]


@pytest.fixture
def statements(basic: Basic) -> Iterator[Statements]:
    recorder = Statements(basic.bind)
    yield recorder
    recorder.close()


def test_capabilities(basic: Basic) -> None:
    assert basic.capabilities == {
        Capability.PERSISTENT,
        Capability.SHARED,
        Capability.TRANSACTIONAL,
        Capability.NOTIFY,
        Capability.UNIQUE,
        Capability.CLUSTER,
    }


def test_a_batch_below_the_copy_threshold_goes_in_one_insert_statement(
    basic: Basic, statements: Statements
) -> None:
    jobs = [Job("app.Bulk", args={"n": n}) for n in range(copy_rows.COPY_THRESHOLD - 1)]
    with basic.transaction() as conn:
        inserted = basic.insert_jobs(conn, jobs, NOW)
    sent = [text for text, _ in statements.seen if "INSERT INTO" in text or "pg_notify" in text]
    # One statement: the INSERT, and the NOTIFY of its queue inside it.
    assert len(sent) == 1
    assert "INSERT INTO" in sent[0]
    assert "pg_notify" in sent[0]
    assert [job.args["n"] for job in inserted] == list(range(len(jobs)))


def test_an_enqueue_outside_any_transaction_is_one_statement_that_notifies(
    postgres_url: str, pg_prefix: str
) -> None:
    from oban import Oban

    channel = f"{pg_prefix}.oban_insert"
    url = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    instance = Oban(postgres_url, prefix=pg_prefix, testing="manual")
    try:
        instance.enqueue(Job("app.Warm", queue="warm-up"))  # the table's shape is read once
        recorder = Statements(instance.engine.bind)  # type: ignore[attr-defined]
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            saved = instance.enqueue(Job("app.One", queue="solo"))
            notice = next(listener.notifies(timeout=20))
        recorder.close()
        assert notice.payload == '{"queue":"solo"}'
        assert len(recorder.seen) == 1, recorder.seen
        stored = instance.get_job(saved.id or 0)
        assert stored is not None
        assert stored.queue == "solo"
    finally:
        instance.close()


def test_a_batch_of_unique_and_plain_jobs_notifies_every_queue(
    basic: Basic, postgres_url: str
) -> None:
    channel = f"{basic.prefix}.oban_insert"
    url = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        with basic.transaction() as conn:
            jobs = [
                Job("app.N", queue="plain"),
                Job("app.N", queue="unique", unique={"period": 60}),
            ]
            basic.insert_jobs(conn, jobs, NOW)
        payloads: list[str] = []
        for notice in listener.notifies(timeout=20):
            payloads.append(notice.payload)
            if len(payloads) == 2:
                break
    assert sorted(payloads) == ['{"queue":"plain"}', '{"queue":"unique"}']


def test_ten_thousand_jobs_go_in_one_copy(
    basic: Basic, statements: Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[int] = []

    def counted(conn: Any, schema: Any, sequence: Any, items: Any, *args: Any, **kw: Any) -> Any:
        copies.append(len(items))
        return copy_rows.copy_rows(conn, schema, sequence, items, *args, **kw)

    monkeypatch.setattr(basic_module, "copy_rows", counted)
    jobs = [Job("app.Bulk", args={"n": n}, queue=f"q{n % 3}") for n in range(10_000)]
    with basic.transaction() as conn:
        inserted = basic.insert_jobs(conn, jobs, NOW)

    assert copies == [10_000]
    assert statements.starting("INSERT") == []
    # ... and one pg_notify for the three queues, in the same transaction.
    notifies = [text for text, _ in statements.starting("SELECT") if "pg_notify" in text]
    assert len(notifies) == 1

    # Returned in the given order, each with the id of its own row.
    assert [job.args["n"] for job in inserted] == list(range(10_000))
    with basic.transaction() as conn:
        stored = conn.execute(
            sa.text(f"SELECT id, (args->>'n')::int AS n, queue FROM {table(basic.prefix or '')}")
        ).all()
    by_id = {row.id: (row.n, row.queue) for row in stored}
    assert len(by_id) == 10_000
    assert all(by_id[job.id or 0] == (job.args["n"], job.queue) for job in inserted)


def test_every_row_of_a_batch_keeps_its_own_values(basic: Basic) -> None:
    later = datetime(2030, 1, 1, tzinfo=timezone.utc)
    jobs = [
        Job(
            f"app.W{n}",
            args={"n": n, "text": "ünï\"code'"},
            meta={"m": [n]},
            tags=[f"t{n}", "common"],
            queue=f"q{n}",
            priority=n % 10,
            max_attempts=n + 1,
            scheduled_at=later if n % 2 else None,
        )
        for n in range(20)
    ]
    with basic.transaction() as conn:
        inserted = basic.insert_jobs(conn, jobs, NOW)
    with basic.transaction() as conn:
        stored = [basic.get_job(conn, job.id or 0) for job in inserted]
    for n, (job, row) in enumerate(zip(inserted, stored, strict=True)):
        assert row is not None
        for field in ("worker", "args", "meta", "tags", "queue", "priority", "max_attempts"):
            assert getattr(row, field) == getattr(job, field) == getattr(jobs[n], field)
        assert (row.state, row.scheduled_at) == (
            (JobState.SCHEDULED, later) if n % 2 else (JobState.AVAILABLE, NOW)
        )
        assert row.inserted_at == job.inserted_at == NOW
        assert (row.errors, row.attempted_by, row.attempt) == ([], [], 0)


def test_acks_are_one_statement_per_kind(basic: Basic, statements: Statements) -> None:
    """Completions: one UPDATE over arrays; other outcomes: one executemany per kind."""
    with basic.transaction() as conn:
        basic.insert_jobs(conn, [Job("app.Ack", args={"n": n}) for n in range(30)], NOW)
    with basic.transaction() as conn:
        fetched = basic.fetch_jobs(conn, "default", 30, ["node", "uuid"], NOW)
    assert len(fetched) == 30
    acks = []
    for index, job in enumerate(fetched):
        job_id, attempt = job.id or 0, job.attempt
        kind = index % 3
        if kind == 0:
            acks.append(Ack(job_id, attempt, JobState.COMPLETED, NOW))
        elif kind == 1:
            error = error_entry(attempt, NOW, "boom")
            acks.append(
                Ack(job_id, attempt, JobState.RETRYABLE, NOW, scheduled_at=NOW, error=error)
            )
        else:
            acks.append(
                Ack(job_id, attempt, JobState.CANCELLED, NOW, error=error_entry(1, NOW, "x"))
            )
    statements.seen.clear()
    with basic.transaction() as conn:
        basic.ack_jobs(conn, acks)

    updates = statements.starting("UPDATE")
    assert len(updates) == 3
    assert [many for _, many in updates] == [False, True, True]
    assert "unnest" in updates[0][0]
    with basic.transaction() as conn:
        states = {basic.get_job(conn, job.id or 0).state for job in fetched}  # type: ignore[union-attr]
    assert states == {JobState.COMPLETED, JobState.RETRYABLE, JobState.CANCELLED}


def test_a_batch_of_plain_completions_is_one_statement_on_autocommit(basic: Basic) -> None:
    """The acker writes it without a transaction: one round trip, as every ack
    applies only while its attempt executes (a retried batch changes nothing twice)."""
    with basic.transaction() as conn:
        basic.insert_jobs(conn, [Job("app.Ack", args={"n": n}) for n in range(5)], NOW)
    with basic.autocommit() as conn:
        fetched = basic.fetch_jobs(conn, "default", 5, ["node", "uuid"], NOW)
    done = [Ack(job.id or 0, job.attempt, JobState.COMPLETED, NOW) for job in fetched]
    failed = Ack(1, 1, JobState.RETRYABLE, NOW, scheduled_at=NOW, error=error_entry(1, NOW, "x"))
    assert basic.single_statement_ack(done)
    assert not basic.single_statement_ack([*done, failed])
    for _ in range(2):  # the second time, as a retry after a lost reply: changes nothing
        with basic.autocommit() as conn:
            basic.ack_jobs(conn, done)
    with basic.transaction() as conn:
        found = [basic.get_job(conn, job.id or 0) for job in fetched]
    assert [(job.state, job.attempt) for job in found if job] == [(JobState.COMPLETED, 1)] * 5


def test_fetch_is_one_update_with_skip_locked(basic: Basic, statements: Statements) -> None:
    with basic.transaction() as conn:
        basic.insert_jobs(conn, [Job("app.Fetch")], NOW)
    statements.seen.clear()
    with basic.transaction() as conn:
        (job,) = basic.fetch_jobs(conn, "default", 5, ["node", "uuid"], NOW)
    (update,) = statements.seen
    assert update[0].startswith("UPDATE")
    assert "FOR UPDATE SKIP LOCKED" in update[0]
    assert (job.state, job.attempt, job.attempted_by) == (JobState.EXECUTING, 1, ["node", "uuid"])


def test_a_locked_row_is_skipped_not_waited_for(basic: Basic) -> None:
    with basic.transaction() as conn:
        first, second = basic.insert_jobs(conn, [Job("app.A"), Job("app.B")], NOW)
    with basic.transaction() as holder:
        # Another transaction holds a lock on the first row (as a slow fetch would).
        holder.execute(
            sa.text(f"SELECT id FROM {table(basic.prefix or '')} WHERE id = :id FOR UPDATE"),
            {"id": first.id},
        )
        with basic.transaction() as conn:
            fetched = basic.fetch_jobs(conn, "default", 2, ["node", "uuid"], NOW)
        assert [job.id for job in fetched] == [second.id]


def test_concurrent_fetches_never_claim_a_job_twice(basic: Basic) -> None:
    total = 3_000
    with basic.transaction() as conn:
        basic.insert_jobs(conn, [Job("app.Race", args={"n": n}) for n in range(total)], NOW)

    claimed: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def fetcher(index: int) -> None:
        start.wait()
        while True:
            with basic.transaction() as conn:
                jobs = basic.fetch_jobs(conn, "default", 7, [f"node-{index}", "uuid"], NOW)
            if not jobs:
                return
            with lock:
                claimed.extend(job.id or 0 for job in jobs)

    threads = [threading.Thread(target=fetcher, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == total
    assert len(set(claimed)) == total


def test_insert_notifies_each_queue_on_commit_only(basic: Basic, postgres_url: str) -> None:
    channel = f"{basic.prefix}.oban_insert"
    url = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        with pytest.raises(RuntimeError, match="roll back"):
            _insert_then_fail(basic, Job("app.N", queue="rolled-back"))
        with basic.transaction() as conn:
            jobs = [Job("app.N", queue="alpha"), Job("app.N", queue="beta")]
            basic.insert_jobs(conn, [*jobs, Job("app.N", queue="later", schedule_in=3600)], NOW)
        payloads: list[str] = []
        for notice in listener.notifies(timeout=20):
            assert notice.channel == channel
            payloads.append(notice.payload)
            if len(payloads) == 2:
                break
    # Only committed inserts of available jobs; the same JSON Elixir Oban and oban-py send.
    assert sorted(payloads) == ['{"queue":"alpha"}', '{"queue":"beta"}']


def _insert_then_fail(basic: Basic, job: Job) -> None:
    with basic.transaction() as conn:
        basic.insert_jobs(conn, [job], NOW)
        raise RuntimeError("roll back")


def test_database_errors_become_oban_errors_with_the_cause_attached(
    postgres_url: str, pg_schema: str
) -> None:
    engine = Basic(sa.create_engine(postgres_url), prefix=pg_schema, owns_bind=True)
    try:
        with pytest.raises(SchemaError, match="migrate") as missing, engine.transaction() as conn:
            engine.insert_jobs(conn, [Job("app.Nowhere")], NOW)
        assert isinstance(missing.value.__cause__, sa.exc.DBAPIError)
        assert isinstance(missing.value.__cause__.orig, psycopg.Error)

        with pytest.raises(DatabaseError) as failed, engine.transaction() as conn:
            engine.execute(conn, sa.text("SELECT 1 / 0"))
        assert isinstance(failed.value.__cause__, sa.exc.DBAPIError)
        assert "division by zero" in str(failed.value)
    finally:
        engine.close()


def test_a_url_for_another_postgres_driver_is_refused_with_the_fix() -> None:
    from oban import ConfigError

    bind = sa.create_mock_engine("postgresql+pg8000://u@localhost/db", executor=print)
    with pytest.raises(ConfigError, match=r"postgresql\+psycopg://"):
        Basic(bind)  # type: ignore[arg-type]  # only its dialect is looked at


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_bare_postgres_url_uses_psycopg_3(postgres_url: str, pg_prefix: str, scheme: str) -> None:
    from oban import Oban

    url = sa.make_url(postgres_url).set(drivername=scheme).render_as_string(False)
    instance = Oban(url, prefix=pg_prefix, testing="manual")
    try:
        assert instance.engine.name == "basic"
        saved = instance.enqueue(Job("app.Bare"))
        assert instance.get_job(saved.id or 0) is not None
    finally:
        instance.close()
