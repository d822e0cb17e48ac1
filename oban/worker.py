"""Workers: ``@worker`` on a class, ``@job`` on a function, and name resolution.

A worker is stored in the database by name, ``"package.module.QualName"``, the
form oban-py writes, so a job can be inserted by one process (or by Elixir
Oban, or by oban-py) and run by another. Resolution looks in the registry
first; failing that it imports the module part of the name and accepts the
object only if it is a registered worker, never an arbitrary callable.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from typing_extensions import ParamSpec, TypedDict, Unpack

from . import _registry as instances
from .cron_schedule import CronExpression, parse_expression
from .errors import ConfigError, JobValidationError, UnknownWorkerError
from .job import Job
from .unique import ReplaceSpec, UniqueSpec, parse_replace, parse_unique

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session

__all__ = [
    "JobFunction",
    "Worker",
    "WorkerSpec",
    "as_worker_class",
    "job",
    "resolve_worker",
    "worker",
    "worker_name",
]

P = ParamSpec("P")
R = TypeVar("R")
W = TypeVar("W", bound=type)

# Options a caller may pass to `new()` on top of the worker's defaults.
JOB_OPTIONS = frozenset(
    {
        "queue",
        "max_attempts",
        "priority",
        "tags",
        "meta",
        "scheduled_at",
        "schedule_in",
        "unique",
        "replace",
    }
)

_registry: dict[str, type] = {}


@dataclass(frozen=True)
class WorkerSpec:
    """A worker's name and the defaults every job it makes starts from."""

    name: str
    oban: str = "oban"
    queue: str = "default"
    max_attempts: int = 20
    priority: int = 0
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    unique: UniqueSpec | None = None
    replace: ReplaceSpec | None = None
    timeout: float | None = None
    cron: tuple[CronExpression, ...] = ()
    """``@worker(cron=...)``: schedules the leader enqueues this worker on (args ``{}``)."""

    def job_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "queue": self.queue,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "tags": list(self.tags),
            "meta": dict(self.meta),
        }
        if self.unique is not None:
            options["unique"] = self.unique
        if self.replace is not None:
            options["replace"] = self.replace
        return options


def worker_name(obj: Callable[..., Any] | type) -> str:
    """The stored name of a class or function: ``module.QualName``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def build_job(spec: WorkerSpec, args: Mapping[str, Any] | None, options: Mapping[str, Any]) -> Job:
    """Make an unsaved job from a worker's defaults and per-job options."""
    unknown = set(options) - JOB_OPTIONS
    if unknown:
        raise JobValidationError(
            f"unknown job option {', '.join(sorted(map(repr, unknown)))} for worker "
            f"{spec.name!r}; valid options: {', '.join(sorted(JOB_OPTIONS))}"
        )
    merged = {**spec.job_options(), **options}
    if args is not None and not isinstance(args, Mapping):
        raise JobValidationError(f"args must be a dict, got {type(args).__name__}: {args!r}")
    # A per-job unique= (or replace=) replaces the worker's whole, never merged.
    return Job(spec.name, args=args, **merged)


class Worker:
    """Base class giving a worker its typed ``new``/``enqueue`` methods.

    Subclassing is optional: ``@worker`` adds the same methods to any class.
    Subclass it when you want a type checker to see them.
    """

    __oban_worker__: ClassVar[WorkerSpec]

    @classmethod
    def new(cls, args: Mapping[str, Any] | None = None, /, **options: Any) -> Job:
        """An unsaved job for this worker; ``options`` override the defaults."""
        return build_job(cls.__oban_worker__, args, options)

    @classmethod
    def enqueue(
        cls,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        conn: Connection | Session | None = None,
        **options: Any,
    ) -> Job:
        """Insert a job for this worker through its ``Oban`` instance (sync)."""
        job = cls.new(args, **options)
        return instances.lookup(cls.__oban_worker__.oban).enqueue(job, conn=conn)

    @classmethod
    async def enqueue_async(
        cls,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        conn: AsyncConnection | AsyncSession | Connection | Session | None = None,
        **options: Any,
    ) -> Job:
        """Insert a job for this worker through its ``Oban`` instance (async)."""
        job = cls.new(args, **options)
        return await instances.lookup(cls.__oban_worker__.oban).enqueue_async(job, conn=conn)


class WorkerOptions(TypedDict, total=False):
    """Options of ``@worker`` and ``@job``: a worker's defaults for its jobs."""

    queue: str
    max_attempts: int
    priority: int
    tags: list[str] | tuple[str, ...]
    meta: Mapping[str, Any]
    unique: bool | Mapping[str, Any] | UniqueSpec | None
    replace: Mapping[str, Any] | ReplaceSpec | None
    timeout: float | None
    oban: str
    cron: str | list[str] | tuple[str, ...]


