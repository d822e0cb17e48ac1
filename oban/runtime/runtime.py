"""One anyio task group that runs everything: producers, acker, stager.

``serve()`` is started in the caller's loop (``async with oban``) or in a
background thread's loop (``oban.start()``); ``stop()`` stops fetching, lets
running jobs finish within the grace period, then cancels the rest and puts
them back as available, and flushes every pending ack before returning.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..backoff import error_pause
from ..engines.base import Ack, Engine
from ..job import Job, JobState
from ..outcomes import error_entry
from ..worker import resolve_worker
from .database import Database
from .executor import execute
from .notifier import INSERT, SIGNAL, notifier_for, pkill_job_id

__all__ = ["Runtime", "RuntimeConfig"]

logger = logging.getLogger("oban")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs to know; validated by ``Oban`` before it gets here."""

    queues: dict[str, int]
    node: str
    poll_interval: float = 1.0
    stage_interval: float = 1.0
    stage_limit: int = 5_000
    shutdown_grace: float = 15.0
    ack_delay: float = 0.005
    db_threads: int = 4
    error_backoff: tuple[float, float] = (0.1, 5.0)
    cancel_check_interval: float = 1.0
    """Seconds between checks whether jobs running here were cancelled elsewhere
    (another process on the SQLite file, a lost notification)."""


class Acker:
    """Collects acks and writes the ones that finish close together in one go.

    An ack that cannot be written (database down) stays in memory and is
    retried until it is written or the runtime stops.
    """

    def __init__(self, database: Database, config: RuntimeConfig) -> None:
        self._database = database
        self._config = config
        self._pending: list[Ack] = []
        self._ready = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()

    def put(self, ack: Ack) -> None:
        self._pending.append(ack)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._ready.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            await anyio.sleep(self._config.ack_delay)
            batch, self._pending = self._pending, []
            if not batch:
                self._idle.set()
                continue
            try:
                with anyio.CancelScope(shield=True):
                    await self._database.run(self._database.engine.ack_jobs, batch)
            except Exception:  # every loop survives errors: log, back off, go on
                failures += 1
                logger.exception("writing %d acks failed; retrying", len(batch))
                self._pending = batch + self._pending
                self._ready.set()
                await anyio.sleep(error_pause(failures, self._config.error_backoff))
                continue
            failures = 0
            if not self._pending:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until every ack put so far is written."""
        if self._pending:
            self._ready.set()
        await self._idle.wait()


class Producer:
    """Fetches and runs the jobs of one queue, at most ``limit`` at a time."""

    def __init__(self, runtime: Runtime, queue: str, limit: int) -> None:
        self.runtime = runtime
        self.queue = queue
        self.limit = limit
        self.uuid = str(uuid.uuid4())
        self.running: dict[int, Job] = {}
        self.scopes: dict[int, anyio.CancelScope] = {}
        self.killed: set[int] = set()
        """Running jobs cancelled while executing: their row is already ``cancelled``."""
        self.threads = anyio.CapacityLimiter(limit)
        self._wakeup = anyio.Event()
        self._maybe_more = True
        self._fetching = True
        self._cancelling = False
        self._drained = anyio.Event()

    def notify(self) -> None:
        """New jobs may be available: fetch now instead of at the next poll."""
        self._maybe_more = True
        self._wakeup.set()

    def stop_fetching(self) -> None:
        self._fetching = False
        self._wakeup.set()

    def cancel_running(self) -> None:
        # Jobs that start after this (fetched while stopping, or started but not
        # yet scheduled) are cancelled as they begin, so none outlives shutdown.
        self._cancelling = True
        for scope in self.scopes.values():
            scope.cancel()

    def kill(self, job_id: int) -> bool:
        """Stop a running job that was cancelled; False if it is not running here.

        ``job.cancelled()`` becomes true for any job; an ``async def`` job is
        also cancelled at once. A ``def`` job's thread cannot be interrupted:
        it keeps its slot until ``process`` returns, which a cooperative
        worker does at its next check of ``job.cancelled()``.
        """
        job = self.running.get(job_id)
        if job is None or job_id in self.killed:
            return False
        self.killed.add(job_id)
        if job._cancellation is not None:
            job._cancellation.set()
        scope = self.scopes.get(job_id)
        # Not started yet (no scope): _execute sees `killed` and never starts it.
        if scope is not None and (job._cancellation is None or _runs_on_loop(job)):
            scope.cancel()
        return True

    async def wait_drained(self) -> None:
        if self.running:
            await self._drained.wait()

    async def run(self) -> None:
        config = self.runtime.config
        failures = 0
        async with anyio.create_task_group() as jobs:
            while self._fetching:
                with anyio.move_on_after(config.poll_interval):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
                demand = self.limit - len(self.running)
                if not self._fetching or demand <= 0:
                    continue
                self._maybe_more = False
                try:
                    # Shielded: claimed rows must reach the executor, never be dropped.
                    with anyio.CancelScope(shield=True):
                        fetched = await self.runtime.database.run(
                            self.runtime.engine.fetch_jobs,
                            self.queue,
                            demand,
                            [config.node, self.uuid],
                            self.runtime.clock(),
                        )
                except Exception:  # every loop survives errors: log, back off, go on
                    failures += 1
                    logger.exception("fetching from queue %r failed; retrying", self.queue)
                    await anyio.sleep(error_pause(failures, config.error_backoff))
                    continue
                failures = 0
                if len(fetched) == demand:
                    self.notify()
                for job in fetched:
                    self.running[job.id or 0] = job
                    if self._drained.is_set():  # keep the event a waiter already holds
                        self._drained = anyio.Event()
                    jobs.start_soon(self._execute, job)

    async def _execute(self, job: Job) -> None:
        runtime = self.runtime
        job_id = job.id or 0
        ack: Ack | None = None
        with anyio.CancelScope() as scope:
            self.scopes[job_id] = scope
            if self._cancelling or job_id in self.killed:
                scope.cancel()
                await anyio.lowlevel.checkpoint()  # never starts the job
            ack = await execute(job, limiter=self.threads, clock=runtime.clock)
        if job_id in self.killed:
            # Cancelled while executing: the row is already `cancelled`, so this
            # ack (applied only while the row still executes this attempt)
            # changes nothing, and must never put the job back as available.
            now = runtime.clock()
            entry = error_entry(job.attempt, now, "cancelled while executing")
            ack = Ack(job_id, job.attempt, JobState.CANCELLED, now, error=entry)
        elif scope.cancelled_caught or ack is None:
            # Stopped by shutdown: back to available, the attempt not counted.
            now = runtime.clock()
            entry = error_entry(job.attempt, now, "interrupted: Oban stopped while the job ran")
            ack = Ack(job_id, job.attempt, JobState.AVAILABLE, now, error=entry)
        self.killed.discard(job_id)
        del self.scopes[job_id]
        del self.running[job_id]
        runtime.acker.put(ack)
        if not self.running:
            self._drained.set()
        if self._maybe_more:
            self._wakeup.set()


def _runs_on_loop(job: Job) -> bool:
    """Whether ``job``'s worker is ``async def`` (cancellable on the loop), not a thread."""
    try:
        process = getattr(resolve_worker(job.worker), "process", None)
    except Exception:
        return True  # no worker: nothing is running in a thread
    return inspect.iscoroutinefunction(process)


