"""Oban instances by name, so a worker can enqueue itself without being handed one.

``SendWelcome.enqueue(...)`` looks up the instance named in its
``@worker(oban=...)`` (default ``"oban"``). The registry lives down here with
the model, not on the ``Oban`` class, so that :mod:`oban.worker` never imports
the face: it only needs something that can enqueue.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .errors import InstanceNotFoundError

if TYPE_CHECKING:
    from .job import Job

__all__ = ["Enqueuer", "clear", "lookup", "register", "unregister"]

logger = logging.getLogger("oban")


class Enqueuer(Protocol):
    """What a worker needs of an Oban instance."""

    def enqueue(self, job: Job, *, conn: Any = None) -> Job: ...

    async def enqueue_async(self, job: Job, *, conn: Any = None) -> Job: ...


_instances: dict[str, Enqueuer] = {}
_lock = threading.Lock()


def register(name: str, instance: Enqueuer) -> None:
    """Make ``instance`` the one found under ``name`` (replacing an older one)."""
    with _lock:
        replaced = _instances.get(name)
        _instances[name] = instance
    if replaced is not None and replaced is not instance:
        logger.warning(
            "Oban instance %r replaces %r as the one named %r: workers enqueue through the "
            "new one. Give each instance its own name=, or close() the old one first",
            instance,
            replaced,
            name,
        )


def unregister(name: str, instance: Enqueuer) -> None:
    """Forget ``instance`` under ``name`` (if it is still the one registered)."""
    with _lock:
        if _instances.get(name) is instance:
            del _instances[name]


def lookup(name: str) -> Enqueuer:
    """The instance registered under ``name``; raises :class:`~oban.InstanceNotFoundError`."""
    try:
        return _instances[name]
    except KeyError:
        raise InstanceNotFoundError(
            f"no Oban instance named {name!r}: create one with Oban(..., name={name!r}) "
            "before enqueueing through a worker"
        ) from None


def clear() -> None:
    """Forget every instance (test isolation)."""
    with _lock:
        _instances.clear()