def _parse_cron(name: str, cron: object) -> tuple[CronExpression, ...]:
    """``cron=`` of a worker, checked at decoration so a typo fails at import, not at 3 am."""
    if cron is None:
        return ()
    if isinstance(cron, str):
        cron = [cron]
    if not isinstance(cron, (list, tuple)):
        raise ConfigError(
            f"cron= of worker {name!r} must be a cron expression or a list of them, "
            f"got {type(cron).__name__}: {cron!r}"
        )
    try:
        parsed = [parse_expression(text) for text in cron]
    except ConfigError as exc:
        raise ConfigError(f"cron= of worker {name!r}: {exc}") from exc
    return tuple(dict.fromkeys(parsed))  # the same schedule twice is one schedule


def _spec_from(name: str, options: WorkerOptions) -> WorkerSpec:
    unknown = set(options) - set(WorkerOptions.__annotations__)
    if unknown:
        raise JobValidationError(
            f"unknown worker option {', '.join(sorted(map(repr, unknown)))}; "
            f"valid options: {', '.join(WorkerOptions.__annotations__)}"
        )
    tags = options.get("tags")
    meta = options.get("meta")
    timeout = options.get("timeout")
    # tuple("email") / dict([...]) would guess; reject the wrong shape by name.
    if isinstance(tags, (str, bytes)):
        raise JobValidationError(f"tags must be a list of strings, got {tags!r}")
    if meta is not None and not isinstance(meta, Mapping):
        raise JobValidationError(f"meta must be a dict of JSON values, got {meta!r}")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise JobValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    fields: dict[str, Any] = {
        **options,
        "tags": tuple(tags or ()),
        "meta": dict(meta or {}),
        # Parsed once here: a bad option fails at decoration, naming the part.
        "unique": parse_unique(options.get("unique")),
        "replace": parse_replace(options.get("replace")),
        "cron": _parse_cron(name, options.get("cron")),
    }
    spec = WorkerSpec(name=name, **fields)
    # Validate the defaults once, at decoration time, not at the first enqueue.
    build_job(spec, None, {})
    return spec


def worker(**options: Unpack[WorkerOptions]) -> Callable[[W], W]:
    """Make a class with a ``process(self, job)`` method a worker.

    ``process`` may be ``def`` (run in a thread) or ``async def`` (run on the
    event loop). Optional ``backoff(self, job) -> seconds`` and
    ``timeout(self, job) -> seconds | None`` methods refine retries and limits.

    ``cron="@daily"`` (or a list of expressions) has the leader enqueue the
    worker on that schedule, with args ``{}`` and the worker's defaults; a bad
    expression raises :class:`~oban.ConfigError` here, at decoration.

    Example:
        >>> @worker(queue="mailers", max_attempts=5, tags=["email"])
        ... class SendWelcome:
        ...     def process(self, job):
        ...         send(job.args["user_id"])
        >>> SendWelcome.new({"user_id": 1}, schedule_in=60).queue
        'mailers'
    """

    def decorate(cls: W) -> W:
        if not callable(getattr(cls, "process", None)):
            raise TypeError(
                f"@worker needs a class with a process(self, job) method; "
                f"{cls.__qualname__} has none"
            )
        spec = _spec_from(worker_name(cls), options)
        cls.__oban_worker__ = spec  # type: ignore[attr-defined]
        if not issubclass(cls, Worker):
            for method in ("new", "enqueue", "enqueue_async"):
                setattr(cls, method, Worker.__dict__[method])
        _registry[spec.name] = cls
        return cls

    return decorate


