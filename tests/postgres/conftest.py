"""PostgreSQL fixtures: every test gets its own schema, so tests never see each other's jobs.

The schema is the Oban ``prefix``: ``oban.migrate(bind, prefix=schema)``
installs the tables and the ``oban_job_state`` enum there, and
``Oban(url, prefix=schema)`` works in it. It is dropped after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

import oban
from oban import Oban
from tests.conftest import oban_factory


@pytest.fixture
def pg_bind(postgres_url: str) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the test database, for the test's own queries."""
    bind = sa.create_engine(postgres_url)
    yield bind
    bind.dispose()


@pytest.fixture
def pg_schema(pg_bind: sa.Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema name, dropped (with all in it) after the test."""
    name = f"oban_t_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_bind.begin() as conn:
        conn.execute(sa.schema.DropSchema(name, cascade=True, if_exists=True))


@pytest.fixture
def pg_prefix(pg_bind: sa.Engine, pg_schema: str) -> str:
    """A fresh schema with the Oban tables migrated into it."""
    oban.migrate(pg_bind, prefix=pg_schema)
    return pg_schema


@pytest.fixture(autouse=True)
def _seen(forget_seen: None) -> None:
    """Every PostgreSQL test starts with no runs recorded (see ``forget_seen``)."""


@pytest.fixture
def make_oban(postgres_url: str, pg_prefix: str) -> Iterator[Callable[..., Oban]]:
    """Build ``Oban`` instances in the test's schema; pools are closed after the test."""
    with oban_factory(postgres_url, prefix=pg_prefix) as make:
        yield make
