"""Workers for the tests of ``oban.testing``, importable by name."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel

from oban import Cancel, Job, Record, Snooze, Worker, job, worker

RUNS: list[Any] = []
"""What ``Counter`` ran, in order (reset by the tests that read it)."""
_runs_lock = threading.Lock()


@worker(queue="default")
class Ok(Worker):
    def process(self, job: Job) -> None:
        return None


@worker(queue="default", max_attempts=3)
class Fails(Worker):
    def process(self, job: Job) -> None:
        raise ValueError(f"boom {job.args.get('n', '')}".strip())

    def backoff(self, job: Job) -> int:
        return 30


@worker()
class Snoozer(Worker):
    def process(self, job: Job) -> Snooze:
        return Snooze(60)


@worker()
class Canceller(Worker):
    def process(self, job: Job) -> Cancel:
        return Cancel("not wanted")


@worker()
class Recorder(Worker):
    def process(self, job: Job) -> Record:
        return Record({"echo": job.args})


@worker()
class AsyncOk(Worker):
    async def process(self, job: Job) -> Record:
        await anyio.lowlevel.checkpoint()
        return Record("async")


@worker(timeout=0.05)
class Hangs(Worker):
    async def process(self, job: Job) -> None:
        await anyio.sleep_forever()


@worker()
class Enqueuer(Worker):
    """Enqueues an ``Ok`` in its own queue: the job a recursive drain must also run."""

    def process(self, job: Job) -> None:
        Ok.enqueue({"from": job.id}, queue=job.queue)


@worker(queue="race")
class Counter(Worker):
    def process(self, job: Job) -> None:
        with _runs_lock:
            RUNS.append(job.args["n"])


@job(queue="math")
def add(a: int, b: int = 2) -> Record:
    return Record(a + b)
