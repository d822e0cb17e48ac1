"""Oban(...) rejects bad options at construction, naming the option; instances by name."""

from __future__ import annotations

from typing import Any

import pytest

from oban import ConfigError, Inline, InstanceNotFoundError, Oban, ObanError


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, ObanError)


@pytest.mark.parametrize("queues", [["default"], "default", 10, ("default", 10)], ids=repr)
def test_queues_must_be_a_dict(queues: Any) -> None:
    with pytest.raises(ConfigError, match="queues must be a dict"):
        Oban(testing="inline", queues=queues)


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10", None, True, False], ids=repr)
def test_queue_limit_must_be_a_positive_int(limit: Any) -> None:
    with pytest.raises(ConfigError, match=r"queue 'mailers' needs a limit of at least 1"):
        Oban(testing="inline", queues={"default": 10, "mailers": limit})


@pytest.mark.parametrize("name", ["", "   ", 5, None], ids=repr)
def test_queue_names_must_be_non_blank_strings(name: Any) -> None:
    with pytest.raises(ConfigError, match="queue names must be non-blank strings"):
        Oban(testing="inline", queues={name: 10})


def test_valid_queues_are_kept() -> None:
    instance = Oban(testing="inline", queues={"default": 10, "mailers": 1})
    assert instance.queues == {"default": 10, "mailers": 1}


def test_no_queues_is_fine() -> None:
    assert Oban(testing="inline").queues == {}


@pytest.mark.parametrize("testing", ["bogus", "INLINE", True, ""], ids=repr)
def test_unknown_testing_mode(testing: Any) -> None:
    with pytest.raises(ConfigError, match=r"testing must be one of \('inline', 'manual'\)"):
        Oban(testing=testing)


@pytest.mark.parametrize("backend", ["curio", "", None], ids=repr)
def test_unknown_backend(backend: Any) -> None:
    with pytest.raises(ConfigError, match=r"backend must be one of \('asyncio', 'trio'\)"):
        Oban(testing="inline", backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_known_backends(backend: Any) -> None:
    assert Oban(testing="inline", backend=backend).backend == backend


@pytest.mark.parametrize("interval", [0, -1, -0.5, "1", None, True], ids=repr)
def test_poll_interval_must_be_positive_seconds(interval: Any) -> None:
    with pytest.raises(ConfigError, match="poll_interval must be"):
        Oban(testing="inline", poll_interval=interval)


@pytest.mark.parametrize("interval", [0, -1], ids=repr)
def test_stage_interval_must_be_positive_seconds(interval: Any) -> None:
    with pytest.raises(ConfigError, match="stage_interval must be > 0 seconds"):
        Oban(testing="inline", stage_interval=interval)


def test_shutdown_grace_may_be_zero_but_not_negative() -> None:
    Oban(testing="inline", shutdown_grace=0)
    with pytest.raises(ConfigError, match="shutdown_grace must be >= 0 seconds"):
        Oban(testing="inline", shutdown_grace=-1)


@pytest.mark.parametrize("name", ["", None, 5], ids=repr)
def test_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        Oban(testing="inline", name=name)


def test_no_bind_and_no_testing_mode() -> None:
    with pytest.raises(
        ConfigError, match="Oban needs a database: pass a SQLAlchemy Engine or a URL"
    ):
        Oban()


def test_manual_testing_still_needs_a_database() -> None:
    with pytest.raises(ConfigError, match="Oban needs a database"):
        Oban(testing="manual")


@pytest.mark.parametrize("bind", [42, object(), b"sqlite://"], ids=repr)
def test_bind_of_a_wrong_type(bind: Any) -> None:
    with pytest.raises(ConfigError, match="bind must be a SQLAlchemy Engine or a URL string"):
        Oban(bind)


def test_unsupported_dialect_url() -> None:
    # Either the MySQL driver is missing or there is no Oban engine for MySQL:
    # both are configuration errors that name the URL or the dialect.
    with pytest.raises(ConfigError, match="mysql"):
        Oban("mysql://u@h/db")


def test_malformed_url() -> None:
    with pytest.raises(ConfigError, match="cannot use database URL 'not a url'"):
        Oban("not a url")


def test_failed_construction_registers_nothing() -> None:
    with pytest.raises(ConfigError):
        Oban(testing="inline", name="broken", queues={"q": 0})
    with pytest.raises(InstanceNotFoundError):
        Oban.get_instance("broken")


# -- testing="inline" and instances ---------------------------------------------------------


def test_inline_testing_needs_no_bind() -> None:
    instance = Oban(testing="inline")
    assert instance.bind is None
    assert isinstance(instance.engine, Inline)
    assert instance.testing == "inline"
    assert instance.name == "oban"


def test_get_instance_finds_by_name() -> None:
    default = Oban(testing="inline")
    other = Oban(testing="inline", name="reports")
    assert Oban.get_instance() is default
    assert Oban.get_instance("oban") is default
    assert Oban.get_instance("reports") is other


def test_get_instance_missing_is_actionable() -> None:
    with pytest.raises(
        InstanceNotFoundError,
        match=r"no Oban instance named 'missing': create one with Oban\(\.\.\., name='missing'\)",
    ):
        Oban.get_instance("missing")


def test_a_second_instance_with_the_same_name_replaces_the_first() -> None:
    first = Oban(testing="inline", name="shared")
    second = Oban(testing="inline", name="shared")
    assert first is not second
    assert Oban.get_instance("shared") is second


# -- cron and timezone ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cron", [[("* * * * *", "app.Worker")], {"* * * * *": "app.Worker"}, "* * * * *"], ids=repr
)
def test_a_cron_table_that_is_not_a_list_of_worker_entries_is_refused(cron: Any) -> None:
    with pytest.raises(ConfigError, match=r"cron"):
        Oban(testing="inline", cron=cron)


@pytest.mark.parametrize("cron", [None, [], ()], ids=repr)
def test_no_cron_is_fine(cron: Any) -> None:
    assert Oban(testing="inline", cron=cron).name == "oban"


def test_an_unknown_timezone_is_refused_quoting_it() -> None:
    with pytest.raises(ConfigError, match=r"'Europe/Pariss'"):
        Oban(testing="inline", timezone="Europe/Pariss")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("leader_lease", 0),
        ("rescue_after", -1),
        ("prune", "a minute"),
        ("prune_limit", 0),
        ("prune_interval", float("nan")),
        ("cron_catch_up", -5),
    ],
)
def test_bad_many_node_options_are_refused_naming_them(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Oban(testing="inline", **{option: value})
