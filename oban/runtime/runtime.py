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
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from .. import telemetry
from ..config import RuntimeConfig
from ..engines.base import Capability, Changed, ClusterEngine, QueueState
from ..engines.signals import (
    ANY,
    INSERT,
    LEADER,
    SIGNAL,
    QueueSignal,
    inserted_queue,
    leader_down_name,
    pkill_job_id,
    read_queue_signal,
)
from ..queue_info import QueueInfo
from .acker import Acker
from .database import Database
from .loops import Loop
from .notifier import notifier_for
from .outage import Outage
from .plugins import (
    DEFAULT_PLUGINS,
    CancelCheck,
    Heartbeat,
    Leader,
    Plugin,
    PluginContext,
    QueueSync,
)
from .producer import Producer

__all__ = ["Runtime"]

logger = logging.getLogger("oban")

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
        if config.cluster and Capability.CLUSTER not in self.engine.capabilities:
            config = dataclasses.replace(config, cluster=False)
        self.database = database
        self.config = config
        self.clock = clock
        self.instance_id = str(uuid.uuid4())
        """Fresh at every start: tells this run of the node from earlier ones."""
        self.started_at = clock()
        self.ident = f"{config.name}.{config.node}"
        """How a signal meant for this node only names it (Elixir Oban's form)."""
        self.leader_node = f"{config.node}#{self.instance_id}"
        self._leader = False
        self._term = 0
        self.acker = Acker(database, config)
        self.producers = {
            queue: self._producer(queue, limit) for queue, limit in config.queues.items()
        }
        self._producing: TaskGroup | None = None
        self._tasks: TaskGroup | None = None
        # LISTEN/NOTIFY where the engine has it (PostgreSQL): inserts on any
        # node wake this node's producers; after a (re)connection every
        # producer fetches once, as notices sent meanwhile were lost.
        self.notifier = (
            notifier_for(self.engine, application_name=f"oban_notifier:{config.node}")
            if self.producers or config.cluster
            else None
        )
        if self.notifier is not None:
            self.notifier.subscribe(INSERT, self._on_insert_notice)
            self.notifier.subscribe(SIGNAL, self._on_signal_notice)
            self.notifier.subscribe(LEADER, self._on_leader_notice)
            self.notifier.on_connect(self._on_connect)
        context = PluginContext(
            database=database,
            config=config,
            clock=clock,
            wake_queues=self._wake,
            running_ids=self._running_ids,
            kill=self._kill,
            instance_id=self.instance_id,
            started_at=self.started_at,
            leader_node=self.leader_node,
            is_leader=lambda: self._leader,
            set_leader=self._set_leader,
            leader_term=lambda: self._term,
            producers=lambda: list(self.producers.values()),
            apply_queue_state=self._apply_queue_state,
        )
        self.plugins = [plugin(context) for plugin in plugins if plugin.wanted(config)]
        self._loops = {
            type(plugin): _loop_for(plugin, config, self._acts_as_leader, database.outage)
            for plugin in self.plugins
        }
        self._stop = anyio.Event()
        self._grace = config.shutdown_grace
        self._grace_scope: anyio.CancelScope | None = None
        self._grace_cap = float("inf")
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._done = anyio.Event()
        self._plugin_scope: anyio.CancelScope | None = None
        self._plugins_done = anyio.Event()

    def _producer(self, queue: str, limit: int) -> Producer:
        return Producer(
            queue,
            limit,
            database=self.database,
            config=self.config,
            clock=self.clock,
            put_ack=self.acker.put,
            held_acks=self.acker.held,
        )

    @property
    def is_leader(self) -> bool:
        """Whether this node holds the lease now (False without many-node support)."""
        return self._leader

    def _acts_as_leader(self) -> bool:
        # Without many-node support (a testing mode, an engine without CLUSTER)
        # this node is alone and does the leader's work itself.
        return self._leader or not self.config.cluster

    def _set_leader(self, leading: bool) -> None:
        if leading == self._leader:
            return
        self._leader = leading
        if telemetry.active:
            event = "leader.gained" if leading else "leader.lost"
            telemetry.emit(event, {"name": self.config.name, "node": self.config.node})
        if leading:
            self._term += 1
            logger.info("node %r leads %r now", self.config.node, self.config.name)
            for loop in self._loops.values():
                if loop.leader_only:
                    loop.wake()
        else:
            logger.info("node %r no longer leads %r", self.config.node, self.config.name)

    def plugin(self, kind: type[Plugin]) -> Plugin | None:
        """The running plugin of ``kind``, if this runtime runs one (for tests and metrics)."""
        return next((plugin for plugin in self.plugins if isinstance(plugin, kind)), None)

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
        sync = self.plugin(QueueSync)
        if sync is not None:
            # Before any fetch: a node started while its queue is paused
            # cluster-wide never fetches from it.
            await sync.tick()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``task_status.started()`` once every part runs."""
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self.acker.run)
                tasks.start_soon(self._run_plugins)
                if self.notifier is not None:
                    tasks.start_soon(self.notifier.run)
                async with anyio.create_task_group() as producing:
                    self._producing = producing
                    for producer in self.producers.values():
                        producing.start_soon(producer.run)
                    task_status.started()
                    await self._stop.wait()
                    await self._shutdown()
                # Producers are done; every ack they put is written before we go.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._grace + 5):
                    await self.acker.drain()
                # No plugin may tick once cleaning up begins: a leader that
                # released its lease must not bid for it again on its way out.
                if self._plugin_scope is not None:
                    self._plugin_scope.cancel()
                await self._plugins_done.wait()
                await self._stop_plugins()
                tasks.cancel_scope.cancel()
        finally:
            self._token = None
            self._producing = self._tasks = None
            self._done.set()

    async def _run_plugins(self) -> None:
        try:
            with anyio.CancelScope() as self._plugin_scope:
                async with anyio.create_task_group() as loops:
                    for loop in self._loops.values():
                        loops.start_soon(loop.run)
        finally:
            self._plugins_done.set()

    async def _stop_plugins(self) -> None:
        """Give up leadership and delete the heartbeat rows, each bounded and
        shielded: a database that is down delays the stop, never hangs it."""
        for plugin in self.plugins:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await plugin.stop()
                except Exception as exc:  # the lease expires and rows age out anyway
                    logger.warning("%s: could not clean up at stop: %s", plugin.name, exc)

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
            return
        signal = read_queue_signal(payload)
        if signal is not None and signal.ident in (ANY, self.ident):
            self.apply_signal(signal)
            sync = self._loops.get(QueueSync)
            if sync is not None:
                sync.wake()

    def _on_leader_notice(self, payload: dict[str, Any]) -> None:
        # A leader that stopped cleanly says so: bid now rather than at expiry.
        if leader_down_name(payload) == self.config.name and not self._leader:
            loop = self._loops.get(Leader)
            if loop is not None:
                loop.wake()

    # -- queue control (on the loop) ----------------------------------------------------

    def apply_signal(self, signal: QueueSignal) -> bool:
        """Pause, resume, scale, start or stop a queue on this node; False if the
        queue does not run here (start: already runs here, it is scaled)."""
        producer = self.producers.get(signal.queue)
        if signal.action == "start":
            if producer is not None:
                if signal.limit is not None:
                    producer.scale(signal.limit)
                return True
            return self._start_queue(signal.queue, signal.limit)
        if producer is None:
            return False
        if signal.action == "pause":
            producer.pause()
        elif signal.action == "resume":
            producer.resume()
        elif signal.action == "scale" and signal.limit is not None:
            producer.scale(signal.limit)
        elif signal.action == "stop" and self._tasks is not None:
            del self.producers[signal.queue]
            self._tasks.start_soon(self._stop_queue, producer)
        return True

    def _apply_queue_state(self, state: QueueState, at_start: bool) -> None:
        if not at_start and state.active is not None:
            action = "start" if state.active else "stop"
            self.apply_signal(QueueSignal(action, state.queue, state.local_limit))
            if not state.active:
                return
        if state.paused is not None:
            self.apply_signal(QueueSignal("pause" if state.paused else "resume", state.queue))
        if state.local_limit is not None:
            self.apply_signal(QueueSignal("scale", state.queue, state.local_limit))

    def _start_queue(self, queue: str, limit: int | None) -> bool:
        producing = self._producing
        if limit is None or producing is None or self._stop.is_set():
            return False
        producer = self._producer(queue, limit)
        self.producers[queue] = producer
        producing.start_soon(producer.run)
        heartbeat = self._loops.get(Heartbeat)
        if heartbeat is not None:
            heartbeat.wake()
        return True

    async def _stop_queue(self, producer: Producer) -> None:
        """Stop one queue as ``stop()`` stops them all: running jobs get the grace
        period, then go back ``available``; its heartbeat row goes last."""
        producer.stop_fetching()
        with anyio.move_on_after(self._grace):
            await producer.wait_drained()
        producer.cancel_running()
        await producer.wait_drained()
        if self.config.cluster:
            cluster = cast("ClusterEngine", self.engine)
            with contextlib.suppress(Exception):  # a stale row ages out; the jobs were acked
                await self.database.run(cluster.delete_heartbeats, [producer.uuid])

    def queue_infos(self, queue: str | None = None) -> list[QueueInfo]:
        """This node's queues (or one of them) as ``check_queue`` reports them."""
        return [
            QueueInfo(
                queue=producer.queue,
                node=self.config.node,
                instance_id=self.instance_id,
                limit=producer.limit,
                running=tuple(producer.running_ids()),
                paused=producer.paused,
                started_at=producer.started_at,
                updated_at=self.clock(),
            )
            for producer in self.producers.values()
            if queue is None or producer.queue == queue
        ]

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
        """Run ``fn(items)`` on the runtime's loop from any thread (at once on it);
        nothing when it has stopped (producers poll when they come back)."""
        listed = list(items)
        self.on_loop(lambda: fn(listed))

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

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn()`` on the runtime's loop from any thread and return its result
        (None when the runtime has stopped)."""
        token = self._token
        if token is None:
            return None
        if threading.get_ident() == self._loop_thread:
            return fn()
        # RuntimeError: the loop is gone (stopping right now).
        with contextlib.suppress(RuntimeError):
            return anyio.from_thread.run_sync(fn, token=token)
        return None

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


def _loop_for(
    plugin: Plugin, config: RuntimeConfig, is_leader: Callable[[], bool], outage: Outage
) -> Loop:
    return Loop(
        plugin.name,
        plugin.tick,
        interval=lambda: plugin.interval,
        jitter=plugin.jitter,
        immediate=plugin.immediate,
        error_backoff=config.error_backoff,
        leader_only=plugin.leader_only,
        is_leader=is_leader,
        outage=outage,
    )
