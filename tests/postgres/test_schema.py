"""The PostgreSQL schema: column types, prefix, and adopting a table a peer created.

Elixir Oban and oban-py create ``oban_jobs`` with slightly different types
(Elixir: ``errors jsonb[]``, integer counters, nullable ``attempted_by``;
oban-py: ``tags jsonb``, ``GENERATED ALWAYS`` ids). Migrating over either
keeps the table as it is, and our runtime then works on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.types.json import Jsonb

import oban
from oban import ConfigError, Job, JobState, Oban
from oban.engines.basic import Basic
from oban.migrations import OBAN_TABLES
from oban.outcomes import Ack, error_entry
from tests.conftest import wait_for
from tests.postgres.support import table
from tests.postgres.workers import SEEN, Explode, Note

pytestmark = pytest.mark.postgres

EXPECTED_TYPES = {
    "id": "bigint",
    "state": "oban_job_state",
    "queue": "text",
    "worker": "text",
    "attempt": "smallint",
    "max_attempts": "smallint",
    "priority": "smallint",
    "args": "jsonb",
    "meta": "jsonb",
    "tags": "text[]",
    "errors": "jsonb",
    "attempted_by": "text[]",
    "inserted_at": "timestamp without time zone",
    "scheduled_at": "timestamp without time zone",
    "attempted_at": "timestamp without time zone",
    "cancelled_at": "timestamp without time zone",
    "completed_at": "timestamp without time zone",
    "discarded_at": "timestamp without time zone",
}


def _column_types(bind: sa.Engine, schema: str) -> dict[str, str]:
    with bind.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT column_name, CASE WHEN data_type = 'ARRAY' THEN "
                "substr(udt_name, 2) || '[]' WHEN data_type = 'USER-DEFINED' THEN udt_name "
                "ELSE data_type END AS type_name "
                "FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = 'oban_jobs'"
            ),
            {"schema": schema},
        ).all()
    return {str(name): str(type_name) for name, type_name in rows}


def test_a_job_reads_back_with_every_column_in_the_postgres_types(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine, pg_prefix: str
) -> None:
    instance = make_oban(testing="manual")
    scheduled = datetime(2031, 1, 2, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    saved = instance.enqueue(
        Note.new(
            {"n": 1, "nested": {"ok": True}},
            meta={"source": "test"},
            tags=["b", "A"],
            scheduled_at=scheduled,
            priority=3,
        )
    )
    assert _column_types(pg_bind, pg_prefix) == EXPECTED_TYPES

    # The values of the stored row, typed by PostgreSQL itself.
    columns = ", ".join(f"pg_typeof({name})::text AS {name}" for name in EXPECTED_TYPES)
    with pg_bind.connect() as conn:
        typeof = conn.execute(
            sa.text(f"SELECT {columns} FROM {table(pg_prefix)} WHERE id = :id"),
            {"id": saved.id},
        ).one()
        raw = conn.execute(
            sa.text(f"SELECT scheduled_at, tags, args FROM {table(pg_prefix)} WHERE id = :id"),
            {"id": saved.id},
        ).one()
        identity = conn.execute(
            sa.text(
                "SELECT is_identity FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = 'oban_jobs' AND column_name = 'id'"
            ),
            {"schema": pg_prefix},
        ).scalar_one()
    expected_typeof = {
        name: f"{pg_prefix}.oban_job_state" if name == "state" else type_name
        for name, type_name in EXPECTED_TYPES.items()
    }
    assert dict(typeof._mapping) == expected_typeof
    assert identity == "YES"
    # Timestamps are stored as naive UTC, as Elixir Oban and oban-py store them.
    assert raw.scheduled_at == datetime(2031, 1, 2, 10, 30, 0, 123456)
    assert raw.tags == ["a", "b"]
    assert raw.args == {"n": 1, "nested": {"ok": True}}

    loaded = instance.get_job(saved.id or 0)
    assert loaded is not None
    assert loaded.state is JobState.SCHEDULED
    assert loaded.scheduled_at == scheduled
    assert loaded.scheduled_at is not None
    assert loaded.scheduled_at.tzinfo is not None
    assert (loaded.priority, loaded.tags, loaded.meta) == (3, ["a", "b"], {"source": "test"})
    assert (loaded.errors, loaded.attempted_by, loaded.attempt) == ([], [], 0)


def test_prefix_puts_the_table_and_the_enum_in_that_schema(
    pg_bind: sa.Engine, pg_schema: str, postgres_url: str
) -> None:
    oban.migrate(pg_bind, prefix=pg_schema)
    oban.migrate(pg_bind, prefix=pg_schema)  # a second run is a no-op
    with pg_bind.connect() as conn:
        places = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind = 'r' ORDER BY 1"
            ),
            {"schema": pg_schema},
        ).scalars()
        enum_schema = conn.execute(
            sa.text(
                "SELECT n.nspname FROM pg_attribute a "
                "JOIN pg_type t ON t.oid = a.atttypid "
                "JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE a.attrelid = to_regclass(:table) AND a.attname = 'state'"
            ),
            {"table": table(pg_schema)},
        ).scalar_one()
        assert list(places) == sorted(OBAN_TABLES)
        assert enum_schema == pg_schema

    instance = Oban(postgres_url, prefix=pg_schema, queues={"default": 2}, node="prefix-node")
    try:
        with instance:
            saved = instance.enqueue(Note.new({"in": pg_schema}))
            wait_for(lambda: SEEN.has(saved.id), message="the job in the prefix schema ran")
    finally:
        instance.close()


@pytest.mark.parametrize("prefix", ["bad name", 'x"; DROP TABLE y; --', "1abc", "a" * 64, ""])
def test_a_prefix_that_is_not_a_plain_schema_name_is_refused(
    postgres_url: str, prefix: str
) -> None:
    with pytest.raises(ConfigError, match="prefix must be a PostgreSQL schema name"):
        Oban(postgres_url, prefix=prefix)


# -- adopting a peer's table --------------------------------------------------------

# Elixir Oban's oban_jobs after its migrations v01..v12 (before v14 added
# 'suspended'), written out as the plain SQL those migrations amount to.
ELIXIR_DDL = """
CREATE SCHEMA {s};
CREATE TYPE {s}.oban_job_state AS ENUM (
  'available', 'scheduled', 'executing', 'retryable', 'completed', 'discarded', 'cancelled'
);
CREATE TABLE {s}.oban_jobs (
  id bigserial PRIMARY KEY,
  state {s}.oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  args jsonb NOT NULL DEFAULT '{{}}',
  errors jsonb[] NOT NULL DEFAULT ARRAY[]::jsonb[],
  attempt integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 20,
  inserted_at timestamp NOT NULL DEFAULT timezone('UTC', now()),
  scheduled_at timestamp NOT NULL DEFAULT timezone('UTC', now()),
  attempted_at timestamp,
  completed_at timestamp,
  attempted_by text[],
  discarded_at timestamp,
  priority integer NOT NULL DEFAULT 0,
  tags text[] DEFAULT ARRAY[]::text[],
  meta jsonb DEFAULT '{{}}',
  cancelled_at timestamp,
  CONSTRAINT worker_length CHECK (char_length(worker) > 0 AND char_length(worker) < 128),
  CONSTRAINT queue_length CHECK (char_length(queue) > 0 AND char_length(queue) < 128),
  CONSTRAINT positive_max_attempts CHECK (max_attempts > 0),
  CONSTRAINT attempt_range CHECK (attempt BETWEEN 0 AND max_attempts),
  CONSTRAINT non_negative_priority CHECK (priority >= 0) NOT VALID
);
CREATE INDEX oban_jobs_state_queue_priority_scheduled_at_id_index
  ON {s}.oban_jobs (state, queue, priority, scheduled_at, id);
