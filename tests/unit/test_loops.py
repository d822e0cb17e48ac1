"""The one loop helper every repeating task of the runtime runs on (asyncio and trio).

What each loop relies on: a wake ticks at once; an interval ticks without one;
a failing tick is logged and retried after a growing pause instead of killing
the loop; leader-only work is skipped off the leader; stop ends the loop after
the tick in progress. No timing is asserted: the tests wait for conditions
(``wait_all_tasks_blocked``, counters with a deadline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import pytest

from oban.errors import DatabaseError
from oban.runtime.loops import Loop
from oban.runtime.outage import Outage

pytestmark = pytest.mark.anyio

FAST_BACKOFF = (0.001, 0.002)


async def until(condition: Callable[[], bool], what: str) -> None:
    with anyio.move_on_after(10):
        while not condition():  # noqa: ASYNC110 - the loop under test sets it
            await anyio.sleep(0.001)
        return
    pytest.fail(f"not within 10s: {what}")


class Ticks:
    """A tick that counts its calls and raises while ``failing`` is above 0."""

    def __init__(self, failing: int = 0) -> None:
        self.calls = 0
        self.failing = failing

    async def __call__(self) -> None:
        self.calls += 1
        if self.failing > 0:
            self.failing -= 1
            raise RuntimeError(f"database down (call {self.calls})")


async def test_a_wake_ticks_and_without_one_nothing_happens() -> None:
    tick = Ticks()
    loop = Loop("test loop", tick, interval=None)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        await anyio.wait_all_tasks_blocked()
        assert tick.calls == 0
        loop.wake()
        await until(lambda: tick.calls == 1, "one tick after a wake")
        await anyio.wait_all_tasks_blocked()
        assert tick.calls == 1
        assert loop.ticks == 1
        loop.stop()


async def test_immediate_ticks_once_at_start() -> None:
    tick = Ticks()
    loop = Loop("test loop", tick, interval=None, immediate=True)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        await until(lambda: tick.calls == 1, "the first tick")
        await anyio.wait_all_tasks_blocked()
        assert tick.calls == 1
        loop.stop()


async def test_an_interval_ticks_again_without_a_wake() -> None:
    tick = Ticks()
    loop = Loop("test loop", tick, interval=0.001)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        await until(lambda: tick.calls >= 3, "three ticks on the interval alone")
        loop.stop()


async def test_a_failing_tick_is_retried_until_it_works_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outage is two lines in the log (it failed, it recovered), not one per retry."""
    caplog.set_level(logging.DEBUG, logger="oban")
    tick = Ticks(failing=3)
    loop = Loop("staging scheduled jobs", tick, interval=None, error_backoff=FAST_BACKOFF)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        loop.wake()  # one wake; the retries need none
        await until(lambda: loop.ticks == 1, "a tick that worked after three failures")
        assert tick.calls == 4
        assert loop.failures == 0
        loop.stop()
    ours = [r for r in caplog.records if r.getMessage().startswith("staging scheduled jobs")]
    loud = [r for r in ours if r.levelno >= logging.WARNING]
    assert [r.levelname for r in loud] == ["ERROR", "WARNING"]
    assert "failed; retrying in" in loud[0].getMessage()
    assert loud[0].exc_info is not None
    assert "database down (call 1)" in str(loud[0].exc_info[1])
    assert loud[1].getMessage() == "staging scheduled jobs recovered after 3 failure(s)"
    quiet = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert quiet == [
        "staging scheduled jobs failed again (2 in a row): database down (call 2)",
        "staging scheduled jobs failed again (3 in a row): database down (call 3)",
    ]


async def test_failures_in_a_row_lengthen_the_pause_and_reach_on_error() -> None:
    seen: list[tuple[str, float]] = []
    tick = Ticks(failing=4)
    loop = Loop(
        "test loop",
        tick,
        interval=None,
        immediate=True,
        error_backoff=(0.001, 0.004),
        on_error=lambda exc, pause: seen.append((str(exc), pause)),
    )
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        await until(lambda: loop.ticks == 1, "the tick after four failures")
        loop.stop()
    assert [message for message, _ in seen] == [f"database down (call {n})" for n in range(1, 5)]
    pauses = [pause for _, pause in seen]
    assert all(0 < pause <= 0.004 for pause in pauses)  # never past the longest pause
    assert max(pauses) > min(pauses)


