"""The CLI's settings in-process: precedence, parsing, pyproject discovery, help texts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from oban.cli import cli
from oban.cli.loading import choose
from oban.cli.settings import (
    ENV,
    FILE,
    FLAG,
    CliError,
    Setting,
    Sources,
    find_pyproject,
    parse_grace,
    parse_imports,
    parse_queues,
)


def _sources(tmp_path: Path, environ: dict[str, str], toml: str | None) -> Sources:
    if toml is not None:
        (tmp_path / "pyproject.toml").write_text(toml)
    return Sources.discover(environ, tmp_path)


def test_a_flag_beats_the_environment_which_beats_pyproject(tmp_path: Path) -> None:
    found = _sources(tmp_path, {"OBAN_NODE": "env"}, '[tool.oban]\nnode = "file"\nprefix = "p"\n')
    assert found.get("node", "flag") == Setting("flag", "--node", FLAG)
    assert found.get("node") == Setting("env", "OBAN_NODE", ENV)
    prefix = found.get("prefix")
    assert prefix is not None
    assert (prefix.value, prefix.rank) == ("p", FILE)
    assert str(tmp_path / "pyproject.toml") in prefix.source
    assert found.get("database") is None


def test_blank_variables_and_empty_repeatable_flags_count_as_unset(tmp_path: Path) -> None:
    found = _sources(tmp_path, {"OBAN_IMPORT": "  "}, '[tool.oban]\nimport = "a.b"\n')
    setting = found.get("import", ())
    assert setting is not None
    assert setting.rank == FILE


def test_the_nearest_pyproject_wins(tmp_path: Path) -> None:
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[tool.oban]\nnode = "outer"\n')
    assert find_pyproject(inner) == tmp_path / "pyproject.toml"
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    found = Sources.discover({}, inner)
    assert found.path == tmp_path / "a" / "pyproject.toml"
    assert found.get("node") is None  # the nearest file has no [tool.oban]: nothing above counts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("default:10,mailers:5", {"default": 10, "mailers": 5}),
        (" default : 10 , ", {"default": 10}),
        ({"default": 10, "mailers": 5}, {"default": 10, "mailers": 5}),
        (["default:1", "b:2,c:3"], {"default": 1, "b": 2, "c": 3}),
    ],
)
def test_queues_forms(value: object, expected: dict[str, int]) -> None:
    assert parse_queues(Setting(value, "--queues", FLAG)) == expected


@pytest.mark.parametrize("value", ["x", "x:0", "x:1.5", {"x": "1"}, {"x": True}, 3, "", "a:1,a:1"])
def test_bad_queues_name_the_source(value: object) -> None:
    with pytest.raises(CliError, match=r"^bad OBAN_QUEUES"):
        parse_queues(Setting(value, "OBAN_QUEUES", ENV))


def test_imports_from_flags_commas_and_lists() -> None:
    assert parse_imports(Setting(("a,b", "c", "a"), "--import", FLAG)) == ["a", "b", "c"]
    assert parse_imports(Setting("a, b", "OBAN_IMPORT", ENV)) == ["a", "b"]
    assert parse_imports(Setting(["a"], "[tool.oban] import", FILE)) == ["a"]
    assert parse_imports(None) == []
    with pytest.raises(CliError, match="expected module names"):
        parse_imports(Setting([1], "[tool.oban] import", FILE))


def test_grace() -> None:
    assert parse_grace(Setting("2.5", "--grace", FLAG)) == 2.5
    assert parse_grace(Setting(0, "[tool.oban] grace", FILE)) == 0.0
    assert parse_grace(None) is None
    for bad in ("-1", "x", True, "nan", [1]):
        with pytest.raises(CliError, match="bad --grace"):
            parse_grace(Setting(bad, "--grace", FLAG))


def test_the_more_important_source_chooses_app_or_database() -> None:
    app_env = Setting("m:oban", "OBAN_APP", ENV)
    db_flag = Setting("sqlite://", "--database", FLAG)
    db_file = Setting("sqlite://", "[tool.oban] database", FILE)
    assert choose(app_env, db_flag) is db_flag
    assert choose(app_env, db_file) is app_env
    assert choose(None, db_file) is db_file
    with pytest.raises(CliError, match="keep one"):
        choose(Setting("m:oban", "--app", FLAG), db_flag)
    with pytest.raises(CliError, match="no database"):
        choose(None, None)


@pytest.mark.parametrize(
    "command", ["migrate", "rollback", "start", "jobs", "job", "cancel", "retry", "delete"]
)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--database" in result.output


def test_bad_state_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["jobs", "--state", "nope", "-d", "sqlite://"])
    assert result.exit_code == 2
    assert "nope" in result.output
