"""``process_job``: one attempt of one job, through the real execution path, with no database.

A unit test of a worker should see exactly what a queue would make of it
(the outcome, the backoff, the timeout, the errors entry), so the attempt
runs through :mod:`oban.attempt` and its :class:`~oban.outcomes.Ack` is
applied to the job as the engine would apply it to the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from oban.attempt import execute, execute_blocking
from oban.errors import JobValidationError
from oban.job import Job, JobState, utc_now
from oban.worker import JobFunction, build_job, worker_spec

from ._common import NODE, WorkerRef, worker_class

__all__ = ["build", "process_job", "process_job_async"]

_COPIED = ("worker", "queue", "max_attempts", "priority", "args", "meta", "tags", "errors")


def _function_args(function: JobFunction[..., Any], args: object) -> dict[str, Any]:
    """A ``@job`` function's args given as a dict, checked against its parameters."""
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise JobValidationError(
            f"args of a @job function are a dict of its parameters, got "
            f"{type(args).__name__}: {args!r}"
        )
    try:
        bound = function.signature.bind(**args)
    except TypeError as exc:
        raise JobValidationError(f"{function.__oban_worker__.name}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def build(worker: WorkerRef | Job, args: Mapping[str, Any] | None, options: dict[str, Any]) -> Job:
    """The unsaved job ``worker.new(args, **options)`` would make (a ``Job`` passes through)."""
    if isinstance(worker, Job):
        if args is not None or options:
            raise JobValidationError("pass a Job alone, or a worker with args and options")
        return worker
    if isinstance(worker, JobFunction):
        bound = _function_args(worker, args)
        spec = worker.__oban_worker__
        return build_job(spec, bound, {**worker._options, **options})
    return build_job(worker_spec(worker_class(worker)), args, options)


def _executing(job: Job, now: datetime) -> Job:
    """The job as a fetch would hand it to the executor: attempt 1, attempted now."""
    running = Job.from_row(
        {
            **{name: getattr(job, name) for name in _COPIED},
            "state": JobState.EXECUTING,
            "attempt": job.attempt + 1,
            "attempted_by": [NODE],
            "inserted_at": now,
            "scheduled_at": job.scheduled_for(now),
            "attempted_at": now,
        }
    )
    running.extra = dict(job.extra)
    return running


def process_job(
    worker: WorkerRef | Job, args: Mapping[str, Any] | None = None, **options: Any
) -> Job:
    """Run one attempt of a job in this thread, without a database; return the job after it.

    ``worker`` is a ``@worker`` class, a ``@job`` function (``args`` is then a
    dict of its parameters) or a worker name; ``options`` are those of
    ``Worker.new`` and are validated as there (:class:`~oban.JobValidationError`).
    A ``Job`` from ``Worker.new(...)`` may be passed instead, alone.

    The returned job is what the stored row would hold: ``state``
    (``completed``, ``retryable``, ``discarded``, ``cancelled``, or
    ``scheduled`` after a snooze), ``errors``, ``meta`` (``Record``, snooze
    counts), ``scheduled_at`` (backoff, snooze), ``attempt == 1`` and
    ``attempted_at`` set. It never raises the job's exception: read it in
    ``job.errors[-1]["error"]``. Use :func:`process_job_async` from async code
    when the worker is ``async def``.

    Example:
        >>> job = process_job(SendWelcome, {"user_id": 1})
        >>> job.state
        <JobState.COMPLETED: 'completed'>
    """
    now = utc_now()
    job = _executing(build(worker, args, options), now)
    return execute_blocking(job, clock=utc_now).apply(job)


async def process_job_async(
    worker: WorkerRef | Job, args: Mapping[str, Any] | None = None, **options: Any
) -> Job:
    """Async twin of :func:`process_job`: the attempt runs in this event loop, as a
    queue runs it (``async def`` on the loop, ``def`` in a worker thread)."""
    now = utc_now()
    job = _executing(build(worker, args, options), now)
    ack = await execute(job, limiter=None, clock=utc_now)
    return ack.apply(job)
