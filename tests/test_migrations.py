"""The Alembic revisions: install, re-run, adopt, and ship inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import oban
from oban.migrations import (
    VERSION_TABLE,
    current_revision,
    rollback,
    script_location,
    version_location,
)

ROOT = Path(__file__).resolve().parent.parent


def _columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("oban_jobs")}


def test_migrate_creates_the_jobs_table_on_sqlite(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    oban.migrate(engine)
    assert _columns(engine) == {
        "id", "state", "queue", "worker", "attempt", "max_attempts", "priority", "args",
        "meta", "tags", "errors", "attempted_by", "inserted_at", "scheduled_at",
        "attempted_at", "cancelled_at", "completed_at", "discarded_at",
    }  # fmt: skip
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("oban_jobs")}
    assert "oban_jobs_state_queue_priority_scheduled_at_id_index" in indexes
    assert "oban_jobs_staging_index" in indexes
    with engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        assert list(versions) == ["oban_0002"]
    engine.dispose()


def test_migrate_twice_is_a_no_op_and_keeps_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    instance = oban.Oban(url, testing="manual")
    instance.migrate()
    saved = instance.enqueue(oban.Job("app.jobs.Anything", args={"n": 1}))
    instance.migrate()
    again = instance.get_job(saved.id or 0)
    assert again is not None
    assert again.args == {"n": 1}
    instance.close()


def test_migrate_adopts_an_existing_jobs_table(tmp_path: Path) -> None:
    """A table made elsewhere (another tool, an earlier install) is kept as it is."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    instance = oban.Oban(url, testing="manual")
    instance.migrate()
    saved = instance.enqueue(oban.Job("app.jobs.Anything"))
    engine = instance.bind
    assert engine is not None
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    instance.migrate()
    assert instance.get_job(saved.id or 0) is not None
    instance.close()


def test_enqueue_before_migrate_says_how_to_fix_it(tmp_path: Path) -> None:
    instance = oban.Oban(f"sqlite:///{tmp_path / 'd.db'}", testing="manual")
    with pytest.raises(oban.SchemaError, match=r"run `oban\.migrate\(\)`") as caught:
        instance.enqueue(oban.Job("app.jobs.Anything"))
    assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)
    instance.close()


def test_revisions_carry_the_oban_branch_label() -> None:
    assert Path(script_location(), "env.py").is_file()
    revisions = sorted(Path(version_location()).glob("*.py"))
    assert revisions
    first = revisions[0].read_text()
    assert 'branch_labels = ("oban",)' in first


def test_the_wheel_ships_the_alembic_environment(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("oban-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "oban/_alembic/env.py" in names
    assert any(name.startswith("oban/_alembic/versions/") for name in names)
    assert "oban/py.typed" in names


@pytest.fixture(
    params=[
        pytest.param("lite", id="lite"),
        pytest.param("basic", id="basic", marks=pytest.mark.postgres),
    ]
)
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str | None]]:
    """(URL, prefix) of a database with nothing migrated: a new SQLite file or PG schema."""
    if request.param == "lite":
        yield f"sqlite:///{tmp_path / 'e.db'}", None
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"oban_m_{uuid.uuid4().hex[:12]}"
    yield url, schema
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
    engine.dispose()


def _has_jobs_table(url: str, prefix: str | None) -> bool:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).has_table("oban_jobs", schema=prefix)
    finally:
        engine.dispose()


def test_rollback_undoes_migrate_and_migrate_redoes_it(
    empty_database: tuple[str, str | None],
) -> None:
    url, prefix = empty_database
    assert current_revision(url, prefix=prefix) is None
    oban.migrate(url, prefix=prefix)
    assert current_revision(url, prefix=prefix) == "oban_0002"
    rollback(url, prefix=prefix)
    assert current_revision(url, prefix=prefix) == "oban_0001"
    assert _has_jobs_table(url, prefix)
    rollback(url, prefix=prefix)
    assert current_revision(url, prefix=prefix) is None
    assert not _has_jobs_table(url, prefix)
    oban.migrate(url, prefix=prefix, revision="oban_0001")
    assert _has_jobs_table(url, prefix)
    rollback(url, prefix=prefix, revision="base")
    assert not _has_jobs_table(url, prefix)


def test_migrate_sql_writes_the_install_without_connecting(
    empty_database: tuple[str, str | None],
) -> None:
    url, prefix = empty_database
    script = oban.migrate(url, prefix=prefix, sql=True)
    assert "CREATE TABLE" in script
    assert "CREATE INDEX oban_jobs_staging_index" in script
    assert "INSERT INTO" in script
    assert "oban_0002" in script
    assert "oban_peers" in script
    assert current_revision(url, prefix=prefix) is None
    assert not _has_jobs_table(url, prefix)


def test_the_sql_of_migrate_installs_a_working_schema_on_sqlite(tmp_path: Path) -> None:
    """What ``sql=True`` prints is runnable: applied by hand, Oban works on it."""
    url = f"sqlite:///{tmp_path / 'by_hand.db'}"
    script = oban.migrate(url, sql=True)
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        raw.driver_connection.executescript(script)  # type: ignore[union-attr]  # sqlite3 here
    finally:
        raw.close()
    engine.dispose()
    assert current_revision(url) == "oban_0002"
    instance = oban.Oban(url, testing="manual")
    saved = instance.enqueue(oban.Job("app.jobs.Anything"))
    assert instance.get_job(saved.id or 0) is not None
    instance.close()


def test_an_unknown_revision_is_a_config_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with pytest.raises(oban.ConfigError, match="nope"):
        oban.migrate(url, revision="nope")
    with pytest.raises(oban.ConfigError, match="nope"):
        oban.migrate(url, revision="nope", sql=True)
    with pytest.raises(oban.ConfigError, match="nope"):
        rollback(url, revision="nope")


def test_migrate_of_an_unreachable_server_is_a_database_error() -> None:
    with pytest.raises(oban.DatabaseError, match="migrating the Oban schema failed"):
        oban.migrate("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
