"""``Oban``: configuration, lifecycle and the public operations, sync and async.

Each operation is a synchronous engine call on a connection. The sync method
makes that call in the caller's thread; the ``_async`` twin moves the very
same call to a worker thread, or into the caller's ``AsyncSession`` /
``AsyncConnection`` through ``run_sync``. Nothing is written twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeAlias, cast

import anyio
import anyio.from_thread
import sniffio
import sqlalchemy as sa
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal
from sqlalchemy.engine import Connection

from . import _registry, telemetry
from .config import (
    CANCEL_CHECK_INTERVAL,
    LEADER_LEASE,
    POLL_INTERVAL,
    PRUNE_INTERVAL,
    PRUNE_LIMIT,
    PRUNE_MAX_AGE,
    RESCUE_AFTER,
    SHUTDOWN_GRACE,
    STAGE_INTERVAL,
    check_backend,
    check_count,
    check_name,
    check_queues,
    check_testing,
    runtime_config,
)
from .cron import CronEntry, check_cron, check_timezone, cron_entries_of_workers
from .engines import create_bind, engine_for
from .engines.base import Capability, Changed, ClusterEngine, Engine, JobFilter, check_job_id
from .engines.inline import Inline
from .engines.signals import QueueSignal, queue_signal
from .engines.stats import queue_stats
from .errors import (
    AlreadyRunningError,
    ConfigError,
    InstanceNotFoundError,
    JobValidationError,
    NotRunningError,
)
from .job import Job, JobState, utc_now
from .observability import otel
from .queue_info import QueueInfo
from .runtime.database import AnyConn, Database, SyncConn
from .runtime.runtime import Runtime

__all__ = ["Oban"]

WorkerRef: TypeAlias = "type | Callable[..., Any] | str"
"""A worker in a filter: its class, its ``@job`` function, or its stored name."""

MAX_PAGE = 1_000
"""The most jobs one ``list_jobs`` call returns."""

logger = logging.getLogger("oban")

_warned_main: set[str] = set()


def _otel_reader(oban: Oban) -> Callable[[], list[otel.QueueFigures]]:
    """The database figures OpenTelemetry's gauges report for ``oban`` while it runs
    (held weakly: an instance dropped without ``close()`` reports nothing)."""
    ref = weakref.ref(oban)

    def read() -> list[otel.QueueFigures]:
        instance = ref()
        if instance is None or instance._runtime is None:
            return []
        now = instance.clock()
        with instance.engine.transaction() as conn:
            stats = queue_stats(conn, prefix=instance.prefix)
        return [
            otel.QueueFigures(
                queue, {state.value: count for state, count in figures.counts.items()},
                figures.lag(now),
            )
            for queue, figures in sorted(stats.items())
        ]  # fmt: skip

    return read


def _warn_main_worker(name: str) -> None:
    """Once per worker: a worker defined in ``__main__`` cannot be found by another process."""
    if name in _warned_main:
        return
    _warned_main.add(name)
    logger.warning(
        "worker %r is defined in __main__ (the script being run): a worker process "
        "imports workers by module name and cannot find it, so its jobs will fail with "
        "'unknown worker' there. Move it into an importable module",
        name,
    )


def _in_trio() -> bool:
    """Whether this thread is running a trio event loop now."""
    try:
        return sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


class Oban:
    """Runs queues of jobs stored in your database, and enqueues them.

    Args:
        bind: a SQLAlchemy ``Engine`` or a URL (``sqlite:///jobs.db``,
            ``postgresql+psycopg://...``). May be ``None`` with ``testing="inline"``.
            Behind PgBouncer's transaction pooling pass
            ``oban.engines.create_bind(url, connect_args=PGBOUNCER_CONNECT_ARGS)``
            (psycopg's prepared statements off; jobs are then found by the poll).
        queues: queue name -> how many of its jobs run at once on this node.
        engine: an engine instance; chosen from ``bind``'s dialect when omitted.
        name: the name workers find this instance by (``@worker(oban=...)``).
        node: this node's name in ``attempted_by``; the host name by default.
        prefix: PostgreSQL schema holding the Oban tables.
        cron: periodic jobs, ``[("*/5 * * * *", Worker, {"args": {...}, "queue":
            ..., "priority": ...}), ...]`` (also ``@worker(cron=...)``); the
            leader inserts each slot's job once, cluster-wide.
        timezone: the IANA zone cron expressions are read in (default UTC).
        cron_catch_up: seconds of slots missed while no leader ran that a new
            leader inserts late; None (default): only the latest missed slot.
        leader_lease: seconds a leader's lease lasts (it renews at a third).
        rescue_after: seconds without a heartbeat after which a node's
            executing jobs are rescued (heartbeats come at least 3 times as often).
        prune: seconds finished jobs are kept (default 60); False or None keeps them all.
        prune_limit: the most jobs one pruning transaction deletes.
        prune_interval: seconds between pruner runs.
        testing: ``"inline"`` runs jobs inside ``enqueue``; ``"manual"`` stores
            them without running any queue.
        poll_interval: seconds between fetches when nothing signals new jobs.
        stage_interval: seconds between moves of due scheduled jobs to available.
        shutdown_grace: seconds ``stop()`` lets running jobs finish.
        cancel_check_interval: seconds between checks whether jobs running
            here were cancelled by another process (SQLite) or while a
            notification was lost (PostgreSQL).
        backend: event loop for ``start()``'s background thread, ``"asyncio"``
            or ``"trio"`` (``async with`` uses the caller's loop).
        telemetry_log: log every telemetry event through :mod:`logging` (logger
            ``oban.events``): True or ``"kv"`` as key=value text, ``"json"`` as
            JSON; off by default. One handler per process, however many instances ask.
        telemetry_log_level: the level of those records (failures: WARNING at least).
        telemetry_otel: OpenTelemetry traces and metrics, on by default whenever
            ``opentelemetry-api`` is importable (a no-op until the app installs an
            SDK); False turns them off, process-wide (the providers are too).
        clock: returns the current aware UTC time (injected in tests).

    Example:
        >>> oban = Oban("sqlite:///jobs.db", queues={"default": 10})
        >>> oban.migrate()
        >>> with oban:
        ...     SendWelcome.enqueue({"user_id": 1})
    """

    def __init__(
        self,
        bind: sa.Engine | str | sa.URL | None = None,
        *,
        queues: dict[str, int] | None = None,
        engine: Engine | None = None,
        name: str = "oban",
        node: str | None = None,
        prefix: str | None = None,
        cron: object = None,
        timezone: str = "UTC",
        testing: Literal["inline", "manual"] | None = None,
        poll_interval: float = POLL_INTERVAL,
        stage_interval: float = STAGE_INTERVAL,
        shutdown_grace: float = SHUTDOWN_GRACE,
        cancel_check_interval: float = CANCEL_CHECK_INTERVAL,
        leader_lease: float = LEADER_LEASE,
        rescue_after: float = RESCUE_AFTER,
        prune: float | bool | None = PRUNE_MAX_AGE,
        prune_limit: int = PRUNE_LIMIT,
        prune_interval: float = PRUNE_INTERVAL,
        cron_catch_up: float | None = None,
        backend: Literal["asyncio", "trio"] = "asyncio",
        clock: Callable[[], datetime] = utc_now,
        telemetry_log: bool | Literal["kv", "json"] = False,
        telemetry_log_level: int | str = logging.INFO,
        telemetry_otel: bool | None = None,
    ) -> None:
        self.testing = check_testing(testing)
        self.backend = check_backend(backend)
        self.name = check_name(name)
        self.node = node or socket.gethostname()
        self.queues = check_queues(queues)
        self.clock = clock
        self.timezone = check_timezone(timezone)
        self._cron: tuple[CronEntry, ...] = check_cron(cron)
        self._config = runtime_config(
            queues=self.queues,
            node=self.node,
            name=self.name,
            testing=self.testing,
            poll_interval=poll_interval,
            stage_interval=stage_interval,
            shutdown_grace=shutdown_grace,
            cancel_check_interval=cancel_check_interval,
            leader_lease=leader_lease,
            rescue_after=rescue_after,
            prune=prune,
            prune_limit=prune_limit,
            prune_interval=prune_interval,
            timezone=self.timezone,
            cron_catch_up=cron_catch_up,
        )
        self.bind = self._make_bind(bind)
        if engine is None:
            if testing == "inline":
                engine = Inline()
            elif self.bind is None:
                raise ConfigError(
                    "Oban needs a database: pass a SQLAlchemy Engine or a URL such as "
                    "'sqlite:///jobs.db', or testing='inline' for tests without one"
                )
            else:
                engine = engine_for(
                    self.bind, prefix=prefix, owns_bind=isinstance(bind, (str, sa.URL))
                )
        self.engine: Engine = engine
        self.prefix = prefix
        self._database = Database(engine)
        self._runtime: Runtime | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._serving: Future[None] | None = None
        self._task_group: TaskGroup | None = None
        self._stopping = False
        self._stop_lock = threading.Lock()
        if telemetry_log:
            from .observability.log import attach_logger

            attach_logger(
                "kv" if telemetry_log is True else telemetry_log, level=telemetry_log_level
            )
        if telemetry_otel is not None:
            otel.set_enabled(telemetry_otel)
        self._otel_reader: int | None = None
        _registry.register(self.name, self)

    @staticmethod
    def _make_bind(bind: sa.Engine | str | sa.URL | None) -> sa.Engine | None:
        if isinstance(bind, sa.Engine) and bind.dialect.is_async:
            raise ConfigError(
                f"bind uses the async driver {bind.dialect.driver!r}, which Oban cannot run "
                "synchronously: pass the URL string instead (async drivers are mapped to "
                "their sync twin), or an Engine with a sync driver "
                "(postgresql+psycopg://, sqlite:///)"
            )
        if bind is None or isinstance(bind, sa.Engine):
            return bind
        if type(bind).__module__.startswith("sqlalchemy.ext.asyncio"):
            raise ConfigError(
                "bind is an AsyncEngine; Oban needs a sync one: pass the URL string "
                "(async drivers are mapped to their sync twin) or async_engine.url"
            )
        if isinstance(bind, (str, sa.URL)):
            try:
                return create_bind(bind)
            except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
                # ValueError: SQLAlchemy's parser on a port that is not a number.
                raise ConfigError(f"cannot use database URL {str(bind)!r}: {exc}") from exc
        raise ConfigError(
            f"bind must be a SQLAlchemy Engine or a URL string, got {type(bind).__name__}"
        )

    @classmethod
    def get_instance(cls, name: str = "oban") -> Oban:
        """The instance registered under ``name`` (the latest one created)."""
        found = _registry.lookup(name)
        if not isinstance(found, cls):
            raise InstanceNotFoundError(f"{found!r}, registered as {name!r}, is not an Oban")
        return found

    def __repr__(self) -> str:
        return f"Oban(name={self.name!r}, engine={self.engine.name!r}, queues={self.queues!r})"

    # -- schema ---------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the Oban tables in this instance's database."""
        from .migrations import migrate

        if self.bind is None:
            return
        migrate(self.bind, prefix=self.prefix)

    # -- enqueueing -------------------------------------------------------------------

    def _insert(self, conn: Connection, jobs: list[Job]) -> list[Job]:
        return self.engine.insert_jobs(conn, jobs, self.clock())

    def _job_list(self, jobs: Iterable[Job]) -> list[Job]:
        listed = list(jobs)
        for job in listed:
            if not isinstance(job, Job):
                raise TypeError(
                    f"enqueue takes Job objects (Worker.new(...)), got {type(job).__name__}"
                )
            if (
                job.worker.startswith("__main__.")
                and Capability.INLINE not in self.engine.capabilities
            ):
                _warn_main_worker(job.worker)
        return listed

    def _inserted(self, jobs: list[Job]) -> list[Job]:
        if telemetry.active:
            conflicts = sum(1 for job in jobs if job.conflict)
            data = {"count": len(jobs), "conflicts": conflicts, "name": self.name}
            telemetry.emit("job.insert", {**data, "queues": sorted({job.queue for job in jobs})})
        runtime = self._runtime
        if runtime is not None:
            runtime.notify_insert({job.queue for job in jobs})
        return jobs

    def enqueue(self, job: Job, *, conn: SyncConn | None = None) -> Job:
        """Insert one job; with ``conn`` inside that Session's/Connection's transaction."""
        return self.enqueue_many([job], conn=conn)[0]

    def enqueue_many(self, jobs: Iterable[Job], *, conn: SyncConn | None = None) -> list[Job]:
        """Insert many jobs in one statement per batch; returns them saved, in order."""
        listed = self._job_list(jobs)
        with otel.sending(listed) as sent:
            alone = self.engine.single_statement_insert(listed)
            saved = self._database.call(conn, self._insert, listed, alone=alone)
            sent.saved(saved)
        return self._inserted(saved)

    async def enqueue_async(self, job: Job, *, conn: AnyConn | None = None) -> Job:
        """Async twin of :meth:`enqueue`; ``conn`` may be an AsyncSession/AsyncConnection."""
        return (await self.enqueue_many_async([job], conn=conn))[0]

    async def enqueue_many_async(
        self, jobs: Iterable[Job], *, conn: AnyConn | None = None
    ) -> list[Job]:
        """Async twin of :meth:`enqueue_many`."""
        listed = self._job_list(jobs)
        with otel.sending(listed) as sent:
            alone = self.engine.single_statement_insert(listed)
            saved = await self._database.call_async(conn, self._insert, listed, alone=alone)
            sent.saved(saved)
        return self._inserted(saved)

    # -- reading ----------------------------------------------------------------------

    def get_job(self, job_id: int, *, conn: SyncConn | None = None) -> Job | None:
        """The job with ``job_id``, or None if there is none."""
        return self._database.call(conn, self.engine.get_job, check_job_id(job_id))

    async def get_job_async(self, job_id: int, *, conn: AnyConn | None = None) -> Job | None:
        """Async twin of :meth:`get_job`."""
        checked = check_job_id(job_id)
        return await self._database.call_async(conn, self.engine.get_job, checked)

    # -- lifecycle: sync --------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True from a start until its stop, unless the runtime ended on its own
        (a crash, which :meth:`stop` then raises)."""
        serving = self._serving
        return self._runtime is not None and not (serving is not None and serving.done())

    @property
    def cron_entries(self) -> tuple[CronEntry, ...]:
        """The cron table this instance's leader runs: ``cron=`` and the
        ``@worker(cron=...)``/``@job(cron=...)`` workers imported so far, each
        once (``entry.expression.text``, ``entry.worker``, ``entry.options``)."""
        entries = {entry.key: entry for entry in self._cron + cron_entries_of_workers(self.name)}
        return tuple(entries.values())

    @property
    def is_leader(self) -> bool:
        """Whether this node leads its cluster now: it stages, prunes, rescues and
        inserts cron jobs for every node. False while not running."""
        runtime = self._runtime
        return runtime is not None and runtime.is_leader

    @property
    def instance_id(self) -> str | None:
        """The id of this run of the instance, fresh at every start (None when stopped)."""
        runtime = self._runtime
        return None if runtime is None else runtime.instance_id

    def _refuse_running(self) -> None:
        if self._runtime is not None:
            raise AlreadyRunningError(f"{self!r} is already running: stop it before starting again")

    def _new_runtime(self) -> Runtime:
        self._refuse_running()
        # @worker(cron=...) entries are read now: their modules may have been
        # imported after this instance was made.
        config = dataclasses.replace(self._config, cron=self.cron_entries)
        self._runtime = Runtime(self._database, config, self.clock)
        if self._otel_reader is None and otel.enabled and self._persistent():
            self._otel_reader = otel.add_reader(self.name, _otel_reader(self))
        return self._runtime

    def start(self) -> None:
        """Run the queues in a background thread until :meth:`stop`."""
        self._refuse_running()
        if self.backend == "trio" and _in_trio():
            raise ConfigError(
                f"{self!r}.start() (or `with oban:`) was called inside a running trio event "
                "loop, and trio cannot hand work to a second trio loop from there: use "
                "`async with oban:` or `await oban.start_async()` in async code, or "
                "Oban(..., backend='asyncio') for the background thread"
            )
        portal_cm = anyio.from_thread.start_blocking_portal(self.backend, name=f"oban-{self.name}")
        portal = portal_cm.__enter__()
        try:
            # Made in the thread's event loop, not the caller's (which may be a
            # running trio or asyncio loop): its events belong to the loop that waits on them.
            runtime = portal.call(self._new_runtime)
            portal.call(runtime.preflight)
            self._serving, _ = portal.start_task(runtime.serve)
        except BaseException:
            self._runtime = None
            portal_cm.__exit__(None, None, None)
            raise
        self._portal_cm, self._portal = portal_cm, portal

    def stop(self, grace: float | None = None) -> None:
        """Stop fetching, let running jobs finish for ``grace`` seconds, then stop.

        Called again while a stop is under way (from another thread: a second
        signal, say), it shortens that stop's grace period to ``grace``
        (``0``: cancel the running jobs now; they go back ``available``) and
        returns at once; the first call returns when everything has stopped.
        """
        runtime, portal, portal_cm = self._runtime, self._portal, self._portal_cm
        if runtime is None or portal is None or portal_cm is None:
            raise NotRunningError(f"{self!r} was not started with start()")
        if self._claim_stop():
            if grace is not None:
                with contextlib.suppress(RuntimeError):  # the first stop just finished
                    portal.call(runtime.shorten_grace, grace)
            return
        try:
            if self._serving is None or not self._serving.done():
                portal.call(runtime.stop, grace)
            if self._serving is not None:
                self._serving.result()  # a runtime that died raises its error here
        finally:
            self._runtime = self._portal = self._portal_cm = self._serving = None
            self._stopping = False
            portal_cm.__exit__(None, None, None)

    def _claim_stop(self) -> bool:
        """Mark this instance as stopping; True if another call already is."""
        with self._stop_lock:
            already, self._stopping = self._stopping, True
        return already

    def __enter__(self) -> Oban:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle: async -------------------------------------------------------------

    async def start_async(self) -> None:
        """Run the queues in the current event loop (asyncio or trio)."""
        runtime = self._new_runtime()
        try:
            await runtime.preflight()
        except BaseException:
            self._runtime = None
            raise
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(runtime.serve)
        except BaseException as exc:
            self._runtime = None
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group

    async def stop_async(self, grace: float | None = None) -> None:
        """Async twin of :meth:`stop`."""
        await self._stop_async(grace, None)

    async def _stop_async(self, grace: float | None, exc: BaseException | None) -> None:
        runtime, task_group = self._runtime, self._task_group
        if runtime is None or task_group is None:
            raise NotRunningError(f"{self!r} was not started with start_async()")
        if self._claim_stop():  # another task is stopping it: only shorten its grace
            if grace is not None:
                runtime.shorten_grace(grace)
            return
        try:
            await runtime.stop(grace)
        finally:
            self._runtime = self._task_group = None
            self._stopping = False
            await task_group.__aexit__(
                None if exc is None else type(exc), exc, None if exc is None else exc.__traceback__
            )

    async def __aenter__(self) -> Oban:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_async(None, exc)

    def close(self) -> None:
        """Release the database pool Oban created (not a pool you passed in), and
        stop being the instance workers enqueue through under this name."""
        _registry.unregister(self.name, self)
        if self._otel_reader is not None:
            otel.remove_reader(self._otel_reader)
            self._otel_reader = None
        self.engine.close()

    # -- managing jobs ------------------------------------------------------------------
    #
    # Each operation is one engine call in one transaction (the caller's with
    # ``conn=``). Filters: ``queue``, ``worker`` and ``state`` take one value or
    # a list, ``ids`` a list; the filters given AND together; none at all
    # selects EVERY job, as a bare queryable does in Elixir Oban.

    def _cancel(self, conn: Connection, where: JobFilter) -> Changed:
        return self.engine.cancel_jobs(conn, where, self.clock())

    def _retry(self, conn: Connection, where: JobFilter) -> Changed:
        return self.engine.retry_jobs(conn, where, self.clock())

    def _delete(self, conn: Connection, where: JobFilter) -> Changed:
        return self.engine.delete_jobs(conn, where)

    def _list(
        self, conn: Connection, where: JobFilter, limit: int, before: int | None
    ) -> list[Job]:
        return self.engine.list_jobs(conn, where, limit, before)

    @staticmethod
    def _one(job_id: object) -> JobFilter:
        return JobFilter(ids=(check_job_id(job_id),))

    def _changed(self, changed: Changed, conn: object) -> int:
        """Tell this node's runtime what a management call did; return the count."""
        runtime = self._runtime
        if runtime is not None:
            runtime.apply_change(changed, committed=not self._database.joins(conn))
        return changed.count

    def cancel_job(self, job_id: int, *, conn: SyncConn | None = None) -> bool:
        """Cancel one job; True if it existed and was not final yet.

        A job executing on any node is stopped there: an ``async def`` job at
        once, while ``job.cancelled()`` becomes true for ``def`` and ``async
        def`` jobs alike so that a thread can stop at a safe point. A missing
        id, or a job already completed, discarded or cancelled, gives False.
        """
        changed = self._database.call(conn, self._cancel, self._one(job_id))
        return self._changed(changed, conn) == 1

    def cancel_many(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: SyncConn | None = None,
    ) -> int:
        """Cancel every matching job that is not final yet; returns how many.

        **With no filter at all this cancels EVERY job** in the table (as
        Elixir Oban does for a bare query). ``worker`` takes a worker class,
        a ``@job`` function or a worker name (or a list of them). Executing
        jobs are stopped where they run, as with :meth:`cancel_job`.
        """
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        return self._changed(self._database.call(conn, self._cancel, where), conn)

    def retry_job(self, job_id: int, *, conn: SyncConn | None = None) -> bool:
        """Make one job available to run now; True if it existed and was not
        already available or executing.

        A completed, discarded, cancelled, retryable or scheduled job becomes
        ``available`` with ``scheduled_at`` now, and ``max_attempts`` is raised
        to at least ``attempt + 1`` so even a job that used up its attempts
        runs once more. A missing id gives False.
        """
        changed = self._database.call(conn, self._retry, self._one(job_id))
        return self._changed(changed, conn) == 1

    def retry_many(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: SyncConn | None = None,
    ) -> int:
        """Retry every matching job that is not available or executing; returns how many.

        **With no filter at all this retries EVERY job** in the table,
        completed ones included: pass ``state=`` (e.g. ``["discarded",
        "cancelled"]``) to retry only failures. Filters as in :meth:`cancel_many`.
        """
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        return self._changed(self._database.call(conn, self._retry, where), conn)

    def delete_job(self, job_id: int, *, conn: SyncConn | None = None) -> bool:
        """Delete one job; True if it existed and was not executing.

        An executing job is never deleted (its node will write its outcome):
        cancel it first. A missing id gives False.
        """
        changed = self._database.call(conn, self._delete, self._one(job_id))
        return self._changed(changed, conn) == 1

    def delete_many(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: SyncConn | None = None,
    ) -> int:
        """Delete every matching job that is not executing; returns how many.

        **With no filter at all this deletes EVERY job** in the table that is
        not executing. Filters as in :meth:`cancel_many`.
        """
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        return self._changed(self._database.call(conn, self._delete, where), conn)

    async def cancel_job_async(self, job_id: int, *, conn: AnyConn | None = None) -> bool:
        """Async twin of :meth:`cancel_job`."""
        changed = await self._database.call_async(conn, self._cancel, self._one(job_id))
        return self._changed(changed, conn) == 1

    async def cancel_many_async(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: AnyConn | None = None,
    ) -> int:
        """Async twin of :meth:`cancel_many` (**no filter: every job**)."""
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        changed = await self._database.call_async(conn, self._cancel, where)
        return self._changed(changed, conn)

    async def retry_job_async(self, job_id: int, *, conn: AnyConn | None = None) -> bool:
        """Async twin of :meth:`retry_job`."""
        changed = await self._database.call_async(conn, self._retry, self._one(job_id))
        return self._changed(changed, conn) == 1

    async def retry_many_async(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: AnyConn | None = None,
    ) -> int:
        """Async twin of :meth:`retry_many` (**no filter: every job**)."""
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        changed = await self._database.call_async(conn, self._retry, where)
        return self._changed(changed, conn)

    async def delete_job_async(self, job_id: int, *, conn: AnyConn | None = None) -> bool:
        """Async twin of :meth:`delete_job`."""
        changed = await self._database.call_async(conn, self._delete, self._one(job_id))
        return self._changed(changed, conn) == 1

    async def delete_many_async(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        conn: AnyConn | None = None,
    ) -> int:
        """Async twin of :meth:`delete_many` (**no filter: every job**)."""
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        changed = await self._database.call_async(conn, self._delete, where)
        return self._changed(changed, conn)

    # -- querying jobs ------------------------------------------------------------------

    @staticmethod
    def _page(limit: object, before: object) -> tuple[int, int | None]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise JobValidationError(f"limit must be an int from 1 to {MAX_PAGE}, got {limit!r}")
        if before is not None and (isinstance(before, bool) or not isinstance(before, int)):
            raise JobValidationError(f"before must be a job id (int) or None, got {before!r}")
        return limit, None if before is None else check_job_id(before, "before (a job id)")

    def list_jobs(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        limit: int = 50,
        before: int | None = None,
        conn: SyncConn | None = None,
    ) -> list[Job]:
        """Jobs matching the filters, newest (highest id) first, at most ``limit`` (1-1000).

        Pages by id: pass the id of the last job of one page as ``before`` to
        get the next page; an empty list means there is no more. Unlike
        offsets, pages stay right while jobs are inserted or deleted.
        Filters as in :meth:`cancel_many`; none lists all jobs.

        Example:
            >>> page = oban.list_jobs(state="discarded", limit=100)
            >>> while page:
            ...     show(page)
            ...     page = oban.list_jobs(state="discarded", limit=100, before=page[-1].id)
        """
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        page, cursor = self._page(limit, before)
        return self._database.call(conn, self._list, where, page, cursor)

    async def list_jobs_async(
        self,
        *,
        queue: str | Iterable[str] | None = None,
        worker: WorkerRef | Iterable[WorkerRef] | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        ids: Iterable[int] | None = None,
        limit: int = 50,
        before: int | None = None,
        conn: AnyConn | None = None,
    ) -> list[Job]:
        """Async twin of :meth:`list_jobs`."""
        where = JobFilter.of(queue=queue, worker=worker, state=state, ids=ids)
        page, cursor = self._page(limit, before)
        return await self._database.call_async(conn, self._list, where, page, cursor)

    # -- queue control ------------------------------------------------------------------

    def _control_signal(self, action: str, queue: object, limit: object = None) -> QueueSignal:
        if not isinstance(queue, str) or not queue.strip():
            raise ConfigError(f"queue must be a non-blank queue name, got {queue!r}")
        checked = None if limit is None else check_count("limit (jobs at once)", limit)
        if action in ("scale", "start") and checked is None:
            raise ConfigError(f"{action}_queue needs limit=, the jobs of {queue!r} run at once")
        return QueueSignal(action, queue, checked)

    def _write_queue_state(self, conn: Connection, signal: QueueSignal) -> None:
        cluster = cast("ClusterEngine", self.engine)
        cluster.set_queue_state(
            conn,
            self.name,
            signal.queue,
            paused={"pause": True, "resume": False}.get(signal.action),
            local_limit=signal.limit,
            active={"start": True, "stop": False}.get(signal.action),
            now=self.clock(),
            signal=queue_signal(signal),
        )

    def _cluster_wide(self, local_only: bool) -> bool:
        """Whether a queue command goes to every node (through the database)."""
        if local_only or Capability.CLUSTER not in self.engine.capabilities:
            if self._runtime is None:
                raise NotRunningError(
                    f"{self!r} is not running: a queue command with local_only=True (or on "
                    f"the {self.engine.name} engine, which has no shared queues) acts on "
                    "this node's running queues; start it first"
                )
            return False
        return True

    def _apply_here(self, signal: QueueSignal, *, required: bool) -> None:
        runtime = self._runtime
        applied = runtime is not None and runtime.on_loop(lambda: runtime.apply_signal(signal))
        if required and not applied:
            raise ConfigError(
                f"queue {signal.queue!r} does not run on this node (queues here: "
                f"{sorted(runtime.producers) if runtime else []}); "
                "leave out local_only=True to reach every node"
            )

    def _queue_command(self, signal: QueueSignal, local_only: bool) -> None:
        if self._cluster_wide(local_only):
            self._database.call(None, self._write_queue_state, signal)
        self._apply_here(signal, required=local_only and signal.action != "start")

    async def _queue_command_async(self, signal: QueueSignal, local_only: bool) -> None:
        if self._cluster_wide(local_only):
            await self._database.call_async(None, self._write_queue_state, signal)
        self._apply_here(signal, required=local_only and signal.action != "start")

    def pause_queue(self, queue: str, *, local_only: bool = False) -> None:
        """Stop fetching from ``queue`` on every node (running jobs finish).

        The pause is kept in the database: a node that starts later stays
        paused until :meth:`resume_queue`. ``local_only=True``: this node only,
        until it stops.
        """
        self._queue_command(self._control_signal("pause", queue), local_only)

    def resume_queue(self, queue: str, *, local_only: bool = False) -> None:
        """Fetch from ``queue`` again, on every node (or this one)."""
        self._queue_command(self._control_signal("resume", queue), local_only)

    def scale_queue(self, queue: str, *, limit: int, local_only: bool = False) -> None:
        """Run at most ``limit`` jobs of ``queue`` at once on each node (kept for
        nodes that start later, like a pause)."""
        self._queue_command(self._control_signal("scale", queue, limit), local_only)

    def start_queue(self, queue: str, *, limit: int, local_only: bool = False) -> None:
        """Start running ``queue`` with ``limit`` on every running node (or this one);
        where it already runs, it is scaled to ``limit``."""
        self._queue_command(self._control_signal("start", queue, limit), local_only)

    def stop_queue(self, queue: str, *, local_only: bool = False) -> None:
        """Stop running ``queue`` on every running node (or this one): fetching
        stops, running jobs get the shutdown grace, then go back ``available``."""
        self._queue_command(self._control_signal("stop", queue), local_only)

    async def pause_queue_async(self, queue: str, *, local_only: bool = False) -> None:
        """Async twin of :meth:`pause_queue`."""
        await self._queue_command_async(self._control_signal("pause", queue), local_only)

    async def resume_queue_async(self, queue: str, *, local_only: bool = False) -> None:
        """Async twin of :meth:`resume_queue`."""
        await self._queue_command_async(self._control_signal("resume", queue), local_only)

    async def scale_queue_async(self, queue: str, *, limit: int, local_only: bool = False) -> None:
        """Async twin of :meth:`scale_queue`."""
        await self._queue_command_async(self._control_signal("scale", queue, limit), local_only)

    async def start_queue_async(self, queue: str, *, limit: int, local_only: bool = False) -> None:
        """Async twin of :meth:`start_queue`."""
        await self._queue_command_async(self._control_signal("start", queue, limit), local_only)

    async def stop_queue_async(self, queue: str, *, local_only: bool = False) -> None:
        """Async twin of :meth:`stop_queue`."""
        await self._queue_command_async(self._control_signal("stop", queue), local_only)

    def _local_infos(self, queue: str | None) -> list[QueueInfo]:
        runtime = self._runtime
        if runtime is None:
            return []
        infos = runtime.on_loop(lambda: runtime.queue_infos(queue))
        return list(infos or [])

    def _heartbeat_infos(self, conn: Connection, queue: str | None) -> list[QueueInfo]:
        cluster = cast("ClusterEngine", self.engine)
        since = self._live_since(conn, self.clock())
        return [
            QueueInfo.from_heartbeat(
                queue=beat.queue,
                node=beat.node,
                meta=beat.meta,
                started_at=beat.started_at,
                updated_at=beat.updated_at,
            )
            for beat in cluster.list_heartbeats(conn, self.name, since)
            if queue is None or beat.queue == queue
        ]

    def _unrun_queues(self, scan: int) -> dict[str, int]:
        """Queues with available jobs that no live node runs (for ``oban queues``),
        with up to ``scan`` of their waiting jobs counted; ``{}`` without nodes."""
        if Capability.CLUSTER not in self.engine.capabilities:
            return {}
        cluster = cast("ClusterEngine", self.engine)
        clock_now = self.clock()

        def unrun(conn: Connection) -> dict[str, int]:
            return cluster.unrun_queues(conn, self.name, self._live_since(conn, clock_now), scan)

        return self._database.call(None, unrun)

    def _live_since(self, conn: Connection, clock_now: datetime) -> datetime:
        """Heartbeats newer than this are of live nodes: ``rescue_after`` back from
        the clock heartbeats are stamped with (the database's where it has one)."""
        cluster = cast("ClusterEngine", self.engine)
        now = cluster.cluster_time(conn, clock_now)
        return now - timedelta(seconds=self._config.rescue_after)

    def _lags(self, conn: Connection) -> dict[str, float]:
        """Each queue's lag: seconds its oldest available job has waited."""
        now = self.clock()
        return {
            queue: stats.lag(now) for queue, stats in queue_stats(conn, prefix=self.prefix).items()
        }

    def _cluster_infos(
        self, conn: Connection, queue: str | None
    ) -> tuple[list[QueueInfo], dict[str, float]]:
        return self._heartbeat_infos(conn, queue), self._lags(conn)

    @staticmethod
    def _with_lags(infos: list[QueueInfo], lags: dict[str, float] | None) -> list[QueueInfo]:
        if lags is None:
            return infos
        return [dataclasses.replace(info, lag=lags.get(info.queue, 0.0)) for info in infos]

    def _merge_infos(
        self, found: tuple[list[QueueInfo], dict[str, float]], queue: str | None
    ) -> list[QueueInfo]:
        """Every node's heartbeat, with this node's own rows replaced by its live state."""
        remote, lags = found
        local = self._local_infos(queue)
        here = {info.instance_id for info in local}
        infos = [info for info in remote if info.instance_id not in here] + local
        ordered = sorted(infos, key=lambda info: (info.queue, info.node, info.started_at))
        return self._with_lags(ordered, lags)

    def _persistent(self) -> bool:
        return Capability.PERSISTENT in self.engine.capabilities

    def check_queue(self, queue: str, *, local_only: bool = False) -> list[QueueInfo]:
        """``queue`` on each node running it: limit, running job ids, paused, node,
        instance id, started_at (from each node's latest heartbeat; this node's live),
        and the queue's lag (seconds its oldest available job has waited, from the
        database; None on Inline)."""
        self._control_signal("check", queue)
        return self.check_all_queues(local_only=local_only, _queue=queue)

    def check_all_queues(
        self, *, local_only: bool = False, _queue: str | None = None
    ) -> list[QueueInfo]:
        """Every queue on every node (``local_only``: on this node), as :meth:`check_queue`."""
        if local_only or Capability.CLUSTER not in self.engine.capabilities:
            lags = self._database.call(None, self._lags) if self._persistent() else None
            return self._with_lags(self._local_infos(_queue), lags)
        found = self._database.call(None, self._cluster_infos, _queue)
        return self._merge_infos(found, _queue)

    async def check_queue_async(self, queue: str, *, local_only: bool = False) -> list[QueueInfo]:
        """Async twin of :meth:`check_queue`."""
        self._control_signal("check", queue)
        return await self.check_all_queues_async(local_only=local_only, _queue=queue)

    async def check_all_queues_async(
        self, *, local_only: bool = False, _queue: str | None = None
    ) -> list[QueueInfo]:
        """Async twin of :meth:`check_all_queues`."""
        if local_only or Capability.CLUSTER not in self.engine.capabilities:
            lags = await self._database.call_async(None, self._lags) if self._persistent() else None
            return self._with_lags(self._local_infos(_queue), lags)
        found = await self._database.call_async(None, self._cluster_infos, _queue)
        return self._merge_infos(found, _queue)

    # -- testing modes ------------------------------------------------------------------

    def _switch_testing(self, mode: Literal["inline", "manual"]) -> Callable[[], None]:
        """Put this stopped instance in a testing mode; returns the undo.

        For ``oban.testing.mode()``, which wraps it in a ``with`` block: tests
        switch the instance their application already built instead of
        building another. ``"inline"`` swaps in an Inline engine; ``"manual"``
        keeps (or, on an instance built inline, builds) the SQL engine on
        ``bind``; both run no queue if started. A running instance is refused,
        at the switch and at the undo: its runtime holds the engine in use.
        """
        from dataclasses import replace

        def refuse_running(when: str) -> None:
            if self.is_running:
                raise AlreadyRunningError(
                    f"{self!r} is running: stop it before {when} a testing mode"
                )

        refuse_running("switching to")
        checked = check_testing(mode)
        if checked is None:
            raise ConfigError("a testing mode is 'inline' or 'manual', got None")
        saved = (self.testing, self.engine, self._database, self._config)
        engine: Engine = self.engine
        if checked == "inline":
            engine = Inline()
        elif isinstance(engine, Inline):
            if self.bind is None:
                raise ConfigError(
                    f"{self!r} has no database to store jobs in: manual mode needs a bind"
                )
            engine = engine_for(self.bind, prefix=self.prefix, owns_bind=False)
        self.testing, self.engine = checked, engine
        self._database = self._database if engine is saved[1] else Database(engine)
        self._config = replace(self._config, queues={})

        def restore() -> None:
            refuse_running("leaving")
            if engine is not saved[1]:
                engine.close()
                if self.bind is not None and isinstance(saved[1], Inline):
                    self.bind.dispose()  # the Inline instance's close() would never close them
            self.testing, self.engine, self._database, self._config = saved

        return restore
