"""The workers ours.py runs, in an importable module.

They live outside the adapter script because Oban resolves a job's worker by
module name in whichever process fetches it: a worker defined in ``__main__``
would be unknown to W5's child processes. Each records what the harness needs
(how many ran, when each started) in module globals; a benchmark process runs
one workload, so nothing is shared between measurements.
"""

from __future__ import annotations

import threading
import time

import anyio

from oban import Job, Worker, worker

QUEUE = "bench"

_lock = threading.Lock()
done = 0
"""Jobs whose process() returned, in this process."""
starts: dict[int, float] = {}
"""W4/W7: job number (args["n"]) -> time.time() when process() began."""
durations: list[float] = []
"""W7: how long each 1 ms job's body really took (anyio.sleep overshoots)."""
target: int | None = None
finished = threading.Event()
"""Set when ``done`` reaches ``target``: the harness waits on it instead of polling,
which would compete with the runtime for the GIL."""


def expect(jobs: int) -> None:
    global target
    target = jobs
    if done >= jobs:
        finished.set()


def _count() -> None:
    global done
    with _lock:
        done += 1
        if target is not None and done >= target:
            finished.set()


@worker(queue=QUEUE)
class AsyncNoop(Worker):
    """Does nothing, on the event loop."""

    async def process(self, job: Job) -> None:
        _count()


@worker(queue=QUEUE)
class SyncNoop(Worker):
    """Does nothing, in a worker thread (as every ``def process`` worker does)."""

    def process(self, job: Job) -> None:
        _count()


@worker(queue=QUEUE)
class AsyncStamp(Worker):
    """W4: notes when it started, on the event loop."""

    async def process(self, job: Job) -> None:
        starts[int(job.args["n"])] = time.time()
        _count()


@worker(queue=QUEUE)
class SyncStamp(Worker):
    """W4: notes when it started, in a worker thread."""

    def process(self, job: Job) -> None:
        starts[int(job.args["n"])] = time.time()
        _count()


@worker(queue=QUEUE)
class AsyncMillisecond(Worker):
    """W7: a 1 ms ``async def`` job (an awaited sleep), noting its start and duration."""

    async def process(self, job: Job) -> None:
        started = time.time()
        starts[int(job.args["n"])] = started
        began = time.perf_counter()
        await anyio.sleep(0.001)
        durations.append(time.perf_counter() - began)
        _count()
