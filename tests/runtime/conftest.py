"""Fixtures for the runtime tests: fresh side-effect records, Oban instances closed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oban import Oban
from tests.runtime.workers import EFFECTS, Effects

FAST = {"poll_interval": 0.05, "stage_interval": 0.05}
"""Short intervals so polling and staging never make a test wait long."""


@pytest.fixture(autouse=True)
def effects() -> Iterator[Effects]:
    EFFECTS.reset()
    yield EFFECTS
    EFFECTS.reset()


@pytest.fixture
def make_oban(sqlite_url: str) -> Iterator[Callable[..., Oban]]:
    """Build ``Oban`` instances on the test's SQLite file; their pools close after."""
    made: list[Oban] = []

    def make(**options: Any) -> Oban:
        instance = Oban(sqlite_url, **{**FAST, **options})
        made.append(instance)
        return instance

    yield make
    for instance in made:
        if instance.is_running and instance._portal is not None:  # a failed test left it running
            instance.stop(grace=0)
        instance.close()
