"""The pytest plugin, run inside pytest by ``pytester``: fixtures, option, registry."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USES_SQLITE = """
from oban import Job, worker
from oban.testing import assert_enqueued, drain_queue

@worker(queue="q")
class Greet:
    def process(self, job: Job) -> None:
        return None

def test_sqlite(oban_sqlite):
    assert oban_sqlite.testing == "manual"
    Greet.enqueue({"name": "ada"})
    assert_enqueued(worker=Greet, args={"name": "ada"})
    assert drain_queue(queue="q")["completed"] == 1
"""

USES_INLINE = """
from oban import Job, JobState, worker

@worker()
class Greet:
    def process(self, job: Job) -> None:
        return None

def test_inline(oban_inline):
    assert Greet.enqueue({}).state is JobState.COMPLETED
"""

USES_POSTGRES = """
from oban import Job, worker
from oban.testing import drain_queue, refute_enqueued

@worker()
class Greet:
    def process(self, job: Job) -> None:
        return None

def test_postgres(oban_postgres):
    assert oban_postgres.prefix.startswith("oban_test_")
    Greet.enqueue({})
    assert drain_queue(queue="default")["completed"] == 1
    refute_enqueued()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the inner session with warnings as errors, as this repository runs its own."""
    return pytester.runpytest("-W", "error", "-p", "no:cacheprovider", *args)


def test_oban_sqlite_is_a_manual_instance_on_a_migrated_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_SQLITE)
    run(pytester).assert_outcomes(passed=1)


def test_oban_inline_runs_jobs_at_enqueue(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_INLINE)
    run(pytester).assert_outcomes(passed=1)


def test_oban_postgres_skips_with_a_reason_without_a_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OBAN_DATABASE_URL", raising=False)
    pytester.makepyfile(USES_POSTGRES)
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--oban-database-url*OBAN_DATABASE_URL*"])


def test_oban_postgres_uses_the_command_line_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv("OBAN_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    pytester.makepyfile(USES_POSTGRES)
    run(pytester, f"--oban-database-url={postgres_url}").assert_outcomes(passed=1)


def test_oban_postgres_falls_back_to_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv("OBAN_DATABASE_URL", postgres_url)
    pytester.makepyfile(USES_POSTGRES)
    run(pytester).assert_outcomes(passed=1)


def test_the_schema_is_dropped_after_the_test(pytester: pytest.Pytester, postgres_url: str) -> None:
    pytester.makepyfile(
        """
        import sqlalchemy as sa

        SEEN = []

        def test_uses(oban_postgres):
            SEEN.append(oban_postgres.prefix)

        def test_gone(pytestconfig):
            bind = sa.create_engine(pytestconfig.getoption("oban_database_url"))
            with bind.connect() as conn:
                names = sa.inspect(conn).get_schema_names()
            bind.dispose()
            assert SEEN and SEEN[0] not in names
        """
    )
    run(pytester, f"--oban-database-url={postgres_url}").assert_outcomes(passed=2)


def test_the_registry_is_restored_after_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from oban import InstanceNotFoundError, Oban

        def test_makes_one():
            Oban(testing="inline", name="leaky")
            assert Oban.get_instance("leaky")

        def test_finds_none():
            with pytest.raises(InstanceNotFoundError):
                Oban.get_instance("leaky")
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_a_project_fixture_of_the_same_kind_is_not_shadowed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def database():
            return "the project's own"
        """
    )
    pytester.makepyfile(
        """
        def test_own(database, oban_inline):
            assert database == "the project's own"
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_the_plugin_loads_in_a_fresh_process_without_warnings(pytester: pytest.Pytester) -> None:
    """Assert rewriting is registered before the helpers are imported: no
    PytestAssertRewriteWarning, which ``-W error`` would turn into a failure."""
    pytester.makepyfile(
        """
        import sys

        def test_rewritten(oban_inline):
            import oban.testing._enqueued as helpers
            assert "_pytest.assertion.rewrite" in type(helpers.__loader__).__module__
            assert "oban.testing.plugin" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
