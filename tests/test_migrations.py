"""The Alembic revisions: install, re-run, adopt, and ship inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

import oban
from oban.migrations import VERSION_TABLE, script_location, version_location

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
        assert list(versions) == ["oban_0001"]
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
