"""The threads a queue runs its ``def`` jobs in (``oban.runtime.thread_pool``).

What a user relies on: a queue never holds more threads than it runs jobs at
once, code in a ``def`` job can still reach the event loop through
``anyio.from_thread``, and a job abandoned at its timeout or at a stop
neither blocks the queue's other jobs nor the stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest
import sniffio

from oban import Job, JobState, Oban, Worker, worker
from oban.runtime.thread_pool import ThreadPool
from tests.conftest import wait_for

THREADS: set[int] = set()
LIBRARIES: list[str] = []
_lock = threading.Lock()


@worker(queue="pooled")
class RecordsThread(Worker):
    def process(self, job: Job) -> None:
        with _lock:
            THREADS.add(threading.get_ident())


@worker(queue="pooled")
class CallsTheLoop(Worker):
    def process(self, job: Job) -> None:
        library = anyio.from_thread.run_sync(sniffio.current_async_library)
        with _lock:
            LIBRARIES.append(library)


def _run_to_completion(
    make_oban: Callable[..., Oban], backend: str, limit: int, jobs: list[Job]
) -> None:
    """Run ``jobs`` on a queue of ``limit`` until every one has completed."""
    with make_oban(queues={"pooled": limit}, backend=backend) as oban:
        saved = oban.enqueue_many(jobs)

        def completed() -> bool:
            found = [oban.get_job(job.id or 0) for job in saved]
            return all(job is not None and job.state is JobState.COMPLETED for job in found)

        wait_for(completed, message=f"all {len(saved)} jobs completed")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_queues_def_jobs_run_on_at_most_its_limit_of_threads(
    make_oban: Callable[..., Oban], backend: str
) -> None:
    THREADS.clear()
    _run_to_completion(make_oban, backend, 3, [RecordsThread.new({"n": n}) for n in range(60)])
    assert 1 <= len(THREADS) <= 3


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_def_job_can_call_into_the_event_loop_with_anyio_from_thread(
    make_oban: Callable[..., Oban], backend: str
) -> None:
    LIBRARIES.clear()
    _run_to_completion(make_oban, backend, 2, [CallsTheLoop.new({"n": n}) for n in range(4)])
    assert [backend] * 4 == LIBRARIES


@pytest.mark.anyio
async def test_a_cancelled_call_is_abandoned_and_the_pool_goes_on() -> None:
    release = threading.Event()
    ended = threading.Event()

    def blocks() -> str:
        release.wait(30)
        ended.set()
        return "late"

    async with anyio.create_task_group() as threads:
        pool = ThreadPool(threads, "test")
        with anyio.move_on_after(0.05) as scope:
            await pool.run(blocks)
        assert scope.cancelled_caught, "the caller is not held by its thread"
        # The abandoned thread still runs: the next call gets a thread of its own.
        assert await pool.run(lambda: 42) == 42
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        pool.close()
        threads.cancel_scope.cancel()  # as the producer does: the stop never waits for it
    pool.dispose()
    assert not ended.is_set()
    release.set()
    assert await anyio.to_thread.run_sync(ended.wait, 10), "the abandoned call ran to its end"
