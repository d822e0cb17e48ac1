"""Fixtures for the runtime tests: fresh side-effect records, Oban instances closed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from oban import Oban
from tests.conftest import oban_factory
from tests.runtime.workers import EFFECTS, GATE, Effects

FAST = {"poll_interval": 0.05, "stage_interval": 0.05}
"""Short intervals so polling and staging never make a test wait long."""


@pytest.fixture(autouse=True)
def effects() -> Iterator[Effects]:
    EFFECTS.reset()
    GATE.clear()
    yield EFFECTS
    GATE.set()  # a gated job left running must not hold its thread after the test
    EFFECTS.reset()


@pytest.fixture
def make_oban(sqlite_url: str) -> Iterator[Callable[..., Oban]]:
    """Build ``Oban`` instances on the test's SQLite file; their pools close after."""
    with oban_factory(sqlite_url, **FAST) as make:
        yield make
