"""Fixtures for the observability tests: every handler attached is detached afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import pytest

from oban import telemetry


@dataclass
class Recorder:
    """A telemetry handler that keeps every event it receives (from any thread)."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: Lock = field(default_factory=Lock)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((event, data))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [data for event, data in self.events if event == name]

    def names(self) -> set[str]:
        with self.lock:
            return {event for event, _ in self.events}

    def for_job(self, job_id: int | None) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [
                (e, d) for e, d in self.events if e.startswith("job.") and d.get("id") == job_id
            ]


@pytest.fixture(autouse=True)
def _no_handlers_left() -> Iterator[None]:
    """Each test starts and ends with no telemetry handler attached."""
    for handle in telemetry.handlers():
        telemetry.detach(handle)
    yield
    for handle in telemetry.handlers():
        telemetry.detach(handle)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A :class:`Recorder` attached for every event during the test."""
    found = Recorder()
    handle = telemetry.attach(found)
    yield found
    telemetry.detach(handle)
