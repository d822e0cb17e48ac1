"""Workers that run until cancelled, for the cancel tests (``tests.runtime.cancel_workers.X``).

Each records, thread-safely, that it started and how it stopped, so a test
can wait for exactly that instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import anyio

from oban import Job, Worker, worker

GIVE_UP = 30.0
"""A worker that is never cancelled ends after this many seconds, so a broken
cancel fails the test at its deadline instead of hanging the run."""


@dataclass
class Stops:
    lock: threading.Lock = field(default_factory=threading.Lock)
    starts: list[int] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        with self.lock:
            self.starts.clear()
            self.stopped.clear()
        self.release = threading.Event()

    def start(self, job: Job) -> None:
        with self.lock:
            self.starts.append(job.id or 0)

    def stop(self, job: Job, how: str) -> None:
        with self.lock:
            self.stopped[job.id or 0] = how

    def started(self, job_id: int | None) -> bool:
        with self.lock:
            return job_id in self.starts

    def how(self, job_id: int | None) -> str | None:
        with self.lock:
            return self.stopped.get(job_id or 0)

    def runs(self, job_id: int | None) -> int:
        with self.lock:
            return self.starts.count(job_id or 0)


STOPS = Stops()


@worker(queue="default")
class AsyncWaits(Worker):
    """Waits until cancelled; records whether ``job.cancelled()`` was true then."""

    async def process(self, job: Job) -> None:
        STOPS.start(job)
        try:
            with anyio.move_on_after(GIVE_UP):
                await anyio.sleep_forever()
            STOPS.stop(job, "gave up")
        finally:
            if STOPS.how(job.id) is None:
                STOPS.stop(job, "cancelled" if job.cancelled() else "interrupted")


@worker(queue="default")
class SyncPolls(Worker):
    """A ``def`` worker that stops at a safe point once ``job.cancelled()`` is true.

    It then returns normally (``None``: completed), which the runtime must not
    write over the cancel.
    """

    def process(self, job: Job) -> None:
        STOPS.start(job)
        deadline = time.monotonic() + GIVE_UP
        while not job.cancelled():
            if time.monotonic() > deadline:
                STOPS.stop(job, "gave up")
                return
            time.sleep(0.005)  # one unit of the job's work
        STOPS.stop(job, "noticed")


@worker(queue="default")
class SyncStubborn(Worker):
    """A ``def`` worker that ignores cancellation until the test releases it."""

    def process(self, job: Job) -> None:
        STOPS.start(job)
        STOPS.release.wait(GIVE_UP)
        STOPS.stop(job, "cancelled" if job.cancelled() else "released")


@worker(queue="default")
class Quick(Worker):
    async def process(self, job: Job) -> None:
        STOPS.start(job)
        STOPS.stop(job, "done")
