"""Shared fixtures: event-loop backends, databases, and a deadline-based waiter."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import oban
from oban import _registry

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/oban_test"


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
        if instance.is_running and instance._portal is not None:
            instance.stop(grace=0)
        instance.close()
