"""SQLite's refusals reach the caller as :class:`oban.DatabaseError` saying what to do.

The fast twin of ``tests/chaos/test_sqlite_faults.py``: SQLite's own message
("database or disk is full") says what happened; the library adds the remedy,
and the batch that failed leaves no row.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import oban
from tests.engines.workers import Succeed

PRAGMAS = {
    "disk full": ("max_page_count = {pages}", "database or disk is full", "free space"),
    "read-only": ("query_only = ON", "readonly database", "write access"),
}


@pytest.mark.parametrize("kind", sorted(PRAGMAS))
def test_a_refused_insert_raises_an_actionable_database_error(sqlite_url: str, kind: str) -> None:
    pragma, cause, remedy = PRAGMAS[kind]
    bind = sa.create_engine(sqlite_url)

    @sa.event.listens_for(bind, "connect")
    def refuse(dbapi_connection: Any, record: object) -> None:
        (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
        dbapi_connection.execute("PRAGMA " + pragma.format(pages=int(pages)))

    instance = oban.Oban(bind)
    try:
        jobs = [Succeed.new({"pad": "x" * 4000}) for _ in range(50)]
        with pytest.raises(oban.DatabaseError) as error:
            instance.enqueue_many(jobs)
    finally:
        instance.close()
        bind.dispose()
    message = str(error.value)
    assert cause in message
    assert remedy in message
    assert isinstance(error.value.__cause__, sa.exc.DBAPIError)
    reader = sa.create_engine(sqlite_url)
    with reader.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM oban_jobs")).scalar_one() == 0
    reader.dispose()
