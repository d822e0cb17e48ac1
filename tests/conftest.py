"""Shared fixtures: event-loop backends, databases, and a deadline-based waiter."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from oban import _registry

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/oban_test"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-minutes",
        dest="chaos_minutes",
        default=None,
        help="run each chaos scenario (tests/chaos) for about this many minutes; "
        "without it, their bounded form",
    )


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs under asyncio and under trio."""
    return str(request.param)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file with the Oban schema migrated in."""
    url = f"sqlite:///{tmp_path / 'oban.db'}"
    engine = sa.create_engine(url)
    oban.migrate(engine)
    engine.dispose()
    return url


def postgres_url_or_skip() -> str:
    """The test PostgreSQL URL; a missing server fails under CI=true, else skips."""
    url = os.environ.get("OBAN_TEST_DATABASE_URL", DEFAULT_PG_URL)
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        message = f"PostgreSQL not reachable at {url}: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI=true: a missing database is a failure)")
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL URL (see :func:`postgres_url_or_skip`)."""
    return postgres_url_or_skip()


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str = "",
) -> object:
    """Poll ``condition`` until truthy; fail the test at the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {message or condition}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _fresh_instances() -> Iterator[None]:
    """Each test starts without Oban instances left over from another."""
    yield
    _registry.clear()


@contextmanager
def oban_factory(url: str, **defaults: Any) -> Iterator[Callable[..., oban.Oban]]:
    """Build ``Oban`` instances on ``url``; any left running are stopped and every
    pool is closed afterwards (a failed test must not leak threads or connections)."""
    made: list[oban.Oban] = []

    def make(**options: Any) -> oban.Oban:
        instance = oban.Oban(url, **{**defaults, **options})
        made.append(instance)
        return instance

    yield make
    for instance in made:
        # NotRunningError: never started, or started with start_async(), not
        # start(); its own event loop stops it (``async with`` does), this thread
        # cannot. A runtime that died raises its error here, failing the test.
        with suppress(oban.NotRunningError):
            instance.stop(grace=0)
        instance.close()


@dataclass
class SqlDatabase:
    """One test's migrated database, as the ``database`` fixture hands it out."""

    kind: str
    """The param id: ``"lite"`` (a SQLite file) or ``"basic"`` (a PostgreSQL schema)."""
    prefix: str | None
    """The PostgreSQL schema the Oban tables are in (the Oban ``prefix``); None on SQLite."""
    bind: sa.Engine
    """A SQLAlchemy engine of the test's own, for its own SQL (reading rows, transactions)."""
    jobs_table: str
    """The jobs table, quoted for the test's own SQL: ``oban_jobs`` or ``"<prefix>".oban_jobs``."""
    make_oban: Callable[..., oban.Oban]
    """Build an ``Oban`` on this database: ``oban_options``, then the keyword arguments given."""


@pytest.fixture
def oban_options() -> dict[str, Any]:
    """Default options of the instances ``database.make_oban()`` builds: none.

    A test module (or class) that wants others, such as short poll and stage
    intervals, overrides this fixture.
    """
    return {}


@pytest.fixture(
    params=[
        pytest.param("lite", id="lite"),
        pytest.param("basic", id="basic", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, oban_options: dict[str, Any]) -> Iterator[SqlDatabase]:
    """Runs the test on Lite and on Basic: a fresh migrated SQLite file, or a fresh
    migrated PostgreSQL schema used as the Oban ``prefix`` (dropped after the test).

    Instances built with ``make_oban`` are stopped (if still running) and closed
    after the test, before the schema is dropped. Basic skips without a server
    (fails under ``CI=true``).
    """
    prefix: str | None = None
    own_bind: sa.Engine | None = None
    if request.param == "lite":
        url: str = request.getfixturevalue("sqlite_url")
        # The timeout waits out a running instance's write lock instead of failing.
        bind = own_bind = sa.create_engine(url, connect_args={"timeout": 30})
        jobs_table = "oban_jobs"
    else:
        from tests.postgres.support import fresh_schema, table

        schema = fresh_schema(request)  # its finalizer drops the schema after this teardown
        assert schema.prefix is not None
        url, prefix, bind = request.getfixturevalue("postgres_url"), schema.prefix, schema.bind
        jobs_table = table(prefix)
    defaults = oban_options if prefix is None else {"prefix": prefix, **oban_options}
    with oban_factory(url, **defaults) as make:
        yield SqlDatabase(request.param, prefix, bind, jobs_table, make)
    if own_bind is not None:
        own_bind.dispose()


@pytest.fixture
def forget_seen() -> Iterator[None]:
    """Forget the runs ``tests.postgres.workers`` recorded in other tests: every
    fresh database numbers its jobs from 1, so an old run would look like a new one."""
    from tests.postgres.workers import SEEN

    SEEN.reset()
    yield
    SEEN.reset()
