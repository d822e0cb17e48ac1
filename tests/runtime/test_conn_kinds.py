"""What ``conn=`` accepts: a ``scoped_session`` (Flask-SQLAlchemy's ``db.session``)
joins the session of the current scope like a plain Session; anything else is
refused with a message naming the type it got and the kinds it takes.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import scoped_session, sessionmaker

from tests.conftest import SqlDatabase
from tests.postgres.workers import Note


def _stored(database: SqlDatabase, job_id: int | None) -> int:
    with database.bind.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM {database.jobs_table} WHERE id = :id")
        return int(conn.execute(query, {"id": job_id}).scalar_one())


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_scoped_session_joins_the_current_session(database: SqlDatabase, outcome: str) -> None:
    instance = database.make_oban()
    session = scoped_session(sessionmaker(database.bind))
    try:
        job = instance.enqueue(Note.new({"n": 1}), conn=session)
        assert _stored(database, job.id) == 0  # not committed yet
        getattr(session, outcome)()
        assert _stored(database, job.id) == (1 if outcome == "commit" else 0)
    finally:
        session.remove()


@pytest.mark.anyio
async def test_a_scoped_session_in_async_code_joins_it_too(database: SqlDatabase) -> None:
    instance = database.make_oban()
    session = scoped_session(sessionmaker(database.bind))
    try:
        job = await instance.enqueue_async(Note.new({"n": 2}), conn=session)
        await anyio.to_thread.run_sync(session().commit)  # the session of this scope
        assert _stored(database, job.id) == 1
    finally:
        session.remove()


@pytest.mark.parametrize("conn", [object(), "postgresql://", 42], ids=["object", "str", "int"])
def test_a_conn_of_another_kind_names_what_it_got_and_what_is_accepted(
    database: SqlDatabase, conn: Any
) -> None:
    instance = database.make_oban()
    kind = f"{type(conn).__module__}.{type(conn).__qualname__}"
    with pytest.raises(TypeError, match=r"conn must be a SQLAlchemy Session, scoped_session") as e:
        instance.enqueue(Note.new({}), conn=conn)
    assert kind in str(e.value)
    assert "db.session" in str(e.value)
