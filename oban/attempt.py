"""One attempt of a job: resolve its worker, call it, decide the outcome.

Two ways in, one set of rules (timeouts, cancellation, the outcome):
:func:`execute` inside an event loop, for the runtime, where ``async def
process`` runs on the loop and ``def process`` in a worker thread under the
queue's limiter, so a slow sync job never blocks the loop; and
:func:`execute_blocking` in the calling thread, for the Inline engine. It
sits below the engines and the runtime so both use it without either
importing the other.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import sniffio

from .backoff import default_backoff
from .errors import EngineError, JobTimeoutError
from .job import Job, JobState
from .job_events import Observed, observe
from .outcomes import Ack, outcome
from .worker import resolve_worker, worker_spec

__all__ = ["ThreadRunner", "execute", "execute_blocking", "runs_on_loop", "timeout_for"]

logger = logging.getLogger("oban")

Clock = Callable[[], datetime]


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
                    and math.isfinite(seconds)
                    and seconds >= 0
                ):
                    return math.ceil(seconds)
                logger.error(
                    "backoff() of %s returned %r, not a finite number of seconds >= 0; "
                    "using the default",
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
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"timeout() of {job.worker} must return a finite number of seconds > 0 "
            f"or None, got {value!r}"
        )
    return float(value)


def runs_on_loop(job: Job) -> bool:
    """Whether ``job``'s worker is ``async def`` (cancellable on the loop), not a thread."""
    try:
        process = getattr(resolve_worker(job.worker), "process", None)
    except Exception:
        return True  # no worker: nothing is running in a thread
    return inspect.iscoroutinefunction(process)


def _timed_out(job: Job, limit: float, *, in_thread: bool) -> JobTimeoutError:
    if job._cancellation is not None:
        job._cancellation.set()  # a cooperative def process sees job.cancelled() and stops
    message = f"{job.worker} timed out after {limit:g}s"
    if in_thread:
        message += (
            " (its def process runs in a thread, which cannot be killed: it may still "
            "be running, and whatever it returns is ignored)"
        )
    return JobTimeoutError(message)


def _decide(job: Job, result: object, now: datetime, instance: object | None) -> Ack:
    """``outcome()``, made total: whatever goes wrong, the attempt still gets an ack."""
    try:
        return outcome(job, result, now=now, backoff=_backoff_for(instance))
    except Exception as exc:  # a bad result fails the job, never the queue
        logger.exception("recording the result of %s (job %s) failed", job.worker, job.id)
        return outcome(job, exc, now=now, backoff=_backoff_for(None))


def _start(job: Job) -> object:
    job._cancellation = threading.Event()
    return resolve_worker(job.worker)()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


@dataclass(frozen=True)
class _Pending:
    """What a ``def``-looking process returned that must still be awaited."""

    awaitable: Awaitable[Any]


class _ThreadSlot:
    """One of a queue's thread slots for a ``def`` job, held until its thread ends.

    At a timeout (or shutdown) the thread is abandoned, not stopped. anyio then
    gives the limiter token back at once on asyncio but only when the thread
    ends on trio; holding the slot until the thread really ends, on both,
    keeps the promise that at most the queue's limit of ``def`` jobs run at
    once, and makes the two backends agree.
    """

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._token = anyio.lowlevel.current_token()
        self._lock = threading.Lock()
        self._started = False
        self._finished = False
        self._closed = False

    async def acquire(self) -> None:
        await self._limiter.acquire_on_behalf_of(self)

    def run(self, process: Callable[[Job], Any], job: Job) -> Any:
        """In the worker thread: run the job unless its attempt already ended."""
        with self._lock:
            if self._closed:
                return None  # the attempt ended (timeout, shutdown) before the thread began
            self._started = True
        try:
            result = process(job)
            # A wrapped async process returns a coroutine: the loop awaits it
            # (boxed, as trio refuses a thread's call that looks asynchronous).
            return _Pending(result) if inspect.isawaitable(result) else result
        finally:
            if self._thread_ended():
                # Abandoned: give the slot back now. If the loop is gone, so is the limiter.
                with contextlib.suppress(Exception):
                    anyio.from_thread.run_sync(
                        self._limiter.release_on_behalf_of, self, token=self._token
                    )

    def _thread_ended(self) -> bool:
        """Mark the thread done; whether its attempt was already over (abandoned)."""
        with self._lock:
            self._finished = True
            return self._closed

    def release(self) -> None:
        """On the loop, when the attempt ends: free the slot now or when the thread ends."""
        with self._lock:
            self._closed = True
            if self._started and not self._finished:
                return  # the abandoned thread frees the slot when it ends
        self._limiter.release_on_behalf_of(self)