class JobFunction(Generic[P, R]):
    """A function made a worker by ``@job``.

    Calling it runs the function directly; ``new``/``enqueue``/``enqueue_async``
    take the function's own arguments and store them, by parameter name, as the
    job's args. ``options(...)`` sets per-job options such as ``schedule_in``.
    """

    def __init__(
        self,
        func: Callable[P, R],
        worker_class: type[Worker],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.func = func
        self.worker_class = worker_class
        self.signature = inspect.signature(func)
        self._options = dict(options or {})
        functools.update_wrapper(self, func)

    @property
    def __oban_worker__(self) -> WorkerSpec:
        return self.worker_class.__oban_worker__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def options(self, **options: Any) -> JobFunction[P, R]:
        """The same function job with per-job options (``schedule_in=60``, ...)."""
        return JobFunction(self.func, self.worker_class, {**self._options, **options})

    def _args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise JobValidationError(f"{self.__oban_worker__.name}: {exc}") from exc
        bound.apply_defaults()
        return dict(bound.arguments)

    def new(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """An unsaved job whose args are this call's arguments."""
        return self.worker_class.new(self._args(args, kwargs), **self._options)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Insert a job whose args are this call's arguments (sync)."""
        return self.worker_class.enqueue(self._args(args, kwargs), **self._options)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Insert a job whose args are this call's arguments (async)."""
        return await self.worker_class.enqueue_async(self._args(args, kwargs), **self._options)


def _check_callable_without_args(func: Callable[..., Any]) -> None:
    """A ``@job(cron=...)`` runs with args ``{}``: every parameter needs a default."""
    try:
        inspect.signature(func).bind()
    except TypeError as exc:
        raise ConfigError(
            f"@job(cron=...) on {worker_name(func)}: its scheduled jobs call it with no "
            f"arguments, but {exc}; give every parameter a default, or use Oban(cron=[...]) "
            "with args"
        ) from exc


def job(**options: Unpack[WorkerOptions]) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Make a plain function (``def`` or ``async def``) a worker.

    Example:
        >>> @job(queue="media")
        ... def resize(path: str, width: int) -> None: ...
        >>> resize.new("a.png", 200).args
        {'path': 'a.png', 'width': 200}
    """

    def decorate(func: Callable[P, R]) -> JobFunction[P, R]:
        if _parse_cron(worker_name(func), options.get("cron")):
            _check_callable_without_args(func)
        target = cast("Callable[..., Any]", func)
        if inspect.iscoroutinefunction(func):

            async def process_async(self: object, job: Job) -> object:
                return await target(**job.args)

            process: Callable[..., object] = process_async
        else:

            def process_sync(self: object, job: Job) -> object:
                return target(**job.args)

            process = process_sync

        worker_class = type(
            func.__name__,
            (Worker,),
            {
                "process": process,
                "__module__": func.__module__,
                "__qualname__": func.__qualname__,
                "__doc__": func.__doc__,
            },
        )
        decorated = worker(**options)(worker_class)
        return JobFunction(func, decorated)

    return decorate


def as_worker_class(obj: object) -> type | None:
    """The worker class of a ``@worker`` class or ``@job`` function, else None.

    A class counts only if it was decorated itself: an undecorated subclass
    inherits ``__oban_worker__`` but would run under its parent's name.
    """
    if isinstance(obj, JobFunction):
        return obj.worker_class
    if isinstance(obj, type) and isinstance(obj.__dict__.get("__oban_worker__"), WorkerSpec):
        return obj
    return None


def resolve_worker(name: str) -> type:
    """The worker class stored under ``name``, importing its module if needed.

    Raises :class:`~oban.UnknownWorkerError` with a message that says what was
    tried; the runtime records it as a failed attempt, so the job retries.
    """
    found = _registry.get(name)
    if found is not None:
        return found
    parts = name.split(".")
    import_errors: list[str] = []
    # "pkg.mod.Outer.Inner": try the longest importable module prefix first.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            import_errors.append(f"{module_name}: {exc}")
            continue
        obj: object = module
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        found = _registry.get(name) or as_worker_class(obj)
        if found is not None:
            _registry[name] = found
            return found
        if obj is not None:
            raise UnknownWorkerError(
                f"unknown worker {name!r}: {name} exists but is not a worker; "
                "decorate it with @worker or @job"
            )
        raise UnknownWorkerError(
            f"unknown worker {name!r}: module {module_name!r} has no "
            f"{'.'.join(parts[split:])!r}; was it renamed or removed? The job will "
            "retry, so deploying code that defines it lets the job run"
        )
    detail = "; ".join(import_errors) or "the name has no module part"
    raise UnknownWorkerError(
        f"unknown worker {name!r}: its module could not be imported ({detail}). "
        "Make sure the worker's module is importable on every node that runs queue "
        "jobs; the job will retry with backoff meanwhile"
    )


def registered_workers() -> tuple[type, ...]:
    """Every worker class registered in this process (decorated or resolved so far)."""
    return tuple(dict.fromkeys(_registry.values()))


def worker_spec(worker_class: type) -> WorkerSpec:
    spec = getattr(worker_class, "__oban_worker__", None)
    if not isinstance(spec, WorkerSpec):  # pragma: no cover - guarded by resolve_worker
        raise UnknownWorkerError(f"{worker_class!r} is not a worker")
    return spec
