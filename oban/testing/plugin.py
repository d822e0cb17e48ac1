"""The pytest plugin of Oban: fixtures for an instance per test, and a clean registry.

Loaded by pytest through the ``pytest11`` entry point once ``oban`` is
installed. Every name it adds starts with ``oban_`` (the ``--oban-`` option
too), so it never shadows a project's own fixtures.

- ``oban_sqlite``: an ``Oban`` in manual mode on a migrated SQLite file in ``tmp_path``;
- ``oban_postgres``: the same on PostgreSQL, in a fresh schema used as its
  ``prefix`` and dropped afterwards; the URL is ``--oban-database-url``, else
  the ``OBAN_DATABASE_URL`` environment variable (the command line wins);
  without either the test is skipped, saying so;
- ``oban_inline``: an ``Oban(testing="inline")``, no database;
- ``oban_registry`` (autouse): the instances registered by name are put back
  as they were after each test, so an instance a test builds (fixtures
  included, all named ``"oban"``) never leaks into the next.

Each instance is closed after its test; one left running is stopped first.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import sqlalchemy as sa

from oban import _registry
from oban.errors import NotRunningError
from oban.migrations import migrate
from oban.oban import Oban

__all__ = [
    "oban_inline",
    "oban_postgres",
    "oban_registry",
    "oban_sqlite",
    "pytest_addoption",
]

URL_OPTION = "--oban-database-url"
URL_ENV = "OBAN_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("oban", "Oban background jobs")
    group.addoption(
        URL_OPTION,
        dest="oban_database_url",
        default=None,
        help=f"PostgreSQL URL for the oban_postgres fixture (default: ${URL_ENV})",
    )


def _database_url(config: pytest.Config) -> str | None:
    """The PostgreSQL URL: the command line first, then the environment."""
    given = config.getoption("oban_database_url")
    return str(given) if given else os.environ.get(URL_ENV) or None


def _closed(instance: Oban) -> None:
    """Stop (if started with ``start()``) and close an instance a fixture made."""
    # NotRunningError: never started, or started with start_async() (its own
    # event loop must stop it). A runtime that died raises its error here.
    with suppress(NotRunningError):
        instance.stop(grace=0)
    instance.close()


@pytest.fixture(autouse=True)
def oban_registry() -> Iterator[None]:
    """Put the registry of named instances back as it was before the test."""
    saved = dict(_registry._instances)
    yield
    _registry.clear()
    for name, instance in saved.items():
        _registry.register(name, instance)


@pytest.fixture
def oban_sqlite(tmp_path: Path) -> Iterator[Oban]:
    """An Oban named ``"oban"`` in manual mode on a fresh, migrated SQLite file."""
    instance = Oban(f"sqlite:///{tmp_path / 'oban.db'}", testing="manual")
    instance.migrate()
    yield instance
    _closed(instance)


@pytest.fixture
def oban_inline() -> Iterator[Oban]:
    """An Oban named ``"oban"`` with ``testing="inline"``: jobs run inside ``enqueue``."""
    instance = Oban(testing="inline")
    yield instance
    _closed(instance)


@pytest.fixture
def oban_postgres(request: pytest.FixtureRequest) -> Iterator[Oban]:
    """An Oban named ``"oban"`` in manual mode in a fresh PostgreSQL schema (dropped after)."""
    url = _database_url(request.config)
    if url is None:
        pytest.skip(f"oban_postgres needs a PostgreSQL URL: pass {URL_OPTION}=... or set {URL_ENV}")
    schema = f"oban_test_{uuid.uuid4().hex[:12]}"
    bind = sa.create_engine(url)
    try:
        migrate(bind, prefix=schema)
        instance = Oban(bind, prefix=schema, testing="manual")
        try:
            yield instance
        finally:
            _closed(instance)
    finally:
        with bind.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
        bind.dispose()