CREATE INDEX oban_jobs_args_index ON {s}.oban_jobs USING gin (args);
CREATE INDEX oban_jobs_meta_index ON {s}.oban_jobs USING gin (meta);
COMMENT ON TABLE {s}.oban_jobs IS '12';
"""

# A job as Elixir Oban inserts it: attempted_by left NULL, errors an empty jsonb[].
ELIXIR_ROW = """
INSERT INTO {s}.oban_jobs (state, queue, worker, args, errors, attempt, max_attempts,
                           priority, tags, meta, scheduled_at)
VALUES ('available', 'default', %(worker)s, %(args)s, ARRAY[]::jsonb[], 0, 20, 0,
        ARRAY['elixir'], '{{}}', timezone('UTC', now()))
RETURNING id
"""

# oban-py's install: the same columns, but tags jsonb and ids GENERATED ALWAYS.
OBAN_PY_DDL = """
CREATE SCHEMA {s};
CREATE TYPE {s}.oban_job_state AS ENUM (
  'available', 'scheduled', 'suspended', 'executing', 'retryable', 'completed', 'discarded',
  'cancelled'
);
CREATE TABLE {s}.oban_jobs (
  id BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  state {s}.oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  attempt smallint NOT NULL DEFAULT 0,
  max_attempts smallint NOT NULL DEFAULT 20,
  priority smallint NOT NULL DEFAULT 0,
  args jsonb NOT NULL DEFAULT '{{}}',
  meta jsonb NOT NULL DEFAULT '{{}}',
  tags jsonb NOT NULL DEFAULT '[]',
  errors jsonb NOT NULL DEFAULT '[]',
  attempted_by text[] NOT NULL DEFAULT ARRAY[]::TEXT[],
  inserted_at timestamp WITHOUT TIME ZONE NOT NULL DEFAULT timezone('UTC', now()),
  scheduled_at timestamp WITHOUT TIME ZONE NOT NULL DEFAULT timezone('UTC', now()),
  attempted_at timestamp WITHOUT TIME ZONE,
  cancelled_at timestamp WITHOUT TIME ZONE,
  completed_at timestamp WITHOUT TIME ZONE,
  discarded_at timestamp WITHOUT TIME ZONE,
  CONSTRAINT attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
  CONSTRAINT queue_length CHECK (char_length(queue) > 0),
  CONSTRAINT worker_length CHECK (char_length(worker) > 0),
  CONSTRAINT positive_max_attempts CHECK (max_attempts > 0),
  CONSTRAINT non_negative_priority CHECK (priority >= 0)
);
CREATE INDEX oban_jobs_state_queue_priority_scheduled_at_id_index
  ON {s}.oban_jobs (state, queue, priority, scheduled_at, id);
