"""Insert one unique job many times at once from this process, for the race tests.

``python -m tests.engines.unique_race_process <lite|basic> <url> <prefix|-> <threads> <rounds>``

Builds the engine, prints ``ready`` and waits for a line on stdin, so the
test can release every process at the same moment; then ``threads``
threads each insert the same unique job ``rounds`` times, one transaction
per insert, and the process prints the ``[id, conflict]`` pairs as JSON.
"""

from __future__ import annotations

import sys
import threading

import orjson

from oban import Job
from oban.engines import Engine, Lite, create_bind
from oban.job import utc_now

RACE_WORKER = "tests.engines.workers.Succeed"
RACE_ARGS = {"race": "same", "nested": {"b": 2, "a": 1}}


def race_job() -> Job:
    """The job every inserter inserts: unique on worker, queue and args, forever."""
    return Job(RACE_WORKER, args=RACE_ARGS, unique={"period": None})


def build(kind: str, url: str, prefix: str | None) -> Engine:
    bind = create_bind(url)
    if kind == "lite":
        return Lite(bind, owns_bind=True)
    from oban.engines.basic import Basic

    return Basic(bind, prefix=prefix, owns_bind=True)


def main(argv: list[str]) -> int:
    kind, url, prefix = argv[0], argv[1], None if argv[2] == "-" else argv[2]
    threads, rounds = int(argv[3]), int(argv[4])
    engine = build(kind, url, prefix)
    results: list[tuple[int | None, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def insert() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                with engine.transaction() as conn:
                    (job,) = engine.insert_jobs(conn, [race_job()], utc_now())
                with lock:
                    results.append((job.id, job.conflict))
        except BaseException as exc:  # reported to the test, which fails on it
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=insert) for _ in range(threads)]
    print("ready", flush=True)
    sys.stdin.readline()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.close()
    if errors:
        print(f"errors: {errors!r}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(results).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