async def test_leader_only_work_is_skipped_off_the_leader() -> None:
    leading = False
    tick = Ticks()
    loop = Loop("test loop", tick, interval=None, leader_only=True, is_leader=lambda: leading)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        loop.wake()
        await anyio.wait_all_tasks_blocked()
        assert tick.calls == 0
        leading = True
        loop.wake()
        await until(lambda: tick.calls == 1, "a tick once leading")
        loop.stop()


async def test_stop_returns_after_the_tick_in_progress() -> None:
    started = anyio.Event()
    release = anyio.Event()
    finished: list[bool] = []

    async def slow_tick() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    loop = Loop("test loop", slow_tick, interval=None, immediate=True)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        await started.wait()
        loop.stop()
        release.set()
    assert finished == [True]
    assert loop.ticks == 1


async def test_stop_before_the_first_tick_never_ticks() -> None:
    tick = Ticks()
    loop = Loop("test loop", tick, interval=60.0)
    loop.stop()
    await loop.run()
    assert tick.calls == 0


@pytest.mark.parametrize(
    ("interval", "jitter", "rand", "expected"),
    [
        (None, 0.1, 0.0, None),
        (2.0, 0.0, 0.0, 2.0),
        (2.0, 0.1, 0.0, 1.8),
        (2.0, 0.1, 0.5, 2.0),
        (2.0, 0.1, 1.0, 2.2),
    ],
)
def test_jitter_spreads_the_wait_around_the_interval(
    interval: float | None, jitter: float, rand: float, expected: float | None
) -> None:
    loop = Loop("test loop", Ticks(), interval=interval, jitter=jitter, rand=lambda: rand)
    assert loop.next_wait() == pytest.approx(expected)


class DatabaseTicks(Ticks):
    """Fails like the database does: with the DatabaseError every engine raises."""

    async def __call__(self) -> None:
        self.calls += 1
        if self.failing > 0:
            self.failing -= 1
            raise DatabaseError(f"connection refused (call {self.calls})")


async def test_an_outage_seen_by_many_loops_is_two_lines_with_its_length(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every loop of a node fails when the database goes; the log says so once,
    and once more, with how long it lasted, when the last of them works again."""
    caplog.set_level(logging.DEBUG, logger="oban")
    seconds = iter([100.0, 112.5])
    outage = Outage(clock=lambda: next(seconds))
    ticks = [DatabaseTicks(failing=n) for n in (2, 3, 4)]
    loops = [
        Loop(f"loop {n}", tick, interval=None, error_backoff=FAST_BACKOFF, outage=outage)
        for n, tick in enumerate(ticks)
    ]
    async with anyio.create_task_group() as tasks:
        for loop in loops:
            tasks.start_soon(loop.run)
            loop.wake()
        await until(lambda: all(loop.ticks == 1 for loop in loops), "every loop recovered")
        for loop in loops:
            loop.stop()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in loud] == ["ERROR", "WARNING"]
    assert loud[0].getMessage().startswith("database unavailable (loop ")
    assert "failed: connection refused (call 1)" in loud[0].getMessage()
    assert loud[0].exc_info is not None
    assert (
        loud[1].getMessage() == "database available again after 12.5s (9 failed attempt(s) retried)"
    )
    assert outage.outages == 1
    assert not outage.ongoing


async def test_a_bug_in_a_tick_is_not_taken_for_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oban")
    outage = Outage()
    loop = Loop("buggy", Ticks(failing=1), interval=None, error_backoff=FAST_BACKOFF, outage=outage)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        loop.wake()
        await until(lambda: loop.ticks == 1, "the tick worked")
        loop.stop()
    assert outage.outages == 0
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud[0].startswith("buggy failed; retrying in")
    assert loud[1] == "buggy recovered after 1 failure(s)"


async def test_a_leader_only_loop_that_stops_leading_mid_outage_ends_its_part() -> None:
    """A leader cut off by an outage loses the lease: its leader-only loops have no
    work left, so they must not hold the outage open (its end never logged, the
    next outage's first error only at debug level). Found by tests/chaos
    test_connection_slots_exhausted."""
    leading = True
    tick = DatabaseTicks(failing=10**6)
    outage = Outage()
    loop = Loop(
        "leader work",
        tick,
        interval=None,
        error_backoff=FAST_BACKOFF,
        leader_only=True,
        is_leader=lambda: leading,
        outage=outage,
    )
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop.run)
        loop.wake()
        await until(lambda: outage.ongoing and tick.calls >= 2, "the loop fails in an outage")
        leading = False
        await until(lambda: not outage.ongoing, "the outage ends once the loop has no work")
        loop.stop()
    assert loop.failures == 0
