"""Run Oban in this process until ``count`` jobs in ``db`` are completed.

``python -m tests.runtime.drain_helper <db file> <count> <deadline seconds>``

Exits 0 once every job is completed, 1 at the deadline. Used by the test
where two OS processes share one SQLite file.
"""

from __future__ import annotations

import os
import sys
import time

import sqlalchemy as sa

import tests.runtime.workers  # noqa: F401 - registers the workers this process runs
from oban import Oban


def completed(instance: Oban) -> int:
    assert instance.bind is not None
    with instance.bind.connect() as conn:
        query = sa.text("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")
        return int(conn.execute(query).scalar_one())


def main(argv: list[str]) -> int:
    database, count, seconds = argv[0], int(argv[1]), float(argv[2])
    deadline = time.monotonic() + seconds
    pid = os.getpid()
    instance = Oban(
        f"sqlite:///{database}",
        queues={"default": 10},
        name=f"drain-{pid}",
        node=f"process-{pid}",
        poll_interval=0.05,
        stage_interval=0.05,
    )
    instance.start()
    try:
        while time.monotonic() < deadline:
            if completed(instance) >= count:
                return 0
            time.sleep(0.05)
        print(f"drain_helper {pid}: deadline passed", file=sys.stderr)
        return 1
    finally:
        instance.stop(grace=5)
        instance.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