def _report(observed: Observed | None, job: Job, ack: Ack, result: object) -> Ack:
    """Tell the observers how the attempt ended (``job.stop`` / ``job.exception``)."""
    if observed is None:
        return ack
    state = ack.state
    if job.cancelled() and not isinstance(result, JobTimeoutError):
        # A def job cancelled while it ran: its row is already cancelled, and the
        # runtime discards this ack (a timeout also sets the flag, but says so).
        state = JobState.CANCELLED
    error = ack.error.get("error") if ack.error else None
    observed.finished(state, result if isinstance(result, BaseException) else error)
    return ack


ThreadRunner = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a function in a worker thread; cancelling the caller abandons the call
(the thread runs it to the end, and its result is dropped)."""


async def _to_thread(fn: Callable[[], Any]) -> Any:
    # A limiter of its own: the job's _ThreadSlot is the real limit.
    return await anyio.to_thread.run_sync(
        fn, limiter=anyio.CapacityLimiter(1), abandon_on_cancel=True
    )


async def execute(
    job: Job,
    *,
    limiter: anyio.CapacityLimiter | None,
    clock: Clock,
    in_thread: ThreadRunner = _to_thread,
) -> Ack:
    """Run one attempt of ``job`` in the current event loop and return its ack,
    telling the observers (:mod:`oban.job_events`) when it starts and ends.

    A ``def`` job runs through ``in_thread`` (the runtime's queues pass their
    :class:`~oban.runtime.thread_pool.ThreadPool`), by default a thread of
    anyio's."""
    observed = observe(job)
    try:
        ack, result = await _execute(job, limiter=limiter, clock=clock, run_in_thread=in_thread)
    except BaseException:
        if observed is not None:
            observed.interrupted()
        raise
    return _report(observed, job, ack, result)


async def _execute(
    job: Job, *, limiter: anyio.CapacityLimiter | None, clock: Clock, run_in_thread: ThreadRunner
) -> tuple[Ack, object]:
    """Run one attempt of ``job`` in the current event loop and return its ack.

    At its time limit an ``async def`` job is cancelled. A ``def`` job's thread
    cannot be killed: the attempt is recorded as failed at the deadline,
    ``job.cancelled()`` becomes true so a cooperative job can stop, whatever
    the thread returns later is ignored, and the thread keeps its queue slot
    until it ends. The time limit counts from when the job has a slot.
    """
    instance: object | None = None
    result: object = None
    limit: float | None = None
    scope: anyio.CancelScope | None = None
    in_thread = False
    try:
        instance = _start(job)
        limit = timeout_for(instance, job)
        process: Callable[[Job], Any] = instance.process  # type: ignore[attr-defined]
        in_thread = not inspect.iscoroutinefunction(process)
        slot: _ThreadSlot | None = None
        if in_thread:
            slot = _ThreadSlot(limiter or anyio.to_thread.current_default_thread_limiter())
            await slot.acquire()
        try:
            with anyio.move_on_after(limit) as scope:
                if slot is not None:
                    result = await run_in_thread(functools.partial(slot.run, process, job))
                    if isinstance(result, _Pending):
                        in_thread = False
                        result = await result.awaitable
                else:
                    result = await process(job)
        finally:
            if slot is not None:
                slot.release()
    except Exception as exc:
        result = exc
    if limit is not None and scope is not None and scope.cancel_called:
        # Past the deadline, even if the job swallowed the cancellation and returned.
        result = _timed_out(job, limit, in_thread=in_thread)
    return _decide(job, result, clock(), instance), result