CREATE INDEX oban_jobs_staging_index ON {s}.oban_jobs (scheduled_at, id)
  WHERE state IN ('scheduled', 'retryable');
COMMENT ON TABLE {s}.oban_jobs IS '1';
"""

# A job as oban-py inserts it: every column a bound parameter, JSON as Jsonb.
OBAN_PY_ROW = """
INSERT INTO {s}.oban_jobs (args, inserted_at, max_attempts, meta, priority, queue,
                           scheduled_at, state, tags, worker)
VALUES (%(args)s, coalesce(%(inserted_at)s, timezone('UTC'::text, now())), %(max_attempts)s,
        %(meta)s, %(priority)s, %(queue)s, coalesce(%(scheduled_at)s, timezone('UTC'::text,
        now())), %(state)s, %(tags)s, %(worker)s)
RETURNING id
"""

PEERS = {
    "elixir": (ELIXIR_DDL, ELIXIR_ROW, {"errors": "jsonb[]", "tags": "text[]"}),
    "oban_py": (OBAN_PY_DDL, OBAN_PY_ROW, {"errors": "jsonb", "tags": "jsonb"}),
}


def _pg_url(postgres_url: str) -> str:
    return sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)


def _peer_insert(postgres_url: str, statement: str, worker: str, args: dict[str, object]) -> int:
    """Insert one job with plain psycopg, the way the peer does (worker name as a string)."""
    params = {
        "worker": worker,
        "args": Jsonb(args),
        "inserted_at": None,
        "max_attempts": 20,
        "meta": Jsonb({"peer": True}),
        "priority": 0,
        "queue": "default",
        "scheduled_at": None,
        "state": "available",
        "tags": Jsonb(["peer"]),
    }
    with psycopg.connect(_pg_url(postgres_url), autocommit=True) as conn:
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    return int(row[0])


def _peer_table(pg_bind: sa.Engine, ddl: str, schema: str) -> None:
    with pg_bind.begin() as conn:
        conn.exec_driver_sql(ddl.format(s=schema))


@pytest.mark.parametrize("peer", list(PEERS))
def test_migrating_over_a_peers_table_adopts_it_and_the_runtime_works_on_it(
    peer: str, postgres_url: str, pg_bind: sa.Engine, pg_schema: str
) -> None:
    ddl, insert_row, peer_types = PEERS[peer]
    _peer_table(pg_bind, ddl, pg_schema)
    before = _peer_insert(
        postgres_url, insert_row.format(s=pg_schema), "tests.postgres.workers.Note", {"n": 1}
    )

    oban.migrate(pg_bind, prefix=pg_schema)  # adopts: no error, nothing dropped
    oban.migrate(pg_bind, prefix=pg_schema)

    types = _column_types(pg_bind, pg_schema)
    assert {name: types[name] for name in peer_types} == peer_types  # left as the peer made it
    with pg_bind.connect() as conn:
        labels = conn.execute(
            sa.text(
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                "JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE t.typname = 'oban_job_state' AND n.nspname = :schema"
            ),
            {"schema": pg_schema},
        ).scalars()
        assert "suspended" in set(labels)

    instance = Oban(postgres_url, prefix=pg_schema, queues={"default": 5}, node=f"{peer}-node")
    try:
        with instance:
            ours = instance.enqueue(Note.new({"n": 2}, tags=["ours"], meta={"m": 1}))
            failing = instance.enqueue(Explode.new({"n": 3}))
            after = _peer_insert(
                postgres_url,
                insert_row.format(s=pg_schema),
                "tests.postgres.workers.Note",
                {"n": 4},
            )
            wait_for(
                lambda: all(SEEN.has(job_id) for job_id in (before, ours.id, failing.id)),
                message="the jobs ran",
            )
            # Inserted by the peer while we run: found by the next poll.
            wait_for(lambda: SEEN.has(after), message="the peer's later job ran")
            wait_for(
                lambda: all(
                    (job := instance.get_job(job_id or 0)) is not None
                    and job.state is JobState.COMPLETED
                    for job_id in (before, after, ours.id)
                ),
                message="acks written",
            )
            wait_for(
                lambda: (
                    (job := instance.get_job(failing.id or 0)) is not None
                    and job.state is JobState.DISCARDED
                ),
                message="the failing job discarded",
            )
    finally:
        instance.close()

    assert ours.tags == ["ours"]
    with pg_bind.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT id, state::text AS state, attempt, tags, meta, attempted_by, errors "
                f"FROM {table(pg_schema)} ORDER BY id"
            )
        ).all()
    by_id = {row.id: row for row in rows}
    assert by_id[before].state == by_id[after].state == by_id[ours.id].state == "completed"
    assert by_id[before].attempt == 1
    assert by_id[before].attempted_by[0] == f"{peer}-node"
    assert by_id[ours.id].tags == ["ours"]
    assert by_id[ours.id].meta == {"m": 1}
    discarded = by_id[failing.id]
    assert discarded.state == "discarded"
    assert len(discarded.errors) == 1
    assert "exploded on purpose" in discarded.errors[0]["error"]
    assert discarded.errors[0]["attempt"] == 1


@pytest.mark.parametrize("peer", list(PEERS))
def test_acks_append_errors_and_merge_meta_in_a_peers_column_types(
    peer: str, pg_bind: sa.Engine, pg_schema: str
) -> None:
    _peer_table(pg_bind, PEERS[peer][0], pg_schema)
    oban.migrate(pg_bind, prefix=pg_schema)
    engine = Basic(sa.create_engine(pg_bind.url), prefix=pg_schema, owns_bind=True)
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    try:
        with engine.transaction() as conn:
            (job,) = engine.insert_jobs(conn, [Job("app.Anything", meta={"a": 1})], now)
        for attempt in (1, 2):
            with engine.transaction() as conn:
                (fetched,) = engine.fetch_jobs(conn, "default", 1, ["n", "p"], now)
                assert fetched.attempt == attempt
                ack = Ack(
                    job.id or 0,
                    attempt,
                    JobState.RETRYABLE,
                    now,
                    scheduled_at=now,
                    error=error_entry(attempt, now, f"failure {attempt}"),
                    meta={f"k{attempt}": {"deep": attempt}},
                )
                engine.ack_jobs(conn, [ack])
            with engine.transaction() as conn:
                engine.stage_jobs(conn, now, 10)
        with engine.transaction() as conn:
            stored = engine.get_job(conn, job.id or 0)
    finally:
        engine.close()
    assert stored is not None
    assert [entry["error"] for entry in stored.errors] == ["failure 1", "failure 2"]
    assert stored.meta == {"a": 1, "k1": {"deep": 1}, "k2": {"deep": 2}}
    assert stored.state is JobState.AVAILABLE


def test_a_job_inserted_the_way_oban_py_does_is_run_by_our_runtime(
    make_oban: Callable[..., Oban], postgres_url: str, pg_prefix: str, pg_bind: sa.Engine
) -> None:
    """Plain SQL into our own table, worker name as a string, args as jsonb."""
    job_id = _peer_insert(
        postgres_url,
        OBAN_PY_ROW.format(s=f'"{pg_prefix}"').replace("%(tags)s", "ARRAY['peer']"),
        "tests.postgres.workers.Note",
        {"from": "oban-py"},
    )
    instance = make_oban(queues={"default": 2}, poll_interval=0.1)
    with instance:
        wait_for(lambda: SEEN.has(job_id), message="the plain-SQL job ran")
        wait_for(
            lambda: (
                (job := instance.get_job(job_id)) is not None and job.state is JobState.COMPLETED
            ),
            message="the plain-SQL job completed",
        )
    job = instance.get_job(job_id)
    assert job is not None
    assert (job.args, job.meta, job.tags, job.attempt) == (
        {"from": "oban-py"},
        {"peer": True},
        ["peer"],
        1,
    )
