"""Workers for the observability tests, importable by name (``tests.observability.workers.X``)."""

from __future__ import annotations

import time
from pathlib import Path

from oban import Cancel, Job, Snooze, Worker, worker


@worker(queue="obs")
class Succeed(Worker):
    """Completes (a ``def`` job, in a worker thread)."""

    def process(self, job: Job) -> None:
        return None


@worker(queue="obs")
class AsyncSucceed(Worker):
    """Completes on the event loop."""

    async def process(self, job: Job) -> None:
        return None


class Boom(Exception):
    """What :class:`Fail` raises."""


@worker(queue="obs", max_attempts=3)
class Fail(Worker):
    """Raises, so the attempt is retried."""

    def process(self, job: Job) -> None:
        raise Boom(f"boom {job.args.get('n')}")


@worker(queue="obs")
class Snoozer(Worker):
    def process(self, job: Job) -> Snooze:
        return Snooze(3600)


@worker(queue="obs")
class Canceller(Worker):
    async def process(self, job: Job) -> Cancel:
        return Cancel("not needed")


@worker(queue="obs", unique={"period": 3600})
class Unique(Worker):
    def process(self, job: Job) -> None:
        return None


@worker(queue="obs")
class Gate(Worker):
    """Runs until the file named by ``gate`` exists (another process may create it)."""

    def process(self, job: Job) -> None:
        gate = Path(job.args["gate"])
        while not gate.exists() and not job.cancelled():
            time.sleep(0.02)  # in the job's own thread: polling a file another process makes


SEEN_SPANS: list[tuple[str, int, int]] = []
"""(kind, trace id, span id) of the span current inside :class:`Traced` jobs."""


def _current_span(kind: str) -> None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    SEEN_SPANS.append((kind, context.trace_id, context.span_id))


@worker(queue="obs")
class Traced(Worker):
    """Notes the span current while it runs (in its worker thread)."""

    def process(self, job: Job) -> None:
        _current_span("def")


@worker(queue="obs")
class AsyncTraced(Worker):
    """Notes the span current while it runs (on the event loop)."""

    async def process(self, job: Job) -> None:
        _current_span("async")
