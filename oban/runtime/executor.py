"""Running one attempt of a job: resolve its worker, call it, decide the outcome.

``async def process`` runs on the event loop; ``def process`` runs in a worker
thread under the queue's limiter, so a slow sync job never blocks the loop.
The same code serves the runtime and the Inline engine.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import sniffio

from ..backoff import default_backoff
from ..engines.base import Ack
from ..errors import EngineError
from ..job import Job
from ..outcomes import outcome
from ..worker import resolve_worker, worker_spec

__all__ = ["JobTimeoutError", "execute", "execute_blocking"]

logger = logging.getLogger("oban")

Clock = Callable[[], datetime]


class JobTimeoutError(Exception):
    """Recorded on a job whose attempt ran past its timeout."""


def _backoff_for(instance: object | None) -> Callable[[Job], int]:
    custom = getattr(instance, "backoff", None)

    def backoff(job: Job) -> int:
        if callable(custom):
            try:
                seconds = custom(job)
            except Exception:
                logger.exception("backoff() of %s failed; using the default", job.worker)
            else:
                if (
                    isinstance(seconds, (int, float))
                    and not isinstance(seconds, bool)
                    and seconds >= 0
                ):
                    return math.ceil(seconds)
                logger.error(
                    "backoff() of %s returned %r, not seconds >= 0; using the default",
                    job.worker,
                    seconds,
                )
        return default_backoff(job.attempt, job.max_attempts, rand=random.random)

    return backoff


def timeout_for(instance: object, job: Job) -> float | None:
    """The attempt's time limit: the worker's ``timeout(job)``, else ``@worker(timeout=)``."""
    custom = getattr(instance, "timeout", None)
    value = custom(job) if callable(custom) else worker_spec(type(instance)).timeout
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"timeout() must return seconds > 0 or None, got {value!r}")
    return float(value)


def _start(job: Job) -> object:
    job._cancellation = threading.Event()
    return resolve_worker(job.worker)()


async def execute(job: Job, *, limiter: anyio.CapacityLimiter | None, clock: Clock) -> Ack:
    """Run one attempt of ``job`` in the current event loop and return its ack."""
    instance: object | None = None
    result: object = None
    try:
        instance = _start(job)
        limit = timeout_for(instance, job)
        process: Callable[[Job], Any] = instance.process  # type: ignore[attr-defined]
        with anyio.move_on_after(limit) as scope:
            if inspect.iscoroutinefunction(process):
                result = await process(job)
            else:
                # A thread cannot be killed: at the deadline the attempt is
                # recorded as failed and the thread's late result is ignored.
                result = await anyio.to_thread.run_sync(
                    process, job, limiter=limiter, abandon_on_cancel=True
                )
        if scope.cancelled_caught:
            result = JobTimeoutError(f"{job.worker} timed out after {limit:g}s")
            job._cancellation.set()  # type: ignore[union-attr]
    except Exception as exc:
        result = exc
    return outcome(job, result, now=clock(), backoff=_backoff_for(instance))


def _run_coroutine(func: Callable[[], Any]) -> Any:
    """Run an ``async def`` from synchronous code, wherever that code runs."""
    try:
        return anyio.from_thread.run(func)
    except RuntimeError:
        pass  # not in an anyio worker thread: there is no loop to go back to
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return anyio.run(func)
    raise EngineError(
        "cannot run an async worker from sync enqueue() inside a running event "
        "loop; use `await oban.enqueue_async(...)` there"
    )


def execute_blocking(job: Job, *, clock: Clock) -> Ack:
    """Run one attempt of ``job`` in the calling thread and return its ack."""
    instance: object | None = None
    result: object
    try:
        instance = _start(job)
        process: Callable[[Job], Any] = instance.process  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(process):
            result = _run_coroutine(lambda: process(job))
        else:
            result = process(job)
    except EngineError:
        raise
    except Exception as exc:
        result = exc
    return outcome(job, result, now=clock(), backoff=_backoff_for(instance))
