"""Workers the conformance suite runs on engines that execute jobs (Inline)."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel

from oban import Cancel, Job, Record, Snooze, Worker, job, worker

SNOOZE_SECONDS = 90
FAIL_BACKOFF = 7


@worker(queue="conformance")
class Succeed(Worker):
    def process(self, job: Job) -> None:
        return None


@worker(queue="conformance", max_attempts=3)
class Fail(Worker):
    def process(self, job: Job) -> None:
        raise RuntimeError(f"boom on attempt {job.attempt}")

    def backoff(self, job: Job) -> int:
        return FAIL_BACKOFF


@worker(queue="conformance")
class CancelIt(Worker):
    def process(self, job: Job) -> Cancel:
        return Cancel("not wanted")


@worker(queue="conformance")
class SnoozeIt(Worker):
    def process(self, job: Job) -> Snooze:
        return Snooze(SNOOZE_SECONDS)


@worker(queue="conformance")
class Echo(Worker):
    """Completes, recording the args exactly as the worker saw them."""

    def process(self, job: Job) -> Record:
        return Record(job.args)


@worker(queue="conformance")
class AsyncEcho(Worker):
    """``async def`` worker: needs an event loop even when enqueued from sync code."""

    async def process(self, job: Job) -> Record:
        await anyio.lowlevel.checkpoint()
        return Record({"async": True, **job.args})


_calls_lock = threading.Lock()
function_calls: list[tuple[int, int]] = []


@job(queue="conformance")
def add(a: int, b: int) -> None:
    with _calls_lock:
        function_calls.append((a, b))
