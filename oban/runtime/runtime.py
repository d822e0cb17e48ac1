"""One anyio task group that runs everything: producers, the acker, plugins, the notifier.

``serve()`` is started in the caller's loop (``async with oban``) or in a
background thread's loop (``oban.start()``); ``stop()`` stops fetching, lets
running jobs finish within the grace period, then cancels the rest and puts
them back as available, and flushes every pending ack before returning.

This module only wires the parts together and routes signals between them;
the work itself is in :mod:`.producer`, :mod:`.acker`, :mod:`.notifier` and
:mod:`.plugins`, each on the one loop helper of :mod:`.loops`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..config import RuntimeConfig
from ..engines.base import Capability, Changed
from ..engines.signals import INSERT, SIGNAL, inserted_queue, pkill_job_id
from .acker import Acker
from .database import Database
from .loops import Loop
from .notifier import notifier_for
from .plugins import DEFAULT_PLUGINS, CancelCheck, Plugin, PluginContext
from .producer import Producer

__all__ = ["Runtime"]

Clock = Callable[[], datetime]


class Runtime:
    """Owns the task group; created fresh for every start."""

    def __init__(
        self,
        database: Database,
        config: RuntimeConfig,
        clock: Clock,
        *,
        plugins: Iterable[type[Plugin]] = DEFAULT_PLUGINS,
    ) -> None:
        self.engine = database.engine
        self.database = database
        self.config = config
        self.clock = clock
        self.acker = Acker(database, config)
        self.producers = {
            queue: Producer(
                queue, limit, database=database, config=config, clock=clock, put_ack=self.acker.put
            )
            for queue, limit in config.queues.items()
        }
        # LISTEN/NOTIFY where the engine has it (PostgreSQL): inserts on any
        # node wake this node's producers; after a (re)connection every
        # producer fetches once, as notices sent meanwhile were lost.
        self.notifier = (
            notifier_for(self.engine, application_name=f"oban_notifier:{config.node}")
            if self.producers
            else None
        )
        if self.notifier is not None:
            self.notifier.subscribe(INSERT, self._on_insert_notice)
            self.notifier.subscribe(SIGNAL, self._on_signal_notice)
            self.notifier.on_connect(self._on_connect)
        context = PluginContext(
            database=database,
            config=config,
            clock=clock,
            wake_queues=self._wake,
            running_ids=self._running_ids,
            kill=self._kill,
        )
        self.plugins = [plugin(context) for plugin in plugins]
        self._loops = {type(plugin): _loop_for(plugin, config) for plugin in self.plugins}
        self._stop = anyio.Event()
        self._grace = config.shutdown_grace
        self._grace_scope: anyio.CancelScope | None = None
        self._grace_cap = float("inf")
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._done = anyio.Event()

    @property
    def cancel_checks(self) -> int:
        """How many times the running jobs were checked for cancels (for tests and metrics)."""
        return sum(plugin.checks for plugin in self.plugins if isinstance(plugin, CancelCheck))

    # -- lifecycle ------------------------------------------------------------------

    async def preflight(self) -> None:
        """Ask the database once before serving: a missing table or an unreachable
        server fails the start (``SchemaError``/``DatabaseError``) instead of a
        node that says it runs and only logs."""
        if Capability.PERSISTENT in self.engine.capabilities:
            await self.database.run(self.engine.get_job, 0)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``task_status.started()`` once every part runs."""
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.acker.run)
                for loop in self._loops.values():
                    tasks.start_soon(loop.run)
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
        with anyio.move_on_after(min(self._grace, self._grace_cap)) as grace:
            self._grace_scope = grace
            for producer in self.producers.values():
                await producer.wait_drained()
        self._grace_scope = None
        for producer in self.producers.values():
            producer.cancel_running()

    async def stop(self, grace: float | None = None) -> None:
        """Stop and wait until stopped; ``grace`` overrides ``shutdown_grace``."""
        if grace is not None:
            self._grace = grace
        self._stop.set()
        await self._done.wait()

    def shorten_grace(self, grace: float) -> None:
        """On the loop, while stopping: let running jobs finish for at most ``grace``
        more seconds (0: cancel them now, as the end of the grace period does)."""
        self._grace_cap = min(self._grace_cap, grace)  # whichever call comes first
        scope = self._grace_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)

    # -- signal routing (on the loop) -------------------------------------------------

    def _on_insert_notice(self, payload: dict[str, Any]) -> None:
        queue = inserted_queue(payload)
        if queue is not None:
            self._wake([queue])

    def _on_signal_notice(self, payload: dict[str, Any]) -> None:
        job_id = pkill_job_id(payload)
        if job_id is not None:
            self._kill([job_id])

    def _on_connect(self) -> None:
        # Notices sent while nobody listened are lost: fetch, and look for
        # cancels of running jobs, once now.
        self._wake(list(self.producers))
        self._check_cancels_now()

    def _wake(self, queues: Iterable[str]) -> None:
        for queue in queues:
            producer = self.producers.get(queue)
            if producer is not None:
                producer.notify()

    def _kill(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            for producer in self.producers.values():
                if producer.kill(job_id):
                    break

    def _running_ids(self) -> list[int]:
        return [job_id for producer in self.producers.values() for job_id in producer.running_ids()]

    def _check_cancels_now(self) -> None:
        loop = self._loops.get(CancelCheck)
        if loop is not None:
            loop.wake()

    # -- signals from any thread ------------------------------------------------------

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
        self._on_loop(lambda _: self._check_cancels_now(), ())

    def apply_change(self, changed: Changed, *, committed: bool) -> None:
        """Act on what a management call on this node did; safe from any thread.

        A cancel that is ``committed`` (Oban ran it in its own transaction) is
        acted on at once. One in the caller's transaction is not committed yet
        (and may roll back), so its ids are not trusted: the cancel check asks
        the database instead (on SQLite that read waits for the caller's
        commit; on PostgreSQL the NOTIFY sent at commit does the job). Other
        nodes hear of a cancel through NOTIFY (PostgreSQL) or their own
        periodic check; retried jobs wake their queues' producers.
        """
        if changed.executing:
            if committed:
                self.notify_cancel(changed.executing)
            else:
                self.check_cancelled_soon()
        if changed.queues:
            self.notify_insert(changed.queues)


def _loop_for(plugin: Plugin, config: RuntimeConfig) -> Loop:
    return Loop(
        plugin.name,
        plugin.tick,
        interval=plugin.interval,
        jitter=plugin.jitter,
        immediate=plugin.immediate,
        error_backoff=config.error_backoff,
        leader_only=plugin.leader_only,
    )