async def _guarded(func: Callable[[], Awaitable[Any]], limit: float | None) -> tuple[bool, Any]:
    """Await ``func()`` within ``limit``; (True, value) or (False, exception or None on timeout).

    Exceptions come back as values, so the caller can tell an error of the job
    from an error of the hop to the event loop (and never runs a job twice).
    """
    try:
        with anyio.move_on_after(limit) as scope:
            value = await func()
    except Exception as exc:
        if not scope.cancel_called:
            return False, exc
    if scope.cancel_called:
        return False, None
    return True, value


def _run_coroutine(func: Callable[[], Awaitable[Any]], limit: float | None) -> tuple[bool, Any]:
    """Run an async callable from synchronous code, wherever that code runs."""
    try:
        return anyio.from_thread.run(_guarded, func, limit)
    except RuntimeError:
        pass  # not in an anyio worker thread: there is no loop to go back to
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return anyio.run(_guarded, func, limit)
    raise EngineError(
        "cannot run an async worker from sync enqueue() inside a running event "
        "loop; use `await oban.enqueue_async(...)` there"
    )


def _call_blocking(process: Callable[[Job], Any], job: Job, limit: float | None) -> object:
    """Call ``process`` in this thread; past ``limit`` the attempt is a timeout."""
    if inspect.iscoroutinefunction(process):
        done, value = _run_coroutine(lambda: process(job), limit)
        if done:
            return value
        return value if value is not None else _timed_out(job, limit or 0, in_thread=False)
    cancellation = job._cancellation
    timer = None
    if limit is not None and cancellation is not None:
        # The caller's thread is busy with the job: a timer tells it to stop.
        timer = threading.Timer(limit, cancellation.set)
        timer.daemon = True
        timer.start()
    started = time.monotonic()
    try:
        result: object = process(job)
    except Exception as exc:
        result = exc
    finally:
        if timer is not None:
            timer.cancel()
    if limit is not None and time.monotonic() - started >= limit:
        return _timed_out(job, limit, in_thread=True)
    if inspect.isawaitable(result):
        done, value = _run_coroutine(lambda: _awaited(result), limit)
        if done:
            return value
        return value if value is not None else _timed_out(job, limit or 0, in_thread=False)
    return result


def execute_blocking(job: Job, *, clock: Clock, raised: list[Exception] | None = None) -> Ack:
    """Run one attempt of ``job`` in the calling thread and return its ack.

    For the Inline engine and ``oban.testing``. Timeouts apply: an ``async
    def`` job is cancelled at the deadline; a ``def`` job cannot be
    interrupted, so ``job.cancelled()`` becomes true at the deadline and, if
    it returns later, the attempt is recorded as timed out and its result
    ignored.

    ``raised``, when given, receives the exception the attempt failed with
    (the job's own, a timeout, an unknown worker): the ack only keeps its
    text, and a caller that must re-raise it after recording the failure
    (``drain_queue(with_safety=False)``) needs the object itself.
    """
    observed = observe(job)
    try:
        ack, result = _execute_blocking(job, clock=clock, raised=raised)
    except BaseException:
        if observed is not None:
            observed.interrupted()
        raise
    return _report(observed, job, ack, result)


def _execute_blocking(
    job: Job, *, clock: Clock, raised: list[Exception] | None
) -> tuple[Ack, object]:
    instance: object | None = None
    result: object
    try:
        instance = _start(job)
        limit = timeout_for(instance, job)
        process: Callable[[Job], Any] = instance.process  # type: ignore[attr-defined]
        result = _call_blocking(process, job, limit)
    except EngineError:
        raise
    except Exception as exc:
        result = exc
    if raised is not None and isinstance(result, Exception):
        raised.append(result)
    return _decide(job, result, clock(), instance), result