class Runtime:
    """Owns the task group; created fresh for every start."""

    def __init__(self, engine: Engine, config: RuntimeConfig, clock: Clock) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.database = Database(engine, threads=config.db_threads)
        self.acker = Acker(self.database, config)
        self.producers = {
            queue: Producer(self, queue, limit) for queue, limit in config.queues.items()
        }
        # LISTEN/NOTIFY where the engine has it (PostgreSQL): inserts on any
        # node wake this node's producers; after a (re)connection every
        # producer fetches once, as notices sent meanwhile were lost.
        self.notifier = (
            notifier_for(engine, application_name=f"oban_notifier:{config.node}")
            if self.producers
            else None
        )
        if self.notifier is not None:
            self.notifier.subscribe(INSERT, self._on_insert_notice)
            self.notifier.subscribe(SIGNAL, self._on_signal_notice)
            self.notifier.on_connect(self._on_connect)
        self._check_now = anyio.Event()
        self.cancel_checks = 0
        """How many times the running jobs were checked for cancels (for tests and metrics)."""
        self._stop = anyio.Event()
        self._grace = config.shutdown_grace
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._done = anyio.Event()

    # -- lifecycle ------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.acker.run)
                tasks.start_soon(self._stage_loop)
                if self.producers:
                    tasks.start_soon(self._cancel_check_loop)
                if self.notifier is not None:
                    tasks.start_soon(self.notifier.run)
                async with anyio.create_task_group() as producing:
                    for producer in self.producers.values():
                        producing.start_soon(producer.run)
                    task_status.started()
                    await self._stop.wait()
                    await self._shutdown()
                # Producers are done; every ack they put is written before we go.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._grace + 5):
                    await self.acker.drain()
                tasks.cancel_scope.cancel()
        finally:
            self._token = None
            self._done.set()

    async def _shutdown(self) -> None:
        for producer in self.producers.values():
            producer.stop_fetching()
        with anyio.move_on_after(self._grace):
            for producer in self.producers.values():
                await producer.wait_drained()
        for producer in self.producers.values():
            producer.cancel_running()

    async def stop(self, grace: float | None = None) -> None:
        """Stop and wait until stopped."""
        if grace is not None:
            self._grace = grace
        self._stop.set()
        await self._done.wait()

    # -- signals from any thread ------------------------------------------------------

    def _on_insert_notice(self, payload: dict[str, object]) -> None:
        queue = payload.get("queue")
        if isinstance(queue, str):
            self._wake([queue])

    def _wake(self, queues: Iterable[str]) -> None:
        for queue in queues:
            producer = self.producers.get(queue)
            if producer is not None:
                producer.notify()

    def _on_connect(self) -> None:
        # Notices sent while nobody listened are lost: fetch, and look for
        # cancels of running jobs, once now.
        self._wake(list(self.producers))
        self._check_now.set()

    def _on_signal_notice(self, payload: dict[str, Any]) -> None:
        job_id = pkill_job_id(payload)
        if job_id is not None:
            self._kill([job_id])

    def _kill(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            for producer in self.producers.values():
                if producer.kill(job_id):
                    break

    def _on_loop(self, fn: Callable[[list[Any]], None], items: Iterable[Any]) -> None:
        """Run ``fn(items)`` on the runtime's loop from any thread (at once on it)."""
        token = self._token
        if token is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(list(items))
            return
        # RuntimeError: the loop is gone; producers poll when they come back.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(fn, list(items), token=token)

    def notify_insert(self, queues: Iterable[str]) -> None:
        """Wake the producers of ``queues``; safe to call from any thread."""
        self._on_loop(self._wake, queues)

    def notify_cancel(self, job_ids: Iterable[int]) -> None:
        """Stop these jobs if they run here (their rows are committed as
        cancelled); safe to call from any thread."""
        self._on_loop(self._kill, job_ids)

    def check_cancelled_soon(self) -> None:
        """Look for cancelled running jobs now rather than at the next interval:
        for a cancel in the caller's own transaction, not committed yet, whose
        ids must not be acted on before the database says so."""
        self._on_loop(lambda _: self._check_now.set(), ())

    # -- cancels made elsewhere -------------------------------------------------------

    async def _cancel_check_loop(self) -> None:
        """Every ``cancel_check_interval``, ask the database which of the jobs
        running here were cancelled, and stop them.

        The backstop for what no signal told us: a cancel by another process
        on the same SQLite file, a NOTIFY lost while the notifier reconnected,
        a cancel inside a caller's transaction. One small query, and none at
        all while nothing runs.
        """
        failures = 0
        while True:
            with anyio.move_on_after(self.config.cancel_check_interval):
                await self._check_now.wait()
            self._check_now = anyio.Event()
            running = [
                job_id
                for producer in self.producers.values()
                for job_id in producer.running
                if job_id not in producer.killed
            ]
            if not running:
                continue
            try:
                cancelled = await self.database.run(self.engine.cancelled_ids, running)
            except Exception:  # every loop survives errors: log, back off, go on
                failures += 1
                logger.exception("checking running jobs for cancels failed; retrying")
                await anyio.sleep(error_pause(failures, self.config.error_backoff))
                continue
            failures = 0
            self.cancel_checks += 1
            self._kill(cancelled)

    # -- staging ----------------------------------------------------------------------

    async def _stage_loop(self) -> None:
        failures = 0
        while True:
            try:
                queues = await self.database.run(
                    self.engine.stage_jobs, self.clock(), self.config.stage_limit
                )
            except Exception:  # every loop survives errors: log, back off, go on
                failures += 1
                logger.exception("staging scheduled jobs failed; retrying")
                await anyio.sleep(error_pause(failures, self.config.error_backoff))
                continue
            failures = 0
            self._wake(queues)
            await anyio.sleep(self.config.stage_interval)
