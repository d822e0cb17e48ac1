"""Fixtures of the CLI tests: a database (SQLite file or PostgreSQL schema) as flags."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from tests.conftest import oban_factory


@dataclass
class CliDatabase:
    """Where one test's jobs are, as the flags that point ``oban`` there."""

    url: str
    prefix: str | None
    cwd: Path
    """The directory ``oban`` runs in: the test's own, with no pyproject.toml."""
    make_oban: Callable[..., oban.Oban]

    @property
    def flags(self) -> list[str]:
        return ["--database", self.url, *(["--prefix", self.prefix] if self.prefix else [])]

    @property
    def env(self) -> dict[str, str]:
        """The same as environment variables."""
        env = {"OBAN_DATABASE_URL": self.url}
        if self.prefix:
            env["OBAN_PREFIX"] = self.prefix
        return env


@pytest.fixture
def blank_sqlite(tmp_path: Path) -> str:
    """A SQLite URL of a file that does not exist yet (nothing migrated)."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def blank_schema(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema name nothing was migrated into; dropped after the test."""
    name = f"oban_cli_{uuid.uuid4().hex[:12]}"
    yield name
    bind = sa.create_engine(postgres_url)
    with bind.begin() as conn:
        conn.execute(sa.schema.DropSchema(name, cascade=True, if_exists=True))
    bind.dispose()


@pytest.fixture(
    params=[
        pytest.param("lite", id="lite"),
        pytest.param("basic", id="basic", marks=pytest.mark.postgres),
    ]
)
def blank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CliDatabase]:
    """An empty database, SQLite or a PostgreSQL schema, for the schema commands."""
    if request.param == "lite":
        url, prefix = request.getfixturevalue("blank_sqlite"), None
    else:
        url, prefix = (
            request.getfixturevalue("postgres_url"),
            request.getfixturevalue("blank_schema"),
        )
    options: dict[str, Any] = {} if prefix is None else {"prefix": prefix}
    with oban_factory(url, **options) as make:
        yield CliDatabase(url, prefix, tmp_path, make)


@pytest.fixture
def migrated(blank: CliDatabase) -> CliDatabase:
    """:func:`blank` with the Oban tables installed (by the library, not the CLI)."""
    oban.migrate(blank.url, prefix=blank.prefix)
    return blank


@pytest.fixture
def lite(tmp_path: Path, blank_sqlite: str) -> Iterator[CliDatabase]:
    """A migrated SQLite file only: for the commands tested on SQLite alone."""
    oban.migrate(blank_sqlite)
    with oban_factory(blank_sqlite) as make:
        yield CliDatabase(blank_sqlite, None, tmp_path, make)
