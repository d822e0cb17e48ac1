"""``Oban``: configuration, lifecycle and the public operations, sync and async.

Each operation is a synchronous engine call on a connection. The sync method
makes that call in the caller's thread; the ``_async`` twin moves the very
same call to a worker thread, or into the caller's ``AsyncSession`` /
``AsyncConnection`` through ``run_sync``. Nothing is written twice.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, TypeAlias, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import sqlalchemy as sa
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from typing_extensions import TypeVarTuple, Unpack

from .engines import create_bind, engine_for
from .engines.base import Capability, Engine
from .engines.inline import Inline
from .errors import ConfigError, InstanceNotFoundError, NotRunningError
from .job import Job, utc_now
from .runtime.database import Database
from .runtime.runtime import Runtime, RuntimeConfig

__all__ = ["Oban"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

if TYPE_CHECKING:
    # sqlalchemy.ext.asyncio needs greenlet; import it only when a caller
    # actually passes an async session or connection.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

SyncConn: TypeAlias = "Connection | Session"
AnyConn: TypeAlias = "Connection | Session | AsyncConnection | AsyncSession"

TESTING_MODES = ("inline", "manual")
BACKENDS = ("asyncio", "trio")


def _check_queues(queues: object) -> dict[str, int]:
    if queues is None:
        return {}
    if not isinstance(queues, dict):
        raise ConfigError(f"queues must be a dict of name -> limit, got {type(queues).__name__}")
    checked: dict[str, int] = {}
    for name, limit in queues.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"queue names must be non-blank strings, got {name!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"queue {name!r} needs a limit of at least 1 (jobs run at once), got {limit!r}"
            )
        checked[name] = limit
    return checked


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        )
    return float(value)


class Oban:
    """Runs queues of jobs stored in your database, and enqueues them.

    Args:
        bind: a SQLAlchemy ``Engine`` or a URL (``sqlite:///jobs.db``,
            ``postgresql+psycopg://...``). May be ``None`` with ``testing="inline"``.
        queues: queue name -> how many of its jobs run at once on this node.
        engine: an engine instance; chosen from ``bind``'s dialect when omitted.
        name: the name workers find this instance by (``@worker(oban=...)``).
        node: this node's name in ``attempted_by``; the host name by default.
        prefix: PostgreSQL schema holding the Oban tables.
        testing: ``"inline"`` runs jobs inside ``enqueue``; ``"manual"`` stores
            them without running any queue.
        poll_interval: seconds between fetches when nothing signals new jobs.
        stage_interval: seconds between moves of due scheduled jobs to available.
        shutdown_grace: seconds ``stop()`` lets running jobs finish.
        backend: event loop for ``start()``'s background thread, ``"asyncio"``
            or ``"trio"`` (``async with`` uses the caller's loop).
        clock: returns the current aware UTC time (injected in tests).

    Example:
        >>> oban = Oban("sqlite:///jobs.db", queues={"default": 10})
        >>> oban.migrate()
        >>> with oban:
        ...     SendWelcome.enqueue({"user_id": 1})
    """

    _instances: ClassVar[dict[str, Oban]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

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
        poll_interval: float = 1.0,
        stage_interval: float = 1.0,
        shutdown_grace: float = 15.0,
        backend: Literal["asyncio", "trio"] = "asyncio",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if testing is not None and testing not in TESTING_MODES:
            raise ConfigError(f"testing must be one of {TESTING_MODES} or None, got {testing!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.node = node or socket.gethostname()
        self.queues = _check_queues(queues)
        self.testing = testing
        self.backend = backend
        self.clock = clock
        self.timezone = timezone
        self.cron = cron
        self._config = RuntimeConfig(
            queues={} if testing else self.queues,
            node=self.node,
            poll_interval=_check_seconds("poll_interval", poll_interval),
            stage_interval=_check_seconds("stage_interval", stage_interval),
            shutdown_grace=_check_seconds("shutdown_grace", shutdown_grace, allow_zero=True),
        )
        self.bind = self._make_bind(bind, engine, testing)
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
        self._database = Database(engine, threads=self._config.db_threads)
        self._runtime: Runtime | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._serving: Future[None] | None = None
        self._task_group: TaskGroup | None = None
        with Oban._instances_lock:
            Oban._instances[name] = self

    @staticmethod
    def _make_bind(
        bind: sa.Engine | str | sa.URL | None, engine: Engine | None, testing: str | None
    ) -> sa.Engine | None:
        if bind is None or isinstance(bind, sa.Engine):
            return bind
        if isinstance(bind, (str, sa.URL)):
            try:
                return create_bind(bind)
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise ConfigError(f"cannot use database URL {str(bind)!r}: {exc}") from exc
        raise ConfigError(
            f"bind must be a SQLAlchemy Engine or a URL string, got {type(bind).__name__}"
        )

    @classmethod
    def get_instance(cls, name: str = "oban") -> Oban:
        """The instance registered under ``name`` (the latest one created)."""
        try:
            return cls._instances[name]
        except KeyError:
            raise InstanceNotFoundError(
                f"no Oban instance named {name!r}: create one with Oban(..., name={name!r}) "
                "before enqueueing through a worker"
            ) from None

    def __repr__(self) -> str:
        return f"Oban(name={self.name!r}, engine={self.engine.name!r}, queues={self.queues!r})"

    # -- schema ---------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the Oban tables in this instance's database."""
        from .migrations import migrate

        if self.bind is None:
            return
        migrate(self.bind, prefix=self.prefix)

    # -- connections ------------------------------------------------------------------

    def _call(
        self, conn: SyncConn | None, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]
    ) -> T:
        if conn is None or Capability.TRANSACTIONAL not in self.engine.capabilities:
            return self._database.call(fn, *args)
        if isinstance(conn, Session):
            return fn(conn.connection(), *args)
        if isinstance(conn, Connection):
            return fn(conn, *args)
        raise TypeError(
            f"conn must be a SQLAlchemy Session or Connection, got {type(conn).__name__}; "
            "use the _async method for AsyncSession / AsyncConnection"
        )

    async def _call_async(
        self, conn: AnyConn | None, fn: Callable[[Connection, Unpack[Ts]], T], *args: Unpack[Ts]
    ) -> T:
        if conn is None or Capability.TRANSACTIONAL not in self.engine.capabilities:
            return await self._database.run(fn, *args)
        if isinstance(conn, (Session, Connection)):
            # A sync session in async code: its I/O still must not block the loop.
            return await anyio.to_thread.run_sync(
                lambda: self._call(conn, fn, *args), limiter=self._database.limiter
            )
        if type(conn).__module__.startswith("sqlalchemy.ext.asyncio"):
            from sqlalchemy.ext.asyncio import (
                AsyncConnection,
                AsyncSession,
            )

            if isinstance(conn, AsyncSession):
                return await conn.run_sync(lambda session: fn(session.connection(), *args))
            if isinstance(conn, AsyncConnection):
                return await conn.run_sync(lambda sync_conn: fn(sync_conn, *args))
        raise TypeError(
            "conn must be a SQLAlchemy Session, Connection, AsyncSession or "
            f"AsyncConnection, got {type(conn).__name__}"
        )

    # -- enqueueing -------------------------------------------------------------------

    def _insert(self, conn: Connection, jobs: list[Job]) -> list[Job]:
        return self.engine.insert_jobs(conn, jobs, self.clock())

    @staticmethod
    def _job_list(jobs: Iterable[Job]) -> list[Job]:
        listed = list(jobs)
        for job in listed:
            if not isinstance(job, Job):
                raise TypeError(
                    f"enqueue takes Job objects (Worker.new(...)), got {type(job).__name__}"
                )
        return listed

    def _inserted(self, jobs: list[Job]) -> list[Job]:
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
        return self._inserted(self._call(conn, self._insert, listed))

    async def enqueue_async(self, job: Job, *, conn: AnyConn | None = None) -> Job:
        """Async twin of :meth:`enqueue`; ``conn`` may be an AsyncSession/AsyncConnection."""
        return (await self.enqueue_many_async([job], conn=conn))[0]

    async def enqueue_many_async(
        self, jobs: Iterable[Job], *, conn: AnyConn | None = None
    ) -> list[Job]:
        """Async twin of :meth:`enqueue_many`."""
        listed = self._job_list(jobs)
        return self._inserted(await self._call_async(conn, self._insert, listed))

    # -- reading ----------------------------------------------------------------------

    def get_job(self, job_id: int, *, conn: SyncConn | None = None) -> Job | None:
        """The job with ``job_id``, or None if there is none."""
        return self._call(conn, self.engine.get_job, job_id)

    async def get_job_async(self, job_id: int, *, conn: AnyConn | None = None) -> Job | None:
        """Async twin of :meth:`get_job`."""
        return await self._call_async(conn, self.engine.get_job, job_id)

    # -- lifecycle: sync --------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._runtime is not None

    def _new_runtime(self) -> Runtime:
        if self._runtime is not None:
            raise ConfigError(f"{self!r} is already running")
        self._runtime = Runtime(self.engine, self._config, self.clock)
        return self._runtime

    def start(self) -> None:
        """Run the queues in a background thread until :meth:`stop`."""
        runtime = self._new_runtime()
        portal_cm = anyio.from_thread.start_blocking_portal(self.backend, name=f"oban-{self.name}")
        portal = portal_cm.__enter__()
        try:
            self._serving, _ = portal.start_task(runtime.serve)
        except BaseException:
            self._runtime = None
            portal_cm.__exit__(None, None, None)
            raise
        self._portal_cm, self._portal = portal_cm, portal

    def stop(self, grace: float | None = None) -> None:
        """Stop fetching, let running jobs finish for ``grace`` seconds, then stop."""
        runtime, portal, portal_cm = self._runtime, self._portal, self._portal_cm
        if runtime is None or portal is None or portal_cm is None:
            raise NotRunningError(f"{self!r} was not started with start()")
        try:
            portal.call(runtime.stop, grace)
            if self._serving is not None:
                self._serving.result()
        finally:
            self._runtime = self._portal = self._portal_cm = self._serving = None
            portal_cm.__exit__(None, None, None)

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
        try:
            await runtime.stop(grace)
        finally:
            self._runtime = self._task_group = None
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
        """Release the database pool Oban created (not a pool you passed in)."""
        self.engine.close()
