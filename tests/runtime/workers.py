"""Workers for the runtime tests, importable by name (``tests.runtime.workers.X``).

In-process side effects go to ``EFFECTS`` (thread-safe), so a job that runs
twice is counted twice. Cross-process runs append one line per attempt to a
file opened with ``O_APPEND`` (``AppendLine``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from oban import Cancel, Job, Record, Snooze, Worker, job, worker


@dataclass
class Effects:
    """What workers did, recorded from any thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: list[tuple[str, int, int]] = field(default_factory=list)
    """(kind, job id, attempt) for every attempt that started."""
    finished: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    max_running: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        with self.lock:
            self.runs.clear()
            self.finished.clear()
            self.children.clear()
            self.running.clear()
            self.max_running.clear()

    def record(self, kind: str, job: Job) -> None:
        with self.lock:
            self.runs.append((kind, job.id or 0, job.attempt))

    def finish(self, job: Job) -> None:
        with self.lock:
            self.finished.append(job.id or 0)

    def started(self, job_id: int | None) -> bool:
        with self.lock:
            return any(run_id == job_id for _, run_id, _ in self.runs)

    def runs_of(self, job_id: int | None) -> list[tuple[str, int, int]]:
        with self.lock:
            return [run for run in self.runs if run[1] == job_id]

    def enter(self, key: str) -> None:
        with self.lock:
            self.running[key] += 1
            self.max_running[key] = max(self.max_running[key], self.running[key])

    def leave(self, key: str) -> None:
        with self.lock:
            self.running[key] -= 1


EFFECTS = Effects()


@worker(queue="default")
class Complete(Worker):
    def process(self, job: Job) -> None:
        EFFECTS.record("sync", job)


@worker(queue="default")
class AsyncComplete(Worker):
    async def process(self, job: Job) -> None:
        await anyio.lowlevel.checkpoint()
        EFFECTS.record("async", job)


@job(queue="default")
def add(a: int, b: int) -> int:
    return a + b


@job(queue="default")
async def async_add(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


@worker(queue="default", max_attempts=3)
class AlwaysFails(Worker):
    def process(self, job: Job) -> None:
        EFFECTS.record("fail", job)
        raise RuntimeError(f"failure number {job.attempt}")

    def backoff(self, job: Job) -> int:
        return 0


@worker(queue="default", max_attempts=5)
class SnoozeOnce(Worker):
    """Snoozes for no time on its first run, then completes."""

    def process(self, job: Job) -> Snooze | None:
        EFFECTS.record("snooze", job)
        if not job.meta.get("snoozed"):
            return Snooze(0)
        return None


@worker(queue="default")
class SnoozeLong(Worker):
    async def process(self, job: Job) -> Snooze:
        return Snooze(3600)


@worker(queue="default")
class Cancels(Worker):
    def process(self, job: Job) -> Cancel:
        EFFECTS.record("cancel", job)
        return Cancel("no longer needed")


@worker(queue="default")
class Records(Worker):
    async def process(self, job: Job) -> Record:
        return Record({"sum": job.args["a"] + job.args["b"], "echo": job.args})


@worker(queue="limited")
class Tracked(Worker):
    """Counts how many of its jobs run at the same time (sync: in threads)."""

    def process(self, job: Job) -> None:
        EFFECTS.enter("sync")
        try:
            time.sleep(0.005)  # hold the slot a moment so jobs overlap
        finally:
            EFFECTS.leave("sync")
        EFFECTS.record("tracked", job)


@worker(queue="limited_async")
class AsyncTracked(Worker):
    """Counts how many of its jobs run at the same time (async: on the loop)."""

    async def process(self, job: Job) -> None:
        EFFECTS.enter("async")
        try:
            await anyio.sleep(0.005)  # hold the slot a moment so jobs overlap
        finally:
            EFFECTS.leave("async")
        EFFECTS.record("tracked", job)


@worker(queue="default")
class Slow(Worker):
    """Starts, then needs a moment to finish: for graceful shutdown."""

    async def process(self, job: Job) -> None:
        EFFECTS.record("slow", job)
        await anyio.sleep(job.args.get("seconds", 0.3))
        EFFECTS.finish(job)


@worker(queue="default")
class SlowSync(Worker):
    def process(self, job: Job) -> None:
        EFFECTS.record("slow", job)
        time.sleep(job.args.get("seconds", 0.3))
        EFFECTS.finish(job)


@worker(queue="default")
class Forever(Worker):
    """Waits on an event nobody sets: only shutdown ends it."""

    async def process(self, job: Job) -> None:
        EFFECTS.record("forever", job)
        await anyio.Event().wait()
        EFFECTS.finish(job)  # never reached


@worker(queue="default")
class Child(Worker):
    def process(self, job: Job) -> None:
        EFFECTS.record("child", job)


@worker(queue="default")
class Parent(Worker):
    """A ``def`` worker that enqueues another job, from its worker thread."""

    def process(self, job: Job) -> None:
        EFFECTS.record("parent", job)
        child = Child.enqueue({"parent": job.id})
        with EFFECTS.lock:
            EFFECTS.children.append(child.id or 0)


@worker(queue="default")
class AsyncParent(Worker):
    """An ``async def`` worker that enqueues another job."""

    async def process(self, job: Job) -> None:
        EFFECTS.record("parent", job)
        child = await Child.enqueue_async({"parent": job.id})
        with EFFECTS.lock:
            EFFECTS.children.append(child.id or 0)


@worker(queue="default")
class AppendLine(Worker):
    """Appends ``"<id> <attempt> <pid>"`` to ``args["log"]``: one line per attempt.

    A single ``write`` on an ``O_APPEND`` descriptor is atomic for short lines,
    so lines from several processes never interleave.
    """

    def process(self, job: Job) -> None:
        line = f"{job.id} {job.attempt} {os.getpid()}\n".encode()
        fd = os.open(job.args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


GATE = threading.Event()
"""Opened by a test to let :class:`Gated` jobs finish."""


@worker(queue="default")
class Gated(Worker):
    """Runs until the test opens the gate: a job that outlives many heartbeats."""

    def process(self, job: Job) -> None:
        EFFECTS.record("gated", job)
        GATE.wait(60)
        EFFECTS.finish(job)
