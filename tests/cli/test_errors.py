"""Every bad input is one line on stderr and a non-zero exit, through the installed script."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import CliDatabase
from tests.cli.support import fails, run

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
"""A port nothing listens on: refused at once, no waiting for a timeout."""


@pytest.mark.parametrize("command", [["jobs"], ["migrate"], ["start", "-q", "default:1"]])
def test_no_database(tmp_path: Path, command: list[str]) -> None:
    line = fails(*command, cwd=tmp_path)
    assert line.endswith(
        "no database: pass --database or set OBAN_DATABASE_URL or [tool.oban] database"
    )


@pytest.mark.parametrize("url", ["nope://x", "not a url", "mysql+nodriver://h/db"])
def test_bad_url(tmp_path: Path, url: str) -> None:
    line = fails("jobs", "--database", url, cwd=tmp_path)
    assert "bad --database" in line
    assert "cannot use database URL" in line


def test_bad_url_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    line = fails("jobs", cwd=tmp_path, env={"OBAN_DATABASE_URL": "nope://x"})
    assert "bad OBAN_DATABASE_URL" in line


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("tests.cli.missing_module:oban", "no module named 'tests.cli.missing_module'"),
        ("tests.cli.app:missing", "has no attribute 'missing'"),
        ("tests.cli.app:not_an_oban", "is a str, not an Oban instance"),
        ("tests.cli.app:oban_lib", "is a module, not an Oban instance"),
        (":oban", "expected module:attribute"),
    ],
)
def test_unknown_app(lite: CliDatabase, app: str, expected: str) -> None:
    env = {"OBAN_TEST_CLI_DB": lite.url}
    line = fails("jobs", "--app", app, cwd=lite.cwd, env=env)
    assert expected in line, line
    assert "--app" in line


def test_app_defaults_to_its_oban_attribute(lite: CliDatabase) -> None:
    done = run("jobs", "--app", "tests.cli.app", cwd=lite.cwd, env={"OBAN_TEST_CLI_DB": lite.url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no jobs"


def test_app_and_database_flags_together(lite: CliDatabase) -> None:
    line = fails("jobs", "--app", "tests.cli.app:oban", *lite.flags, cwd=lite.cwd)
    assert "--app and --database" in line


def test_a_database_flag_beats_an_app_from_the_environment(lite: CliDatabase) -> None:
    done = run("jobs", *lite.flags, cwd=lite.cwd, env={"OBAN_APP": "tests.cli.missing:oban"})
    assert done.returncode == 0, done.stderr


def test_queues_flag_with_an_app_is_refused(lite: CliDatabase) -> None:
    env = {"OBAN_TEST_CLI_DB": lite.url}
    line = fails("start", "--app", "tests.cli.app:oban", "-q", "a:1", cwd=lite.cwd, env=env)
    assert "--queues does not apply with --app" in line


@pytest.mark.parametrize("command", [["jobs"], ["job", "1"], ["cancel", "--all"], ["migrate"]])
def test_unreachable_server(tmp_path: Path, command: list[str]) -> None:
    line = fails(*command, "--database", UNREACHABLE, cwd=tmp_path)
    assert "connection" in line.lower() or "refused" in line.lower(), line


def test_start_fails_fast_on_an_unreachable_server(tmp_path: Path) -> None:
    done = run("start", "--database", UNREACHABLE, "-q", "default:1", cwd=tmp_path, timeout=30)
    assert done.returncode != 0
    assert "started" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot reach" in lines[0]


@pytest.mark.parametrize(
    "command", [["jobs"], ["job", "1"], ["retry", "1"], ["start", "-q", "a:1"]]
)
def test_missing_table(blank: CliDatabase, command: list[str]) -> None:
    done = run(*command, *blank.flags, cwd=blank.cwd, timeout=30)
    assert done.returncode != 0
    assert "started" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "run `oban migrate` first" in lines[0]


@pytest.mark.parametrize(
    "queues", ["default", "default:", "default:x", ":3", "default:0", "a:1,a:2", ",", "a:-1"]
)
def test_bad_queues(lite: CliDatabase, queues: str) -> None:
    line = fails("start", *lite.flags, "--queues", queues, cwd=lite.cwd)
    assert "bad --queues" in line, line


def test_bad_queues_from_the_environment_and_pyproject(lite: CliDatabase) -> None:
    line = fails("start", *lite.flags, cwd=lite.cwd, env={"OBAN_QUEUES": "default=3"})
    assert "bad OBAN_QUEUES" in line
    (lite.cwd / "pyproject.toml").write_text("[tool.oban]\nqueues = 3\n")
    line = fails("start", *lite.flags, cwd=lite.cwd)
    assert "bad [tool.oban] queues in" in line
    assert "pyproject.toml" in line


def test_start_without_queues(lite: CliDatabase) -> None:
    line = fails("start", *lite.flags, cwd=lite.cwd)
    assert line.endswith(
        "no queues to run: pass --queues default:10 or set OBAN_QUEUES or [tool.oban] queues"
    )


def test_bad_import(lite: CliDatabase) -> None:
    line = fails("start", *lite.flags, "-q", "a:1", "--import", "tests.cli.nope", cwd=lite.cwd)
    assert "bad --import: no module named 'tests.cli.nope'" in line


@pytest.mark.parametrize("grace", ["-1", "soon", "nan", "inf"])
def test_bad_grace(lite: CliDatabase, grace: str) -> None:
    line = fails("start", *lite.flags, "-q", "a:1", "--grace", grace, cwd=lite.cwd)
    assert "bad --grace" in line


def test_broken_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.oban\n")
    assert "cannot read" in fails("jobs", cwd=tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.oban]\ndatabse = "sqlite:///x.db"\n')
    assert "unknown key(s) databse in [tool.oban]" in fails("jobs", cwd=tmp_path)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = run("jobs", "--database", "nope://x", "--debug", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    done = run("jobs", "--database", "nope://x", cwd=tmp_path, env={"OBAN_DEBUG": "1"})
    assert "Traceback (most recent call last)" in done.stderr
