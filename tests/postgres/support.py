"""Helpers for the PostgreSQL tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread
import pytest
import sqlalchemy as sa

import oban
from oban.engines.basic import Basic


def table(prefix: str) -> str:
    """``"prefix".oban_jobs``, quoted, for the tests' own SQL (prefix is ours, not user input)."""
    return f'"{prefix}".oban_jobs'


async def wait_async(condition: Callable[[], object], *, deadline: float = 20.0) -> None:
    """Async twin of ``tests.conftest.wait_for``: poll ``condition`` in a thread (it may
    query the database) without blocking the event loop; fail at the deadline."""
    with anyio.move_on_after(deadline):
        while not await anyio.to_thread.run_sync(condition):  # noqa: ASYNC110 - polling the database
            await anyio.sleep(0.02)
        return
    pytest.fail(f"condition not met within {deadline}s: {condition}")


async def wait_async_for(
    condition: Callable[[], Awaitable[object]], *, deadline: float = 20.0
) -> None:
    """Like :func:`wait_async` for an async condition (an AsyncSession query)."""
    with anyio.move_on_after(deadline):
        while not await condition():  # noqa: ASYNC110 - polling the database
            await anyio.sleep(0.02)
        return
    pytest.fail(f"condition not met within {deadline}s: {condition}")


def fresh_schema(request: pytest.FixtureRequest) -> Basic:
    """A Basic engine in a new, migrated schema, dropped when the test ends.

    The conformance suite's factory (``tests/engines/conftest.py``) and the
    ``database`` fixture (``tests/conftest.py``) call this.
    """
    url = request.getfixturevalue("postgres_url")  # skips (or fails under CI) without a server
    schema = f"oban_c_{uuid.uuid4().hex[:12]}"
    bind = sa.create_engine(url)
    oban.migrate(bind, prefix=schema)

    def drop() -> None:
        with bind.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
        bind.dispose()

    request.addfinalizer(drop)
    return Basic(bind, prefix=schema)
