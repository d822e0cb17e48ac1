"""The telemetry events of a running Oban, with their documented fields.

Every test runs on Lite (SQLite) and Basic (PostgreSQL) (the ``database``
fixture) under asyncio and trio (``anyio_backend``); the Inline engine's
job events are checked too. Waits are on conditions with a deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from oban import Job, JobState, Oban, telemetry
from tests.conftest import SqlDatabase
from tests.observability import workers
from tests.observability.conftest import Recorder

pytestmark = pytest.mark.anyio

JOB_FIELDS = {"job", "id", "worker", "queue", "attempt", "state", "queue_time"}
"""What every job.* event carries; job.stop and job.exception add ``duration``."""


@pytest.fixture
def oban_options() -> dict[str, Any]:
    return {"poll_interval": 0.05, "stage_interval": 0.05}


async def wait_until(condition: Callable[[], object], *, within: float = 20.0, what: str) -> None:
    deadline = anyio.current_time() + within
    while not condition():
        if anyio.current_time() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        await anyio.sleep(0.02)


def _ended(recorder: Recorder, job: Job) -> bool:
    return any(name != "job.start" for name, _ in recorder.for_job(job.id))


def _check_job_event(data: dict[str, Any], job: Job, state: str, *, ended: bool) -> None:
    assert set(data) >= JOB_FIELDS, data.keys()
    assert data["job"].id == job.id
    assert data["id"] == job.id
    assert data["worker"] == job.worker
    assert data["queue"] == "obs"
    assert data["attempt"] == 1
    assert data["state"] == state
    assert isinstance(data["queue_time"], float)
    assert data["queue_time"] >= 0
    if ended:
        assert isinstance(data["duration"], float)
        assert data["duration"] >= 0


async def test_job_events_for_each_outcome(database: SqlDatabase, recorder: Recorder) -> None:
    async with database.make_oban(queues={"obs": 5}) as oban:
        ok = await oban.enqueue_async(workers.Succeed.new({}))
        ok_async = await oban.enqueue_async(workers.AsyncSucceed.new({}))
        failing = await oban.enqueue_async(workers.Fail.new({"n": 7}))
        snoozed = await oban.enqueue_async(workers.Snoozer.new({}))
        cancelled = await oban.enqueue_async(workers.Canceller.new({}))
        jobs = [ok, ok_async, failing, snoozed, cancelled]
        await wait_until(
            lambda: all(_ended(recorder, job) for job in jobs), what="every job.stop/exception"
        )
        await wait_until(lambda: recorder.named("ack.write"), what="ack.write")

    expected = {
        ok.id: ("job.stop", "completed"),
        ok_async.id: ("job.stop", "completed"),
        failing.id: ("job.exception", "retryable"),
        snoozed.id: ("job.stop", "scheduled"),
        cancelled.id: ("job.stop", "cancelled"),
    }
    for job in jobs:
        events = recorder.for_job(job.id)
        _check_job_event(events[0][1], job, "executing", ended=False)
        name, state = expected[job.id]
        assert [n for n, _ in events] == ["job.start", name], events
        _check_job_event(events[1][1], job, state, ended=True)

    (failure,) = recorder.named("job.exception")
    assert failure["error"]["type"] == "Boom"
    assert failure["error"]["message"] == "boom 7"
    assert "Traceback" in failure["error"]["traceback"]
    assert "raise Boom" in failure["error"]["traceback"]

    inserts = recorder.named("job.insert")
    assert [data["count"] for data in inserts] == [1, 1, 1, 1, 1]
    assert all(data["conflicts"] == 0 for data in inserts)
    fetches = recorder.named("queue.fetch")
    assert all(data["queue"] == "obs" and data["demand"] <= 5 for data in fetches)
    assert sum(data["count"] for data in fetches) == 5
    acks = recorder.named("ack.write")
    assert sum(data["count"] for data in acks) == 5
    assert all(isinstance(data["duration"], float) for data in acks)


async def test_insert_counts_conflicts(database: SqlDatabase, recorder: Recorder) -> None:
    oban = database.make_oban()
    first = workers.Unique.new({"k": 1})
    await oban.enqueue_many_async([first, workers.Unique.new({"k": 1}), workers.Succeed.new({})])
    (data,) = recorder.named("job.insert")
    assert data["count"] == 3
    assert data["conflicts"] == 1
    assert data["queues"] == ["obs"]


async def test_plugin_leader_and_notifier_events(database: SqlDatabase, recorder: Recorder) -> None:
    oban = database.make_oban(
        queues={"obs": 2},
        prune=0.1,
        prune_interval=0.05,
        rescue_after=0.3,
        cron=[("* * * * *", workers.Succeed)],
    )
    async with oban:
        await wait_until(
            lambda: (
                {"plugin.stager", "plugin.pruner", "plugin.lifeline", "plugin.cron"}
                <= recorder.names()
            ),
            what="a run of every plugin",
        )
        await wait_until(lambda: recorder.named("leader.gained"), what="leader.gained")
        if database.kind == "basic":
            await wait_until(lambda: recorder.named("notifier.connected"), what="notifier")
    await wait_until(lambda: recorder.named("leader.lost"), what="leader.lost")

    for plugin in ("stager", "pruner", "lifeline", "cron"):
        data = recorder.named(f"plugin.{plugin}")[0]
        assert data["plugin"] == plugin
        assert "count" in data
    assert all(isinstance(d["count"], int) for d in recorder.named("plugin.pruner"))
    assert all(isinstance(d["count"], int) for d in recorder.named("plugin.lifeline"))
    for staged in recorder.named("plugin.stager"):  # rows made available, per queue
        assert staged["count"] == sum(staged["queues"].values())
    (gained,) = recorder.named("leader.gained")
    assert gained["name"] == oban.name
    assert gained["node"] == oban.node
    if database.kind == "basic":
        connected = recorder.named("notifier.connected")[0]
        assert connected["application_name"].startswith("oban_notifier:")
        disconnected = recorder.named("notifier.disconnected")
        assert disconnected
        assert disconnected[-1]["error"] is None


async def test_a_raising_handler_does_not_stop_jobs(
    database: SqlDatabase, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: str, data: dict[str, Any]) -> None:
        raise RuntimeError(f"handler bug on {event}")

    handle = telemetry.attach(broken, events=["job.start", "queue.fetch"])
    with caplog.at_level(logging.ERROR, logger="oban"):
        async with database.make_oban(queues={"obs": 5}) as oban:
            jobs = [await oban.enqueue_async(workers.Succeed.new({"n": n})) for n in range(3)]
            await wait_until(
                lambda: all(_ended(recorder, job) for job in jobs), what="every job ended"
            )
            done = [await oban.get_job_async(job.id or 0) for job in jobs]
            await wait_until(
                lambda: len(recorder.named("job.stop")) == 3, what="three job.stop events"
            )
    assert handle not in telemetry.handlers()
    assert [r for r in caplog.records if "was detached" in r.getMessage()] != []
    assert len([r for r in caplog.records if "was detached" in r.getMessage()]) == 1
    for job in done:
        assert job is not None
    # The good handler saw every job through, and the rows say completed.
    stopped = {data["id"] for data in recorder.named("job.stop")}
    assert stopped == {job.id for job in jobs}
    async with database.make_oban() as reader:
        for job in jobs:
            row = await reader.get_job_async(job.id or 0)
            assert row is not None
            assert row.state is JobState.COMPLETED


async def test_inline_emits_job_events(recorder: Recorder) -> None:
    oban = Oban(testing="inline")
    done = await oban.enqueue_async(workers.Succeed.new({}))
    failed = oban.enqueue(workers.Fail.new({"n": 1}))
    assert done.state is JobState.COMPLETED
    assert failed.state is JobState.RETRYABLE
    assert [name for name, _ in recorder.for_job(done.id)] == ["job.start", "job.stop"]
    assert [name for name, _ in recorder.for_job(failed.id)] == ["job.start", "job.exception"]
    _check_job_event(recorder.for_job(done.id)[1][1], done, "completed", ended=True)
    (failure,) = recorder.named("job.exception")
    assert failure["error"]["type"] == "Boom"
    assert [d["count"] for d in recorder.named("job.insert")] == [1, 1]
