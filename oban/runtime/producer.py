"""The producer: one per queue, fetching at most ``limit - running`` jobs and running them.

It fetches when woken (a local insert, the stager, a NOTIFY, a finished job
when the last fetch was full) or at its poll interval. The fetch is shielded
from cancellation: rows that were claimed always reach the executor. A fetch
that failed may still have been committed by the server (the connection cut
after the commit, before its reply): before fetching again the producer puts
back any row executing for it that it does not hold (:meth:`Producer._reconcile`),
since its heartbeat keeps the lifeline from ever rescuing those.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from sqlalchemy.engine import Connection

from .. import telemetry
from ..attempt import execute, runs_on_loop
from ..config import RuntimeConfig
from ..job import Job, JobState
from ..outcomes import Ack, error_entry
from .database import Database
from .loops import Loop
from .thread_pool import ThreadPool

__all__ = ["Producer"]

Clock = Callable[[], datetime]


class Producer:
    """Fetches and runs the jobs of one queue, at most ``limit`` at a time.

    Args:
        put_ack: hands each finished attempt to the acker.
        held_acks: ids of the jobs whose ack the acker has not written yet.
    """

    def __init__(
        self,
        queue: str,
        limit: int,
        *,
        database: Database,
        config: RuntimeConfig,
        clock: Clock,
        put_ack: Callable[[Ack], None],
        held_acks: Callable[[], Collection[int]],
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.paused = False
        self.uuid = str(uuid.uuid4())
        self.started_at = clock()
        self._database = database
        self._config = config
        self._clock = clock
        self._put_ack = put_ack
        self._held_acks = held_acks
        self._unsure = False
        """A fetch failed: rows may be executing for this producer that it never got."""
        self.running: dict[int, Job] = {}
        self.scopes: dict[int, anyio.CancelScope] = {}
        self.killed: set[int] = set()
        """Running jobs cancelled while executing: their row is already ``cancelled``."""
        self.threads = anyio.CapacityLimiter(limit)
        self._maybe_more = True
        self._fetched_at = -float("inf")
        """``anyio.current_time()`` when the last fetch ended."""
        self._cancelling = False
        self._drained = anyio.Event()
        self._jobs: TaskGroup | None = None
        self._pool: ThreadPool | None = None
        self.loop = Loop(
            f"fetching from queue {queue!r}",
            self._fetch,
            interval=config.poll_interval,
            error_backoff=config.error_backoff,
            outage=database.outage,
        )

    def notify(self) -> None:
        """New jobs may be available: fetch now instead of at the next poll."""
        self._maybe_more = True
        self.loop.wake()

    def pause(self) -> None:
        """Fetch nothing until :meth:`resume`; running jobs go on to the end."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.notify()

    def scale(self, limit: int) -> None:
        """Run at most ``limit`` jobs at once from now on (running ones go on)."""
        self.limit = limit
        self.threads.total_tokens = limit
        self.notify()

    def heartbeat_meta(self, instance_id: str) -> dict[str, object]:
        """What this producer's heartbeat row says of it (``oban_producers.meta``)."""
        return {
            "local_limit": self.limit,
            "paused": self.paused,
            "running": self.running_ids(),
            "instance": instance_id,
        }

    def stop_fetching(self) -> None:
        self.loop.stop()

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
        if scope is not None and (job._cancellation is None or runs_on_loop(job)):
            scope.cancel()
        return True

    def running_ids(self) -> list[int]:
        """Ids of the jobs running here that were not cancelled yet."""
        return [job_id for job_id in self.running if job_id not in self.killed]

    async def wait_drained(self) -> None:
        if self.running:
            await self._drained.wait()

    async def run(self) -> None:
        # The pool's threads outlive the jobs' tasks: a job started while the
        # fetch loop stops still gets its thread.
        async with anyio.create_task_group() as threads:
            pool = ThreadPool(threads, f"queue {self.queue!r}'s def jobs")
            self._pool = pool
            try:
                async with anyio.create_task_group() as jobs:
                    self._jobs = jobs
                    await self.loop.run()
            finally:
                pool.close()
                # A thread still in a job (abandoned at a timeout or the stop)
                # goes on in the background: the stop never waits for it.
                threads.cancel_scope.cancel()
        pool.dispose()

    async def _fetch(self) -> None:
        if self._unsure and not self.loop.stopped:
            await self._reconcile()
        demand = self.limit - len(self.running)
        if self.loop.stopped or self.paused or demand <= 0 or self._jobs is None:
            return
        if demand < self.limit - self.limit // 2:
            # Most slots are busy: let the cooldown pass since the last fetch, so
            # the slots freed meanwhile are filled by this one fetch. With half
            # the slots free or more, the fetch is a batch already and goes at
            # once: waiting would leave those slots idle (with short jobs, most
            # of their time), and an idle queue gets no latency added to a wake.
            pause = self._fetched_at + self._config.dispatch_cooldown - anyio.current_time()
            if pause > 0:
                await anyio.sleep(pause)
                demand = self.limit - len(self.running)
                if self.loop.stopped or self.paused or demand <= 0:
                    return
        self._maybe_more = False
        # Shielded: claimed rows must reach the executor, never be dropped.
        with anyio.CancelScope(shield=True):
            try:
                fetched = await self._database.run_alone(self._claim, demand)
            except Exception:
                self._unsure = True  # committed or not: _reconcile finds out
                raise
        self._fetched_at = anyio.current_time()
        if telemetry.active:
            telemetry.emit(
                "queue.fetch", {"queue": self.queue, "demand": demand, "count": len(fetched)}
            )
        if len(fetched) == demand:
            self.notify()
        for job in fetched:
            self.running[job.id or 0] = job
            if self._drained.is_set():  # keep the event a waiter already holds
                self._drained = anyio.Event()
            self._jobs.start_soon(self._execute, job)

    async def _reconcile(self) -> None:
        """Put back the jobs a failed fetch claimed on the server but never delivered.

        Runs in the fetch loop, so no fetch of this producer is under way:
        a row executing for it is running here, or finished with its ack not
        written yet, or was claimed by a fetch whose reply never came, and so
        never started. Those last go back to available through the acker,
        their attempt not counted; an ack applies only while that attempt
        still executes, so none can undo a newer one.
        """
        held = set(self.running) | set(self._held_acks())
        engine = self._database.engine
        claimed = await self._database.run(engine.claimed_jobs, self.queue, self.uuid)
        self._unsure = False
        now = self._clock()
        message = "claimed by a fetch whose reply was lost (connection cut); it never started"
        for job_id, attempt in claimed:
            if job_id not in held:
                entry = error_entry(attempt, now, message)
                self._put_ack(Ack(job_id, attempt, JobState.AVAILABLE, now, error=entry))

    def _claim(self, conn: Connection, demand: int) -> list[Job]:
        """In the database thread: the fetch, stamped with the time it runs, not the
        time it was asked for (a wait for a thread must not date an attempt before
        its job was due)."""
        by = [self._config.node, self.uuid]
        return self._database.engine.fetch_jobs(conn, self.queue, demand, by, self._clock())

    async def _execute(self, job: Job) -> None:
        job_id = job.id or 0
        ack: Ack | None = None
        with anyio.CancelScope() as scope:
            self.scopes[job_id] = scope
            if self._cancelling or job_id in self.killed:
                scope.cancel()
                await anyio.lowlevel.checkpoint()  # never starts the job
            pool = self._pool
            assert pool is not None  # set by run(), whose fetches start every job
            ack = await execute(job, limiter=self.threads, clock=self._clock, in_thread=pool.run)
        if job_id in self.killed:
            # Cancelled while executing: the row is already `cancelled`, so this
            # ack (applied only while the row still executes this attempt)
            # changes nothing, and must never put the job back as available.
            now = self._clock()
            entry = error_entry(job.attempt, now, "cancelled while executing")
            ack = Ack(job_id, job.attempt, JobState.CANCELLED, now, error=entry)
        elif scope.cancelled_caught or ack is None:
            # Stopped by shutdown: back to available, the attempt not counted.
            now = self._clock()
            entry = error_entry(job.attempt, now, "interrupted: Oban stopped while the job ran")
            ack = Ack(job_id, job.attempt, JobState.AVAILABLE, now, error=entry)
        self.killed.discard(job_id)
        del self.scopes[job_id]
        del self.running[job_id]
        self._put_ack(ack)
        if not self.running:
            self._drained.set()
        if self._maybe_more:
            self.loop.wake()
