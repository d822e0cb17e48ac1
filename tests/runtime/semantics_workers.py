"""Workers for the result, backoff and timeout tests (``tests.runtime.semantics_workers.X``).

``Scripted`` returns a different kind of result on each attempt, following
``args["plan"]``. The timeout workers report what happened inside them through
``GATES`` (thread-safe events, one set per test key), so a test can wait for a
state instead of sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import anyio

from oban import Cancel, Job, Record, Snooze, Worker, worker

# -- one kind of result per attempt ---------------------------------------------------------

RECORD_LIMIT = 10
TOO_BIG = "x" * 100
"""Encodes to 102 bytes: over ``RECORD_LIMIT``."""
SNOOZE_SECONDS = 3600


def bad_snooze() -> Snooze:
    """A ``Snooze(-5)``, which ``Snooze.__post_init__`` would refuse to build."""
    snooze = Snooze(1)
    object.__setattr__(snooze, "seconds", -5)
    return snooze


def recorded_value(job: Job) -> dict[str, Any]:
    return {"attempt": job.attempt, "args": job.args, "nested": [1, 2.5, None, True]}


class Runs:
    """Every attempt ``Scripted`` started, as (job id, attempt), from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[tuple[int, int]] = []

    def add(self, job: Job) -> None:
        with self._lock:
            self._runs.append((job.id or 0, job.attempt))

    def of(self, job_id: int | None) -> list[int]:
        with self._lock:
            return [attempt for run_id, attempt in self._runs if run_id == job_id]

    def reset(self) -> None:
        with self._lock:
            self._runs.clear()


RUNS = Runs()


def step_result(step: str, job: Job) -> object:
    """What ``Scripted`` does for one step of its plan."""
    RUNS.add(job)
    if step == "none":
        return None
    if step == "value":
        return {"any": "value", "dropped": True}
    if step == "record":
        return Record(recorded_value(job))
    if step == "record_too_big":
        return Record(TOO_BIG, limit=RECORD_LIMIT)
    if step == "snooze":
        return Snooze(SNOOZE_SECONDS)
    if step == "bad_snooze":
        return bad_snooze()
    if step == "raise":
        raise ValueError(f"step failed on attempt {job.attempt}")
    if step == "raise_runtime":
        raise RuntimeError(f"runtime error on attempt {job.attempt}")
    if step == "cancel":
        return Cancel(f"cancelled on attempt {job.attempt}")
    raise AssertionError(f"unknown step {step!r}")


@worker(queue="semantics", max_attempts=20)
class Scripted(Worker):
    """Does ``args["plan"][attempt - 1]``; default backoff."""

    def process(self, job: Job) -> object:
        return step_result(job.args["plan"][job.attempt - 1], job)


@worker(queue="semantics", max_attempts=20)
class AsyncScripted(Worker):
    """``Scripted`` as ``async def``."""

    async def process(self, job: Job) -> object:
        await anyio.lowlevel.checkpoint()
        return step_result(job.args["plan"][job.attempt - 1], job)


# -- backoff ---------------------------------------------------------------------------------


@worker(queue="semantics", max_attempts=5)
class Fails(Worker):
    """Always raises; default backoff."""

    def process(self, job: Job) -> None:
        raise RuntimeError(f"failure on attempt {job.attempt}")


@worker(queue="semantics", max_attempts=5)
class CustomBackoff(Worker):
    """Always raises; ``backoff`` from the args: a number, ``"raise"`` or garbage."""

    def process(self, job: Job) -> None:
        raise RuntimeError("custom backoff failure")

    def backoff(self, job: Job) -> Any:
        how = job.args["backoff"]
        if how == "raise":
            raise LookupError("backoff exploded")
        if how == "inf":
            return float("inf")
        if how == "huge":
            return 10**30  # more seconds than a timedelta holds
        return how


# -- timeouts ----------------------------------------------------------------------------------


@dataclass
class Gate:
    """Events a timeout worker sets (or waits on), shared with the test."""

    started: threading.Event = field(default_factory=threading.Event)
    saw_cancelled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)
    interrupted: threading.Event = field(default_factory=threading.Event)


class Gates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, Gate] = {}
        self.events: list[str] = []
        """What happened, in order, across threads (``note``)."""

    def note(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def __getitem__(self, key: str) -> Gate:
        with self._lock:
            return self._gates.setdefault(key, Gate())

    def reset(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.release.set()  # never leave a worker thread blocked
            self._gates.clear()
            self.events.clear()


GATES = Gates()
TIMEOUT = 0.2
"""Seconds; every timeout worker overruns it by waiting for an event, not by sleeping."""


class _KeepsFailures:
    """Failures stay ``retryable`` for an hour, so a test can look at the row."""

    def backoff(self, job: Job) -> int:
        return 3600


@worker(queue="timeouts", timeout=TIMEOUT, max_attempts=3)
class AsyncOverrun(_KeepsFailures, Worker):
    """Waits forever; the timeout cancels it."""

    async def process(self, job: Job) -> str:
        gate = GATES[job.args["key"]]
        gate.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            gate.interrupted.set()
            raise
        return "never"


@worker(queue="timeouts", max_attempts=3)
class AsyncOverrunByMethod(_KeepsFailures, Worker):
    """``timeout(job)`` from the args (may be a bad value); waits for its gate."""

    def timeout(self, job: Job) -> Any:
        return job.args["limit"]

    async def process(self, job: Job) -> str:
        gate = GATES[job.args["key"]]
        gate.started.set()
        await anyio.sleep_forever()
        return "never"


@worker(queue="timeouts", timeout=TIMEOUT, max_attempts=3)
class SwallowsCancellation(_KeepsFailures, Worker):
    """Catches the timeout's cancellation and returns a value anyway."""

    async def process(self, job: Job) -> str:
        gate = GATES[job.args["key"]]
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            gate.interrupted.set()
        return "late and ignored"


@worker(queue="timeouts", timeout=TIMEOUT, max_attempts=3)
class SyncOverrun(_KeepsFailures, Worker):
    """A ``def`` job past its deadline: notices ``job.cancelled()``, then waits for
    the test's release and returns a value that must be ignored."""

    def process(self, job: Job) -> str:
        gate = GATES[job.args["key"]]
        gate.started.set()
        while not job.cancelled():  # a cooperative loop: stop at a safe point
            gate.release.wait(0.01)
        gate.saw_cancelled.set()
        gate.release.wait(30)
        GATES.note(f"{job.args['key']} returned")
        gate.returned.set()
        return "late result"


@worker(queue="timeouts", max_attempts=3)
class QuickSync(Worker):
    def process(self, job: Job) -> str:
        GATES.note(f"{job.args['key']} started")
        GATES[job.args["key"]].started.set()
        return "quick"


@worker(queue="timeouts", max_attempts=3)
class QuickAsync(Worker):
    async def process(self, job: Job) -> str:
        await anyio.lowlevel.checkpoint()
        GATES[job.args["key"]].started.set()
        return "quick"


@worker(queue="timeouts", timeout=30, max_attempts=3)
class WithinTimeout(Worker):
    """Well inside its limit: completes."""

    def process(self, job: Job) -> Record:
        return Record({"ok": True})
