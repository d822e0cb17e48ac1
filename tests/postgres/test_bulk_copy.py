"""Big batches go in by COPY (``oban.engines.copy_rows``): every value must come
back exactly as a one-job INSERT would store it, in ours' and the peers' tables,
and a failing batch must store nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from oban import DatabaseError, Job
from oban.engines import copy_rows
from oban.engines.basic import Basic
from tests.postgres.test_schema import ELIXIR_DDL, OBAN_PY_DDL

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)

AWKWARD = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    'quote"inside',
    "{braces},commas",
    "NULL",
    "",
    "ünïcødé ✓ 漢字 🎉",
    "trailing backslash\\",
]


def awkward_job(n: int) -> Job:
    text = AWKWARD[n % len(AWKWARD)]
    return Job(
        f"app.Worker{n % 3}",
        queue=f"q {text}" if text else "q",
        args={"n": n, "text": text, "nested": {"list": [text, None, 1.5, True]}, text: text},
        meta={"m": text, "deep": {"k": [text]}},
        tags=[f"t{text}", "other, tag", 'with "quotes"'],
        priority=n % 4,
        max_attempts=1 + n % 7,
        errors=[{"attempt": 1, "error": f"boom {text}", "at": "2024-01-01T00:00:00"}],
        scheduled_at=NOW + timedelta(seconds=n) if n % 5 == 0 else None,
    )


TABLES = {"ours": None, "elixir": ELIXIR_DDL, "oban_py": OBAN_PY_DDL}


@pytest.fixture(params=list(TABLES))
def engine(request: pytest.FixtureRequest, pg_bind: sa.Engine, pg_schema: str) -> Iterator[Basic]:
    ddl = TABLES[request.param]
    if ddl is not None:
        with pg_bind.begin() as conn:
            conn.exec_driver_sql(ddl.format(s=pg_schema))
    oban.migrate(pg_bind, prefix=pg_schema)
    basic = Basic(sa.create_engine(pg_bind.url), prefix=pg_schema, owns_bind=True)
    yield basic
    basic.close()


def stored_fields(job: Job) -> dict[str, Any]:
    fields = ("worker", "queue", "state", "args", "meta", "tags", "errors", "priority")
    values = {name: getattr(job, name) for name in fields}
    return {
        **values,
        "max_attempts": job.max_attempts,
        "attempted_by": job.attempted_by,
        "inserted_at": job.inserted_at,
        "scheduled_at": job.scheduled_at,
    }


def test_a_big_batch_reads_back_exactly_as_single_inserts_store_it(engine: Basic) -> None:
    count = max(copy_rows.COPY_THRESHOLD, 3 * copy_rows.CHUNK // 2)
    with engine.transaction() as conn:
        batch = engine.insert_jobs(conn, [awkward_job(n) for n in range(count)], NOW)
        singles = [engine.insert_jobs(conn, [awkward_job(n)], NOW)[0] for n in range(count)]
    ids = [job.id for job in batch]
    assert len(set(ids)) == count
    with engine.transaction() as conn:
        for saved, single in zip(batch, singles, strict=True):
            read_batch = engine.get_job(conn, saved.id or 0)
            read_single = engine.get_job(conn, single.id or 0)
            assert read_batch is not None
            assert read_single is not None
            assert stored_fields(read_batch) == stored_fields(read_single)
            # What enqueue returned is what is stored.
            assert stored_fields(saved) == stored_fields(read_batch)


def test_ids_of_a_big_batch_follow_the_input_order_and_later_inserts_go_on_after(
    engine: Basic,
) -> None:
    with engine.transaction() as conn:
        batch = engine.insert_jobs(conn, [awkward_job(n) for n in range(200)], NOW)
        (after,) = engine.insert_jobs(conn, [awkward_job(0)], NOW)
    with engine.transaction() as conn:
        for saved in batch:
            read = engine.get_job(conn, saved.id or 0)
            assert read is not None
            assert read.args["n"] == saved.args["n"]
    ids = [job.id or 0 for job in batch]
    assert ids == sorted(ids)
    assert (after.id or 0) > ids[-1]


def test_a_batch_the_database_rejects_raises_a_database_error_and_stores_nothing(
    engine: Basic,
) -> None:
    jobs = [awkward_job(n) for n in range(300)]
    # PostgreSQL's jsonb cannot hold U+0000: the last row of the last chunk fails.
    jobs[-1].args["bad"] = "nul \x00 byte"
    with pytest.raises(DatabaseError, match="database error"), engine.transaction() as conn:
        engine.insert_jobs(conn, jobs, NOW)
    with engine.transaction() as conn:
        stored = conn.execute(sa.text(f'SELECT count(*) FROM "{engine.prefix}".oban_jobs'))
        assert stored.scalar_one() == 0


def test_copy_is_used_where_ids_may_be_given_and_insert_where_they_are_generated_always(
    engine: Basic, pg_bind: sa.Engine
) -> None:
    with engine.transaction() as conn:
        shape = engine.shape(conn)
        always = conn.execute(
            sa.text(
                "SELECT a.attidentity = 'a' FROM pg_attribute a JOIN pg_class c "
                "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relname = 'oban_jobs' AND a.attname = 'id'"
            ),
            {"s": engine.prefix},
        ).scalar_one()
    assert (shape.id_sequence is None) == always
