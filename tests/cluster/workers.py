"""Workers of the node processes (``tests.cluster.workers.X``), recording outside the jobs table.

Each attempt appends a line to the file ``args["log"]``: ``"start <id>
<attempt> <pid>"`` as it begins and, for :class:`Blocker`, ``"done <id>
<attempt> <pid>"`` as it ends. One ``write`` on an ``O_APPEND`` descriptor is
atomic for short lines, so lines of several processes never interleave, and
a line written before a SIGKILL is in the file. A job that runs twice leaves
two ``start`` lines whatever its row says.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from oban import Job, Worker, worker

RELEASE_WAIT = 120.0
"""Seconds a :class:`Blocker` waits for its release file before failing (a test
that died must not leave a job running for ever)."""


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Run:
    """One line of a log: an attempt that started (or ended) in process ``pid``."""

    event: str
    job_id: int
    attempt: int
    pid: int


def read_log(path: Path) -> list[Run]:
    if not path.exists():
        return []
    runs = []
    # A line another process is appending may be read half written: only
    # lines ended by their newline count (the rest is read next time).
    for line in path.read_text().split("\n")[:-1]:
        event, job_id, attempt, pid = line.split()
        runs.append(Run(event, int(job_id), int(attempt), int(pid)))
    return runs


def starts(path: Path) -> Counter[int]:
    """How many attempts of each job started, by job id."""
    return Counter(run.job_id for run in read_log(path) if run.event == "start")


@worker(queue="work", max_attempts=3)
class Blocker(Worker):
    """Starts, then runs until the file ``args["release"]`` exists: a job that
    outlives many heartbeats, or one its node is killed in the middle of."""

    def process(self, job: Job) -> None:
        log = job.args["log"]
        append(log, f"start {job.id} {job.attempt} {os.getpid()}")
        deadline = time.monotonic() + RELEASE_WAIT
        while not os.path.exists(job.args["release"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job.args['release']} never appeared")
            time.sleep(0.02)
        append(log, f"done {job.id} {job.attempt} {os.getpid()}")


@worker(queue="q")
class Note(Worker):
    """Records its start, then works for ``args["seconds"]`` (default 0)."""

    def process(self, job: Job) -> None:
        append(job.args["log"], f"start {job.id} {job.attempt} {os.getpid()}")
        seconds = job.args.get("seconds", 0)
        if seconds:
            time.sleep(seconds)  # the job's own work, not a test waiting


@worker(queue="cron")
class CronTick(Worker):
    """What the cron entries insert; the test reads the slots from the jobs' meta."""

    def process(self, job: Job) -> None:
        return None
