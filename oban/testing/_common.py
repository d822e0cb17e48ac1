"""What every helper of :mod:`oban.testing` needs: the instance, and a worker from a reference.

Kept apart from the helpers so that each of them reads as what it does,
and so that a reference to a worker (class, ``@job`` function, name) means
the same thing in ``process_job`` as in ``assert_enqueued``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from oban.engines.base import Capability
from oban.errors import EngineError, UnknownWorkerError
from oban.oban import Oban
from oban.worker import JobFunction, WorkerSpec, resolve_worker

__all__ = ["NODE", "WorkerRef", "instance", "require_storage", "worker_class"]

WorkerRef: TypeAlias = "type | JobFunction[..., Any] | Callable[..., Any] | str"
"""A worker as a test names it: its ``@worker`` class, its ``@job`` function or its name."""

NODE = "oban.testing"
"""``attempted_by`` of the attempts the helpers run, so a row says who ran it."""


def instance(oban: Oban | None) -> Oban:
    """``oban``, or the instance named ``"oban"`` (the one workers enqueue through)."""
    if oban is None:
        return Oban.get_instance()
    if not isinstance(oban, Oban):
        raise TypeError(f"oban must be an Oban instance or None, got {type(oban).__name__}")
    return oban


def require_storage(oban: Oban, helper: str) -> None:
    """Refuse an instance that stores nothing: the helper would answer "none" and mislead."""
    if Capability.PERSISTENT not in oban.engine.capabilities:
        raise EngineError(
            f"{helper} needs stored jobs, but {oban!r} uses the {oban.engine.name} engine, "
            "which stores nothing (testing='inline' runs jobs inside enqueue). Use "
            "`with oban.testing.mode('manual', oban):` (or Oban(url, testing='manual')) "
            "so jobs are stored and can be asserted on or drained"
        )


def worker_class(worker: object) -> type:
    """The worker class behind a class, a ``@job`` function or a name.

    Raises :class:`~oban.UnknownWorkerError` saying what was given and what is accepted.
    """
    if isinstance(worker, JobFunction):
        return worker.worker_class
    if isinstance(worker, str):
        return resolve_worker(worker)
    if isinstance(worker, type) and isinstance(worker.__dict__.get("__oban_worker__"), WorkerSpec):
        return worker
    raise UnknownWorkerError(
        f"{worker!r} is not a worker: pass a @worker class, a @job function or a "
        "worker name such as 'app.jobs.SendWelcome'"
    )
