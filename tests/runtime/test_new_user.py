"""What a new user hit, each fixed: async URLs, a start against a missing table or
server, closed or replaced instances, workers in ``__main__``, NaN in args, and
the README's demo command itself.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Literal

import pytest

from oban import (
    ConfigError,
    DatabaseError,
    InstanceNotFoundError,
    Job,
    JobValidationError,
    Oban,
    SchemaError,
    Worker,
    worker,
)
from tests.runtime.workers import Complete

REPO = Path(__file__).resolve().parents[2]


# -- async URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite+aiosqlite:///{dir}/a.db", "sqlite"),
        ("postgresql+asyncpg://u@127.0.0.1/db", "postgresql+psycopg"),
        ("postgresql+psycopg_async://u@127.0.0.1/db", "postgresql+psycopg"),
        ("postgresql://u@127.0.0.1/db", "postgresql+psycopg"),
    ],
)
def test_an_async_url_is_mapped_to_the_sync_driver(tmp_path: Path, url: str, driver: str) -> None:
    instance = Oban(url.format(dir=tmp_path))
    try:
        assert instance.bind is not None
        assert instance.bind.url.drivername == driver
    finally:
        instance.close()


def test_an_async_engine_is_refused_with_the_url_to_pass() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async_engine = create_async_engine("postgresql+psycopg://u@127.0.0.1/db")  # never connects
    with pytest.raises(ConfigError, match="bind is an AsyncEngine; Oban needs a sync one"):
        Oban(async_engine)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"async driver 'psycopg'.*pass the URL string"):
        Oban(async_engine.sync_engine)
    async_engine.sync_engine.dispose()


# -- start fails fast ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_start_without_the_table_fails_at_once_saying_to_migrate(
    tmp_path: Path, backend: Literal["asyncio", "trio"]
) -> None:
    instance = Oban(f"sqlite:///{tmp_path}/empty.db", queues={"default": 1}, backend=backend)
    try:
        with pytest.raises(SchemaError, match=r"run `oban.migrate\(\)`"):
            instance.start()
        assert not instance.is_running
    finally:
        instance.close()


@pytest.mark.anyio
async def test_start_async_without_the_table_fails_at_once(tmp_path: Path) -> None:
    instance = Oban(f"sqlite:///{tmp_path}/empty.db", queues={"default": 1})
    try:
        with pytest.raises(SchemaError, match="an Oban table is missing"):
            await instance.start_async()
        assert not instance.is_running
    finally:
        instance.close()


def test_start_against_an_unreachable_server_fails_at_once() -> None:
    pytest.importorskip("psycopg")
    instance = Oban("postgresql+psycopg://postgres@127.0.0.1:1/none", queues={"default": 1})
    try:
        with pytest.raises(DatabaseError, match="database error"):
            instance.start()
        assert not instance.is_running
    finally:
        instance.close()


# -- the instance registry ------------------------------------------------------------------------


def test_a_closed_instance_is_no_longer_found_by_workers(sqlite_url: str) -> None:
    instance = Oban(sqlite_url, testing="manual")
    assert Complete.enqueue({}).id is not None
    instance.close()
    with pytest.raises(InstanceNotFoundError, match="no Oban instance named 'oban'"):
        Complete.enqueue({})


def test_closing_an_instance_that_was_replaced_keeps_the_new_one(sqlite_url: str) -> None:
    old = Oban(sqlite_url, testing="manual")
    new = Oban(sqlite_url, testing="manual")
    old.close()
    assert Oban.get_instance() is new
    new.close()


def test_replacing_a_registered_instance_is_logged(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oban")
    first = Oban(sqlite_url, testing="manual", name="billing")
    second = Oban(sqlite_url, testing="manual", name="billing")
    try:
        replaced = [r.getMessage() for r in caplog.records if "replaces" in r.getMessage()]
        assert len(replaced) == 1
        assert "as the one named 'billing'" in replaced[0]
        assert "close() the old one first" in replaced[0]
    finally:
        first.close()
        second.close()


# -- workers in __main__ --------------------------------------------------------------------------


def _main_worker() -> type[Worker]:
    class InMain(Worker):
        def process(self, job: Job) -> None:
            return None

    InMain.__module__ = "__main__"
    InMain.__qualname__ = f"InMain{uuid.uuid4().hex[:8]}"  # a fresh name: warned once each
    return worker()(InMain)


def _main_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "defined in __main__" in r.getMessage()]


def test_a_worker_in_main_is_warned_about_once_at_enqueue(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oban")
    in_main = _main_worker()
    instance = Oban(sqlite_url, testing="manual")
    try:
        instance.enqueue(in_main.new({}))
        instance.enqueue_many([in_main.new({}), in_main.new({})])
        (message,) = _main_warnings(caplog)
        assert in_main.__oban_worker__.name in message
        assert "Move it into an importable module" in message
    finally:
        instance.close()


def test_a_worker_in_main_is_fine_inline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="oban")
    Oban(testing="inline").enqueue(_main_worker().new({}))
    assert _main_warnings(caplog) == []


# -- args that JSON would change ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ({"ratio": float("nan")}, r"args\['ratio'\] is nan"),
        ({"limits": [1.0, float("inf")]}, r"args\['limits'\]\[1\] is inf"),
        ({"deep": {"x": (float("-inf"),)}}, r"args\['deep'\]\['x'\]\[0\] is -inf"),
    ],
)
def test_nan_and_infinity_in_args_are_refused_naming_where(
    args: dict[str, object], where: str
) -> None:
    with pytest.raises(JobValidationError, match=where + ": JSON has no NaN or infinity"):
        Complete.new(args)


def test_nan_in_meta_is_refused_too() -> None:
    with pytest.raises(JobValidationError, match=r"meta\['score'\] is nan"):
        Complete.new({}, meta={"score": float("nan")})


def test_values_json_converts_are_converted_as_the_error_says() -> None:
    class Colour(Enum):
        RED = "red"

    key = uuid.UUID(int=1)
    job = Complete.new(
        {
            "at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            "on": date(2030, 1, 2),
            "id": key,
            "colour": Colour.RED,
            "none": None,
        }
    )
    assert job.args == {
        "at": "2030-01-02T03:04:05+00:00",
        "on": "2030-01-02",
        "id": str(key),
        "colour": "red",
        "none": None,
    }
    with pytest.raises(JobValidationError, match="datetime/date/time become ISO 8601 strings"):
        Complete.new({"x": object()})
