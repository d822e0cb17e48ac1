"""The runtime from plain sync code: ``with Oban(...)`` runs it in a background thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from oban import AlreadyRunningError, ConfigError, JobState, NotRunningError, Oban
from tests.conftest import wait_for
from tests.runtime import workers
from tests.runtime.workers import Effects

FINAL = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)

backends = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def state_of(oban: Oban, job_id: int | None) -> JobState | None:
    assert job_id is not None
    job = oban.get_job(job_id)
    return None if job is None else job.state


def wait_final(oban: Oban, job_id: int | None) -> JobState:
    wait_for(lambda: state_of(oban, job_id) in FINAL, message=f"job {job_id} finished")
    state = state_of(oban, job_id)
    assert state is not None
    return state


@backends
def test_jobs_enqueued_from_the_main_thread_run(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    with make_oban(queues={"default": 4}, backend=backend) as oban:
        jobs = [
            oban.enqueue(workers.Complete.new({"n": 1})),
            oban.enqueue(workers.AsyncComplete.new({"n": 2})),
            workers.Complete.enqueue({"n": 3}),
            workers.add.enqueue(1, 2),
            *oban.enqueue_many(workers.Complete.new({"n": n}) for n in range(4, 10)),
        ]
        for job in jobs:
            assert wait_final(oban, job.id) is JobState.COMPLETED

    assert not oban.is_running
    ran = sorted(job_id for _, job_id, _ in effects.runs)
    assert ran == sorted(
        job.id or 0 for job in jobs if job.worker != workers.add.__oban_worker__.name
    )


@backends
def test_a_def_worker_enqueues_another_job_from_its_thread(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    with make_oban(queues={"default": 2}, backend=backend) as oban:
        parent = oban.enqueue(workers.Parent.new({}))
        assert wait_final(oban, parent.id) is JobState.COMPLETED
        (child_id,) = effects.children
        assert wait_final(oban, child_id) is JobState.COMPLETED
        child = oban.get_job(child_id)
        assert child is not None
        assert child.args == {"parent": parent.id}

    assert [kind for kind, _, _ in effects.runs] == ["parent", "child"]


@backends
def test_stop_waits_for_a_running_sync_job(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    oban = make_oban(queues={"default": 2}, backend=backend)
    oban.start()
    try:
        job = oban.enqueue(workers.SlowSync.new({"seconds": 0.2}))
        wait_for(lambda: effects.started(job.id), message="the job started")
    finally:
        oban.stop(grace=30)

    assert effects.finished == [job.id]
    assert state_of(oban, job.id) is JobState.COMPLETED


@backends
def test_stop_with_grace_zero_puts_a_running_job_back(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    oban = make_oban(queues={"default": 2}, backend=backend)
    oban.start()
    try:
        job = oban.enqueue(workers.Forever.new({}))
        wait_for(lambda: effects.started(job.id), message="the job started")
    finally:
        oban.stop(grace=0)

    back = oban.get_job(job.id or 0)
    assert back is not None
    assert back.state is JobState.AVAILABLE
    assert back.attempt == 0
    assert effects.finished == []


@backends
def test_an_instance_can_be_started_again_after_stop(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    oban = make_oban(queues={"default": 2}, backend=backend)
    with oban:
        first = oban.enqueue(workers.Complete.new({"run": 1}))
        assert wait_final(oban, first.id) is JobState.COMPLETED
    stopped = oban.enqueue(workers.Complete.new({"run": 2}))
    assert state_of(oban, stopped.id) is JobState.AVAILABLE
    with oban:
        assert wait_final(oban, stopped.id) is JobState.COMPLETED

    assert sorted(job_id for _, job_id, _ in effects.runs) == sorted(
        [first.id or 0, stopped.id or 0]
    )


@backends
def test_starting_twice_says_it_is_running_and_the_first_run_goes_on(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    oban = make_oban(queues={"default": 2}, backend=backend)
    oban.start()
    try:
        with pytest.raises(AlreadyRunningError, match="is already running: stop it"):
            oban.start()
        job = oban.enqueue(workers.Complete.new({}))
        assert wait_final(oban, job.id) is JobState.COMPLETED
    finally:
        oban.stop()
    with pytest.raises(NotRunningError, match="was not started"):
        oban.stop()


@backends
def test_a_second_stop_cuts_the_grace_period_of_the_first(
    make_oban: Callable[..., Oban], effects: Effects, backend: str
) -> None:
    """Two stops at once (a second signal): the shorter grace wins whichever call
    claims the stop, the running job is put back at once, and both calls return."""
    oban = make_oban(queues={"default": 2}, backend=backend)
    oban.start()
    job = oban.enqueue(workers.Forever.new({}))
    wait_for(lambda: effects.started(job.id), message="the job started")

    def stop_slowly() -> None:
        with contextlib.suppress(NotRunningError):  # the other call may finish first
            oban.stop(grace=3600)

    first = threading.Thread(target=stop_slowly, daemon=True)
    first.start()
    oban.stop(grace=0)
    first.join(timeout=30)
    assert not first.is_alive(), "the first stop still waits out its hour of grace"
    assert not oban.is_running
    back = oban.get_job(job.id or 0)
    assert back is not None
    assert back.state is JobState.AVAILABLE


@pytest.mark.anyio
@backends
async def test_an_instance_made_inside_an_event_loop_runs_its_queues_in_a_thread(
    make_oban: Callable[..., Oban], effects: Effects, backend: str, anyio_backend: str
) -> None:
    """Built and started (``with``) from inside a running loop of either kind, with the
    thread's loop of the other kind or the same, while the caller awaits the database
    from its own loop: each loop gets its own events and thread limiter."""
    oban = make_oban(queues={"default": 2}, backend=backend)
    if backend == "trio" and anyio_backend == "trio":  # trio refuses: a clear error instead
        with pytest.raises(ConfigError, match="async with oban:"):
            oban.start()
        assert not oban.is_running
        return
    with oban:
        saved = await oban.enqueue_async(workers.Complete.new({"n": 1}))
        assert wait_final(oban, saved.id) is JobState.COMPLETED
        assert [job.id for job in await oban.list_jobs_async(state="completed")] == [saved.id]
    assert not oban.is_running
