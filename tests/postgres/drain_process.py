"""Run Oban (Basic) in this process until ``count`` jobs of the prefix are completed.

``python -m tests.postgres.drain_process <url> <prefix> <count> <deadline seconds>``

Exits 0 once every job is completed, 1 at the deadline. One of the two OS
processes of ``test_two_processes.py``; each execution it makes is recorded
by ``tests.postgres.workers.SideEffect`` in the side table.
"""

from __future__ import annotations

import os
import sys
import time

import sqlalchemy as sa

import tests.postgres.workers  # noqa: F401 - registers the workers this process runs
from oban import Oban
from tests.postgres.support import table


def completed(instance: Oban, prefix: str) -> int:
    assert instance.bind is not None
    with instance.bind.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM {table(prefix)} WHERE state = 'completed'")
        return int(conn.execute(query).scalar_one())


def main(argv: list[str]) -> int:
    url, prefix, count, seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    deadline = time.monotonic() + seconds
    node = os.environ["OBAN_TEST_NODE"]
    instance = Oban(
        url,
        prefix=prefix,
        queues={"drain": 10},
        name=f"drain-{node}",
        node=node,
        poll_interval=0.2,
    )
    instance.start()
    try:
        while time.monotonic() < deadline:
            if completed(instance, prefix) >= count:
                return 0
            time.sleep(0.1)
        print(f"drain_process {node}: deadline passed", file=sys.stderr)
        return 1
    finally:
        instance.stop(grace=5)
        instance.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
