"""execute() and execute_blocking(): one attempt, whatever the worker does, ends in an ack.

No database: the ack is what would be written. Async tests run under asyncio and trio.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from oban import Cancel, Job, JobState, Record, Snooze, worker
from oban.attempt import execute, execute_blocking
from oban.outcomes import Ack, outcome

NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def clock() -> datetime:
    return NOW


def running(worker_class: type, **fields: Any) -> Job:
    values: dict[str, Any] = {"id": 7, "state": "executing", "attempt": 1, "max_attempts": 3}
    values.update(fields)
    return Job(worker_class.__oban_worker__.name, **values)  # type: ignore[attr-defined]


def looks_sync(func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A decorator that hides that ``func`` is ``async def`` (as many wrappers do)."""

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        return func(*args)

    return wrapper


@worker(queue="units")
class WrappedAsync:
    @looks_sync
    async def process(self, job: Job) -> Record:
        await anyio.lowlevel.checkpoint()
        return Record({"ran": True})


@worker(queue="units")
class BrokenRecord:
    """Returns a Record built without its checks (no encoded form)."""

    def process(self, job: Job) -> Record:
        return object.__new__(Record)


@worker(queue="units")
class InfiniteBackoff:
    def process(self, job: Job) -> None:
        raise RuntimeError("fails")

    def backoff(self, job: Job) -> float:
        return float("inf")


@worker(queue="units")
class BadTimeout:
    def process(self, job: Job) -> None:
        return None

    def timeout(self, job: Job) -> object:
        return float("nan")


def test_a_wrapped_async_process_is_awaited_not_completed_unrun() -> None:
    assert not inspect.iscoroutinefunction(WrappedAsync().process)
    ack = execute_blocking(running(WrappedAsync), clock=clock)
    assert ack.state is JobState.COMPLETED
    assert ack.meta == {"recorded": True, "return": {"ran": True}}


@pytest.mark.anyio
async def test_a_wrapped_async_process_is_awaited_in_the_runtime() -> None:
    ack = await execute(running(WrappedAsync), limiter=None, clock=clock)
    assert ack.state is JobState.COMPLETED
    assert ack.meta == {"recorded": True, "return": {"ran": True}}


def check_failed(ack: Ack, *texts: str) -> None:
    assert ack.state is JobState.RETRYABLE
    assert ack.error is not None
    for text in texts:
        assert text in ack.error["error"]
    assert ack.scheduled_at is not None
    delay = (ack.scheduled_at - NOW).total_seconds()
    assert 17 <= delay <= 17 * 1.1  # the default backoff after attempt 1


@pytest.mark.anyio
async def test_a_result_that_cannot_be_recorded_fails_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="oban")
    ack = await execute(running(BrokenRecord), limiter=None, clock=clock)
    check_failed(ack, "AttributeError", "encoded")
    assert execute_blocking(running(BrokenRecord), clock=clock).state is JobState.RETRYABLE
    assert any("recording the result of" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_an_infinite_backoff_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="oban")
    check_failed(await execute(running(InfiniteBackoff), limiter=None, clock=clock), "fails")
    check_failed(execute_blocking(running(InfiniteBackoff), clock=clock), "fails")
    assert any("returned inf" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_a_nan_timeout_is_a_job_error() -> None:
    for ack in (
        await execute(running(BadTimeout), limiter=None, clock=clock),
        execute_blocking(running(BadTimeout), clock=clock),
    ):
        check_failed(ack, "ValueError", "must return a finite number of seconds > 0", "nan")


@pytest.mark.parametrize("stored", [None, "abc", -3, True, 2.5, [1]], ids=repr)
def test_a_snooze_counts_from_zero_over_a_bad_stored_counter(stored: object) -> None:
    job = Job("app.Worker", id=1, state="executing", attempt=1, meta={"snoozed": stored})
    ack = outcome(job, Snooze(5), now=NOW, backoff=lambda job: 0)
    assert ack.state is JobState.SCHEDULED
    assert ack.meta == {"snoozed": 1}
    assert ack.scheduled_at == NOW + timedelta(seconds=5)


def test_an_invalid_snooze_names_itself() -> None:
    snooze = Snooze(1)
    object.__setattr__(snooze, "seconds", float("nan"))
    job = Job("app.Worker", id=1, state="executing", attempt=1)
    ack = outcome(job, snooze, now=NOW, backoff=lambda job: 9)
    assert ack.state is JobState.RETRYABLE
    assert ack.error is not None
    assert "process() of app.Worker returned Snooze(seconds=nan)" in ack.error["error"]
    assert ack.scheduled_at == NOW + timedelta(seconds=9)


def test_cancel_reason_is_the_error_text() -> None:
    job = Job("app.Worker", id=1, state="executing", attempt=2)
    ack = outcome(job, Cancel("gone"), now=NOW, backoff=lambda job: 9)
    assert ack.error == {"attempt": 2, "at": "2030-05-06T07:08:09.000000Z", "error": "gone"}
