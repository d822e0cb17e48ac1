"""The ``cluster`` fixture: node processes on the test's database (Lite or Basic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.support import Cluster
from tests.conftest import SqlDatabase


@pytest.fixture
def cluster(database: SqlDatabase, tmp_path: Path) -> Iterator[Cluster]:
    """Spawns nodes on ``database``; every node still running is killed after the
    test (before the database fixture drops the schema)."""
    nodes = Cluster(database, tmp_path)
    try:
        yield nodes
    finally:
        nodes.close()
