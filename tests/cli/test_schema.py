"""``oban migrate`` and ``oban rollback`` via the script, on SQLite and PostgreSQL."""

from __future__ import annotations

import oban
from oban.migrations import current_revision
from tests.cli.conftest import CliDatabase
from tests.cli.support import fails, ok, run


def test_migrate_installs_then_is_a_no_op(blank: CliDatabase) -> None:
    first = ok("migrate", *blank.flags, cwd=blank.cwd)
    assert "from nothing to oban_0002" in first
    assert current_revision(blank.url, prefix=blank.prefix) == "oban_0002"
    again = ok("migrate", *blank.flags, cwd=blank.cwd)
    assert "already at oban_0002" in again


def test_migrate_takes_the_database_from_the_environment(blank: CliDatabase) -> None:
    ok("migrate", cwd=blank.cwd, env=blank.env)
    assert current_revision(blank.url, prefix=blank.prefix) == "oban_0002"


def test_migrate_sql_prints_the_install_and_runs_nothing(blank: CliDatabase) -> None:
    script = ok("migrate", "--sql", *blank.flags, cwd=blank.cwd)
    assert "CREATE TABLE" in script
    assert "oban_jobs" in script
    assert "oban_alembic_version" in script
    if blank.prefix:
        assert f"CREATE SCHEMA IF NOT EXISTS {blank.prefix}" in script
        assert f"{blank.prefix}.oban_jobs" in script
    assert current_revision(blank.url, prefix=blank.prefix) is None


def test_migrate_to_an_unknown_revision_is_one_line(blank: CliDatabase) -> None:
    line = fails("migrate", "--revision", "nope", *blank.flags, cwd=blank.cwd)
    assert "nope" in line


def test_rollback_to_base_removes_the_tables_and_jobs(migrated: CliDatabase) -> None:
    made = migrated.make_oban()
    made.enqueue(oban.Job("app.Anything"))
    out = ok("rollback", "--yes", "--revision", "base", *migrated.flags, cwd=migrated.cwd)
    assert "from oban_0002 to nothing" in out
    assert current_revision(migrated.url, prefix=migrated.prefix) is None
    line = fails("jobs", *migrated.flags, cwd=migrated.cwd)
    assert "run `oban migrate`" in line


def test_rollback_goes_down_one_revision_by_default(migrated: CliDatabase) -> None:
    ok("rollback", "--yes", *migrated.flags, cwd=migrated.cwd)
    assert current_revision(migrated.url, prefix=migrated.prefix) == "oban_0001"
    ok("rollback", "--yes", *migrated.flags, cwd=migrated.cwd)
    assert current_revision(migrated.url, prefix=migrated.prefix) is None
    nothing = ok("rollback", "--yes", *migrated.flags, cwd=migrated.cwd)
    assert "nothing to roll back" in nothing


def test_rollback_asks_first_and_a_no_changes_nothing(migrated: CliDatabase) -> None:
    done = run("rollback", *migrated.flags, cwd=migrated.cwd, stdin="n\n")
    assert done.returncode != 0
    assert "drops the jobs table" in done.stderr
    assert current_revision(migrated.url, prefix=migrated.prefix) == "oban_0002"
    done = run("rollback", *migrated.flags, cwd=migrated.cwd, stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert current_revision(migrated.url, prefix=migrated.prefix) == "oban_0001"
