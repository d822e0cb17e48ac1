"""Throughput of the Basic (PostgreSQL) and Lite (SQLite) engines, side by side.

Two figures per engine:

* **bulk insert**: jobs/s of one ``enqueue_many`` call with 10,000 jobs;
* **end-to-end**: 10,000 no-op jobs already in the table, one queue with a
  limit of 20; jobs/s from ``start()`` until the database says every job is
  ``completed`` (fetching, running, and the batched acks all included).

Each figure is the median of ``--repeat`` runs, each run on a fresh table.
Run ``python benchmarks/throughput.py`` (or ``nox -s bench``); see
benchmarks/README.md. PostgreSQL comes from ``OBAN_BENCH_DATABASE_URL`` or
``OBAN_TEST_DATABASE_URL``; when it is unreachable its row says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

import oban
from oban import Job, Oban, Worker, worker

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/oban_test"
BENCH_SCHEMA = "oban_bench"
QUEUE = "bench"


@worker(queue=QUEUE)
class AsyncNoop(Worker):
    """Does nothing, on the event loop."""

    async def process(self, job: Job) -> None:
        return None


@worker(queue=QUEUE)
class SyncNoop(Worker):
    """Does nothing, in a worker thread (as a ``def process`` worker does)."""

    def process(self, job: Job) -> None:
        return None


@dataclass
class FreshDatabase:
    """A migrated, empty database: its URL, Oban prefix, jobs table and how to drop it."""

    url: str
    prefix: str | None
    jobs_table: str
    cleanup: Callable[[], None]


@dataclass
class Target:
    """One engine to measure, and how to get a fresh database for it."""

    name: str
    fresh: Callable[[], FreshDatabase]


def _pg_url() -> str:
    return os.environ.get("OBAN_BENCH_DATABASE_URL") or os.environ.get(
        "OBAN_TEST_DATABASE_URL", DEFAULT_PG_URL
    )


def _postgres() -> FreshDatabase:
    url = _pg_url()
    bind = sa.create_engine(url)
    with bind.begin() as conn:
        conn.execute(sa.schema.DropSchema(BENCH_SCHEMA, cascade=True, if_exists=True))
    oban.migrate(bind, prefix=BENCH_SCHEMA)

    def cleanup() -> None:
        with bind.begin() as conn:
            conn.execute(sa.schema.DropSchema(BENCH_SCHEMA, cascade=True, if_exists=True))
        bind.dispose()

    return FreshDatabase(url, BENCH_SCHEMA, f'"{BENCH_SCHEMA}".oban_jobs', cleanup)


def _sqlite() -> FreshDatabase:
    directory = tempfile.TemporaryDirectory(prefix="oban-bench-")
    url = f"sqlite:///{Path(directory.name) / 'bench.db'}"
    bind = sa.create_engine(url)
    oban.migrate(bind)
    bind.dispose()
    return FreshDatabase(url, None, "oban_jobs", directory.cleanup)


def postgres_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    bind = sa.create_engine(_pg_url())
    try:
        with bind.connect():
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        bind.dispose()


@contextmanager
def fresh(target: Target) -> Iterator[FreshDatabase]:
    made = target.fresh()
    try:
        yield made
    finally:
        made.cleanup()


def completed(bind: sa.Engine, jobs_table: str) -> int:
    with bind.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM {jobs_table} WHERE state = 'completed'")
        return int(conn.execute(query).scalar_one())


def bulk_insert(target: Target, jobs: int, kind: type[Worker]) -> float:
    """Seconds for one enqueue_many call of ``jobs`` jobs."""
    with fresh(target) as db:
        instance = Oban(db.url, prefix=db.prefix, name="bench-insert")
        try:
            batch = [kind.new({"n": n}) for n in range(jobs)]
            started = time.perf_counter()
            instance.enqueue_many(batch)
            return time.perf_counter() - started
        finally:
            instance.close()


def end_to_end(target: Target, jobs: int, limit: int, kind: type[Worker], backend: str) -> float:
    """Seconds from start() until every one of ``jobs`` pre-inserted jobs is completed."""
    with fresh(target) as db:
        inserter = Oban(db.url, prefix=db.prefix, name="bench-seed")
        inserter.enqueue_many(kind.new({"n": n}) for n in range(jobs))
        inserter.close()
        instance = Oban(
            db.url,
            prefix=db.prefix,
            name="bench-run",
            queues={QUEUE: limit},
            backend=backend,  # type: ignore[arg-type]
        )
        bind = sa.create_engine(db.url)
        try:
            started = time.perf_counter()
            instance.start()
            while completed(bind, db.jobs_table) < jobs:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            instance.stop()
            return elapsed
        finally:
            bind.dispose()
            instance.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run (10,000)")
    parser.add_argument("--limit", type=int, default=20, help="queue limit end to end (20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; median (3)")
    parser.add_argument(
        "--worker", choices=["async", "sync"], default="async", help="no-op worker kind (async)"
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--engine", choices=["basic", "lite"], action="append", help="only these engines"
    )
    args = parser.parse_args(argv)
    kind: type[Worker] = AsyncNoop if args.worker == "async" else SyncNoop

    targets = [Target("basic", _postgres), Target("lite", _sqlite)]
    chosen = [target for target in targets if not args.engine or target.name in args.engine]
    print(
        f"Oban throughput: {args.jobs:,} jobs, queue limit {args.limit}, {args.worker} no-op "
        f"worker, {args.backend}, median of {args.repeat} (Python {sys.version.split()[0]}, "
        f"SQLAlchemy {sa.__version__})"
    )
    header = f"{'engine':<8} {'bulk insert (jobs/s)':>22} {'end-to-end (jobs/s)':>22}"
    print(header)
    print("-" * len(header))
    for target in chosen:
        if target.name == "basic" and (why := postgres_available()) is not None:
            print(f"{target.name:<8} {'PostgreSQL unavailable: ' + why}")
            continue
        inserts = [bulk_insert(target, args.jobs, kind) for _ in range(args.repeat)]
        runs = [
            end_to_end(target, args.jobs, args.limit, kind, args.backend)
            for _ in range(args.repeat)
        ]
        insert_rate = args.jobs / statistics.median(inserts)
        run_rate = args.jobs / statistics.median(runs)
        print(f"{target.name:<8} {insert_rate:>22,.0f} {run_rate:>22,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
