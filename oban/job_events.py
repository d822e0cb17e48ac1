"""The ``job.start`` / ``job.stop`` / ``job.exception`` events around one attempt.

Both ways an attempt runs (:func:`oban.attempt.execute` in the runtime,
:func:`~oban.attempt.execute_blocking` for Inline and the test helpers) call
:func:`observe` before the job and one of :meth:`Observed.finished` /
:meth:`Observed.interrupted` after it, so every engine emits the same events
with the same fields. With nobody observing :func:`observe` returns None and
the attempt pays one attribute read per check and, with ``opentelemetry-api``
installed, one look at the global providers.
"""

from __future__ import annotations

import time
from typing import Any

from . import telemetry
from .job import Job, JobState
from .observability import otel
from .outcomes import format_error

__all__ = ["Observed", "error_data", "observe"]

FAILED = frozenset({JobState.RETRYABLE, JobState.DISCARDED})
"""States after an attempt that raised: reported as ``job.exception``."""


def error_data(error: BaseException | str) -> dict[str, str]:
    """An error as telemetry gives it: ``type``, ``message`` and ``traceback`` (text)."""
    if isinstance(error, str):
        first, _, _ = error.partition("\n")
        return {"type": "Error", "message": first, "traceback": error}
    return {
        "type": type(error).__qualname__,
        "message": str(error),
        "traceback": format_error(error),
    }


def _queue_time(job: Job) -> float:
    """Seconds the job waited between being due and starting (never negative)."""
    if job.attempted_at is None or job.scheduled_at is None:
        return 0.0
    return max(0.0, (job.attempted_at - job.scheduled_at).total_seconds())


class Observed:
    """One attempt someone observes: when it started, and what to report at its end."""

    __slots__ = ("job", "queue_time", "started", "traced")

    def __init__(self, job: Job, traced: otel.Attempt | None = None) -> None:
        self.job = job
        self.started = time.perf_counter()
        self.queue_time = _queue_time(job)
        self.traced = traced
        if telemetry.active:
            telemetry.emit("job.start", self._data(JobState.EXECUTING))

    def _data(self, state: JobState, **more: Any) -> dict[str, Any]:
        job = self.job
        return {
            "job": job,
            "id": job.id,
            "worker": job.worker,
            "queue": job.queue,
            "attempt": job.attempt,
            "state": state.value,
            "queue_time": self.queue_time,
            **more,
        }

    def finished(self, state: JobState, error: BaseException | str | None) -> None:
        """The attempt ended in ``state``; ``error`` is what it failed with, if it did."""
        duration = time.perf_counter() - self.started
        if self.traced is not None:
            self.traced.finished(state, error)
        if not telemetry.active:
            return
        if state in FAILED:
            data = self._data(
                state, duration=duration, error=error_data(error or "the attempt failed")
            )
            telemetry.emit("job.exception", data)
        else:
            telemetry.emit("job.stop", self._data(state, duration=duration))

    def interrupted(self) -> None:
        """The attempt was cancelled from outside: a cancel of the running job (its row
        is ``cancelled`` already) or a shutdown (it goes back ``available``)."""
        self.finished(JobState.CANCELLED if self.job.cancelled() else JobState.AVAILABLE, None)


def observe(job: Job) -> Observed | None:
    """Start observing an attempt of ``job``; None (and no cost) when nobody listens:
    no telemetry handler, and no OpenTelemetry SDK installed (or it is turned off)."""
    traced = otel.attempt(job) if otel.enabled else None
    if traced is None and not telemetry.active:
        return None
    return Observed(job, traced)
