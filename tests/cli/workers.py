"""Workers that ``oban start`` subprocesses import (``--import tests.cli.workers``).

Each records its runs in the file named by its ``log`` argument, one line
per event, so the test process can wait for them without sharing memory.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from oban import Job, worker


def record(job: Job, event: str) -> None:
    """Append ``<event> <job id>`` to the job's log file."""
    with Path(job.args["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event} {job.id}\n")


@worker(queue="default")
class Record:
    """Records that it ran, and succeeds."""

    def process(self, job: Job) -> None:
        record(job, "ran")


@worker(queue="default", max_attempts=1)
class Fail:
    """Fails at once: its job is discarded with a traceback in ``errors``."""

    def process(self, job: Job) -> None:
        raise RuntimeError(f"boom {job.args.get('n')}")


@worker(queue="slow")
class Sleep:
    """Records its start, then sleeps far longer than any test waits."""

    async def process(self, job: Job) -> None:
        record(job, "started")
        await anyio.sleep(float(job.args.get("seconds", 600)))
        record(job, "finished")
