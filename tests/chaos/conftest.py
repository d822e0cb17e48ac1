"""Fixtures of the chaos suite: a private PostgreSQL server and the run's length.

Every test here is marked ``chaos``. ``.ci/run`` runs each scenario in its
bounded form (a few thousand jobs, a few faults); ``nox -s chaos -- --minutes
N`` runs each for about N minutes (:func:`chaos_minutes`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import oban
from tests.chaos.server import PrivateServer, ServerUnavailable
from tests.cluster.support import Cluster
from tests.conftest import SqlDatabase, oban_factory

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def chaos_server() -> Iterator[PrivateServer]:
    """A throwaway PostgreSQL cluster of this session's own (see ``tests/chaos/server.py``).

    Fails under ``CI=true`` when this machine cannot make one; skips elsewhere.
    """
    try:
        server = PrivateServer.create()
    except ServerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"cannot make a private PostgreSQL server (CI=true: must run): {exc}")
        pytest.skip(f"cannot make a private PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def chaos_minutes(request: pytest.FixtureRequest) -> float | None:
    """``--chaos-minutes N``: run each scenario about N minutes; None: the bounded form."""
    value = request.config.getoption("chaos_minutes")
    return None if value is None else float(value)


@pytest.fixture
def chaos_database(
    chaos_server: PrivateServer, request: pytest.FixtureRequest
) -> Iterator[SqlDatabase]:
    """A fresh migrated database on the private server, as the ``database`` fixture
    hands one out (so ``tests.cluster.support.Cluster`` spawns nodes on it).

    Its own database rather than a schema: a scenario may terminate, flood or
    pin everything on it without touching another test's.
    """
    name = f"chaos_{uuid.uuid4().hex[:10]}"
    url = chaos_server.create_database(name)
    bind = sa.create_engine(url, connect_args={"application_name": "chaos-test"})
    oban.migrate(bind)
    try:
        with oban_factory(url) as make:
            yield SqlDatabase("basic", None, bind, "oban_jobs", make)
    finally:
        bind.dispose()
        with chaos_server.admin() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def chaos_lite_database(sqlite_url: str) -> Iterator[SqlDatabase]:
    """A fresh migrated SQLite file, shaped like the ``database`` fixture's Lite param
    (so ``tests.cluster.support.Cluster`` spawns nodes on it).

    The SQLite scenarios need no server: their faults (another writer's lock, a
    full disk, a read-only connection) are the file's own.
    """
    # The timeout waits out the nodes' write lock instead of failing the test's reads.
    bind = sa.create_engine(sqlite_url, connect_args={"timeout": 30})
    try:
        with oban_factory(sqlite_url) as make:
            yield SqlDatabase("lite", None, bind, "oban_jobs", make)
    finally:
        bind.dispose()


@pytest.fixture
def cluster(chaos_database: SqlDatabase, tmp_path: Path) -> Iterator[Cluster]:
    """Node processes on :func:`chaos_database`, stopped after the test."""
    nodes = Cluster(chaos_database, tmp_path)
    try:
        yield nodes
    finally:
        nodes.close()
