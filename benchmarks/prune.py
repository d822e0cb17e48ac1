"""The pruner on a big table: bounded batches, and what it does to fetch latency.

A fresh table gets ``--rows`` finished jobs (completed, cancelled and
discarded, mixed, all finished long enough ago to be pruned) and a pool of
available jobs. Then:

1. the plans of the pruner's deletes (one per final state, exactly the SQL
   ``prune_jobs`` sends, turned into ``EXPLAIN``) and the indexes they use;
2. fetch latency without pruning: ``--fetches`` producer-like fetches
   (``engine.fetch_jobs`` of ``--demand`` jobs, each in its own transaction,
   as a producer does through ``Database.run``);
3. the same fetches while a second thread runs one tick of the runtime's
   Pruner plugin (its own event loop and ``Database``, as on a leader), which
   deletes every finished row in batches of ``prune_limit``, each its own
   transaction, until a batch comes back short; every batch is timed;
4. the fetches once more, after the pruning (the dead rows still there), and
   on PostgreSQL once more after a ``VACUUM`` of the table.

It prints figures and checks nothing. Run ``python benchmarks/prune.py``
(``--engine lite`` for SQLite); see benchmarks/README.md. PostgreSQL comes
from ``OBAN_BENCH_DATABASE_URL`` or ``OBAN_TEST_DATABASE_URL``; the script
works in its own schema, ``oban_bench_prune``, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import anyio
import sqlalchemy as sa

import oban
from oban import Oban
from oban.config import PRUNE_LIMIT, PRUNE_MAX_AGE, RuntimeConfig
from oban.engines.base import ClusterEngine, Engine
from oban.runtime.database import Database
from oban.runtime.plugins.base import PluginContext
from oban.runtime.plugins.pruner import Pruner

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/oban_test"
BENCH_SCHEMA = "oban_bench_prune"
QUEUE = "bench"
NODE = "bench-node"
TOP_UP = 10_000
"""Available jobs added whenever the fetches are about to run out."""
INDEX_NAME = re.compile(r"\b(oban_jobs_\w+_index|oban_jobs_pkey)\b")


@dataclass
class Setup:
    """A migrated database: its URL, Oban prefix, jobs table (as SQL) and dialect."""

    url: str
    prefix: str | None
    table: str
    dialect: str


@dataclass
class Batch:
    rows: int
    seconds: float


@dataclass
class Fetches:
    """Seconds per fetch, and the available jobs left for the next ones."""

    seconds: list[float] = field(default_factory=list)
    available: int = 0


def _pg_url() -> str:
    return os.environ.get("OBAN_BENCH_DATABASE_URL") or os.environ.get(
        "OBAN_TEST_DATABASE_URL", DEFAULT_PG_URL
    )


@contextmanager
def fresh(engine: str) -> Iterator[Setup]:
    if engine == "basic":
        url = _pg_url()
        bind = sa.create_engine(url)
        drop = sa.schema.DropSchema(BENCH_SCHEMA, cascade=True, if_exists=True)
        with bind.begin() as conn:
            conn.execute(drop)
        try:
            oban.migrate(bind, prefix=BENCH_SCHEMA)
            yield Setup(url, BENCH_SCHEMA, f'"{BENCH_SCHEMA}".oban_jobs', "postgresql")
        finally:
            with bind.begin() as conn:
                conn.execute(drop)
            bind.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="oban-bench-prune-") as directory:
            url = f"sqlite:///{Path(directory) / 'prune.db'}"
            bind = sa.create_engine(url)
            oban.migrate(bind)
            bind.dispose()
            yield Setup(url, None, "oban_jobs", "sqlite")


# -- loading -----------------------------------------------------------------------------

PG_FINISHED = """
INSERT INTO {table} (state, queue, worker, args, attempt, attempted_by,
                     inserted_at, scheduled_at, attempted_at,
                     completed_at, cancelled_at, discarded_at)
SELECT s.state::{schema}.oban_job_state, 'done', 'bench.Done', jsonb_build_object('n', g), 1,
       ARRAY['{node}'], s.at - interval '2 seconds', s.at - interval '2 seconds',
       s.at - interval '1 second',
       CASE WHEN s.state = 'completed' THEN s.at END,
       CASE WHEN s.state = 'cancelled' THEN s.at END,
       CASE WHEN s.state = 'discarded' THEN s.at END
FROM generate_series(1, {rows:d}) AS g,
     LATERAL (SELECT CASE mod(g, 10) WHEN 0 THEN 'cancelled' WHEN 1 THEN 'discarded'
                     ELSE 'completed' END AS state,
                     timezone('UTC', now()) - interval '1 hour'
                       - mod(g, 86400) * interval '1 second' AS at) AS s
"""

PG_AVAILABLE = """
INSERT INTO {table} (state, queue, worker, args, inserted_at, scheduled_at)
SELECT 'available', '{queue}', 'bench.Work', jsonb_build_object('n', g),
       timezone('UTC', now()) - interval '1 second', timezone('UTC', now()) - interval '1 second'
FROM generate_series(1, {rows:d}) AS g
"""

LITE_FINISHED = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows:d}),
s(n, state, at) AS (
  SELECT n, CASE n % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'discarded' ELSE 'completed' END,
         strftime('%Y-%m-%d %H:%M:%f', 'now', '-3600 seconds', '-' || (n % 86400) || ' seconds')
  FROM g)
INSERT INTO oban_jobs (state, queue, worker, args, attempt, attempted_by,
                       inserted_at, scheduled_at, attempted_at,
                       completed_at, cancelled_at, discarded_at)
SELECT state, 'done', 'bench.Done', '{{"n":' || n || '}}', 1, '["{node}"]', at, at, at,
       CASE WHEN state = 'completed' THEN at END,
       CASE WHEN state = 'cancelled' THEN at END,
       CASE WHEN state = 'discarded' THEN at END
FROM s
"""

LITE_AVAILABLE = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows:d})
INSERT INTO oban_jobs (state, queue, worker, args, inserted_at, scheduled_at)
SELECT 'available', '{queue}', 'bench.Work', '{{"n":' || n || '}}',
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 seconds')
FROM g
"""


def add_available(bind: sa.Engine, setup: Setup, rows: int) -> None:
    sql = PG_AVAILABLE if setup.dialect == "postgresql" else LITE_AVAILABLE
    with bind.begin() as conn:
        conn.exec_driver_sql(sql.format(table=setup.table, queue=QUEUE, rows=rows))


def load(bind: sa.Engine, setup: Setup, rows: int, available: int) -> None:
    if setup.dialect == "postgresql":
        finished = PG_FINISHED.format(
            table=setup.table, schema=f'"{setup.prefix}"', node=NODE, rows=rows
        )
    else:
        finished = LITE_FINISHED.format(node=NODE, rows=rows)
    with bind.begin() as conn:
        conn.exec_driver_sql(finished)
    add_available(bind, setup, available)
    # A table that has been in use for a while has been vacuumed: start from that.
    vacuum(bind, setup, analyze=True)


def vacuum(bind: sa.Engine, setup: Setup, *, analyze: bool = False) -> None:
    """VACUUM (and ANALYZE) the jobs table on PostgreSQL; ANALYZE only on SQLite,
    which reuses the pages of deleted rows without one."""
    if setup.dialect == "postgresql":
        sql = f"VACUUM (ANALYZE) {setup.table}" if analyze else f"VACUUM {setup.table}"
    elif analyze:
        sql = "ANALYZE"
    else:
        return
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(sql)


def autovacuum(bind: sa.Engine, setup: Setup) -> str:
    """ ", autovacuum off" when the server will not vacuum behind the pruner's back."""
    if setup.dialect != "postgresql":
        return ""
    with bind.connect() as conn:
        return f", autovacuum {conn.exec_driver_sql('SHOW autovacuum').scalar_one()}"


def count(bind: sa.Engine, setup: Setup, where: str) -> int:
    with bind.connect() as conn:
        query = f"SELECT count(*) FROM {setup.table} WHERE {where}"
        return int(conn.exec_driver_sql(query).scalar_one())


# -- plans -------------------------------------------------------------------------------


def prune_plans(
    bind: sa.Engine, setup: Setup, engine: ClusterEngine, before: datetime, limit: int
) -> list[tuple[str, str]]:
    """(kind, plan) of every statement one ``prune_jobs`` call sends, none of them run.

    Each statement is caught on its way to the driver and sent as ``EXPLAIN``
    (``EXPLAIN QUERY PLAN`` on SQLite) instead, so what is explained is the
    SQL the pruner really sends, with its parameters. On PostgreSQL the
    statement is also prepared and explained as a generic plan: psycopg
    prepares a statement run five times, and the server may then plan it
    once for any parameters.
    """
    postgres = setup.dialect == "postgresql"
    sent: list[tuple[str, Any]] = []
    plans: list[tuple[str, str]] = []

    def explain(
        conn: sa.Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        sent.append((statement, params))
        return ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, params

    def read(
        conn: sa.Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        rows = cursor.fetchall()
        lines = [str(row[0]) if postgres else str(row[-1]) for row in rows]
        plans.append(("custom" if postgres else "plan", "\n".join(lines)))

    with bind.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", explain, retval=True)
        sa.event.listen(conn, "after_cursor_execute", read)
        with conn.begin():
            engine.prune_jobs(conn, before, limit)
            conn.rollback()
        sa.event.remove(conn, "before_cursor_execute", explain)
        sa.event.remove(conn, "after_cursor_execute", read)
        if not postgres:
            return plans
        generic: list[tuple[str, str]] = []
        for (statement, params), custom in zip(sent, plans, strict=True):
            names: list[str] = []

            def placeholder(match: re.Match[str], names: list[str] = names) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            prepared = re.sub(r"%\((\w+)\)s", placeholder, statement)
            values = ", ".join(_literal(params[name]) for name in names)
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
                conn.exec_driver_sql(f"PREPARE bench_prune AS {prepared}")
                try:
                    rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE bench_prune({values})")
                    plan = "\n".join(str(row[0]) for row in rows)
                finally:
                    conn.exec_driver_sql("DEALLOCATE bench_prune")
                conn.rollback()
            generic += [custom, ("generic", plan)]
        return generic


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamp"
    if isinstance(value, int):
        return str(int(value))
    raise TypeError(f"no literal for {value!r}")


def print_plans(plans: Sequence[tuple[str, str]]) -> None:
    for number, (kind, plan) in enumerate(plans, start=1):
        indexes = sorted(set(INDEX_NAME.findall(plan)))
        scans = "seq scan!" if re.search(r"Seq Scan|SCAN oban_jobs\b(?! USING)", plan) else ""
        print(f"-- statement {number} ({kind}): indexes {', '.join(indexes) or 'none'} {scans}")
        for line in plan.splitlines():
            print(f"   {line}")


# -- fetching and pruning ----------------------------------------------------------------


def fetch_once(engine: ClusterEngine, demand: int, attempted_by: list[str]) -> tuple[int, float]:
    """One producer fetch in its own transaction: (jobs claimed, seconds)."""
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    with engine.transaction() as conn:
        jobs = engine.fetch_jobs(conn, QUEUE, demand, attempted_by, now)
    return len(jobs), time.perf_counter() - started


def fetch_loop(
    bind: sa.Engine,
    setup: Setup,
    engine: ClusterEngine,
    fetches: Fetches,
    demand: int,
    pause: float,
    *,
    times: int | None = None,
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Fetch ``times`` times, or until ``until()``; refill the pool untimed."""
    attempted_by = [NODE, str(uuid.uuid4())]
    done = 0
    while (times is None or done < times) and not until():
        if fetches.available < demand:
            add_available(bind, setup, TOP_UP)
            fetches.available += TOP_UP
        claimed, seconds = fetch_once(engine, demand, attempted_by)
        fetches.available -= claimed
        fetches.seconds.append(seconds)
        done += 1
        time.sleep(pause)  # a producer fetches when woken, not in a tight loop


class TimedEngine:
    """The engine as the pruner sees it, timing each ``prune_jobs`` transaction
    (commit included); everything else passes through."""

    def __init__(self, engine: ClusterEngine) -> None:
        self.engine = engine
        self.batches: list[Batch] = []
        self._rows: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        self._rows = []
        started = time.perf_counter()
        with self.engine.transaction() as conn:
            yield conn
        if self._rows:  # the transaction was a prune batch: committed now
            self.batches.append(Batch(self._rows[0], time.perf_counter() - started))

    def prune_jobs(self, conn: sa.Connection, before: datetime, limit: int) -> int:
        deleted = self.engine.prune_jobs(conn, before, limit)
        self._rows.append(deleted)
        return deleted


def prune_all(engine: ClusterEngine, max_age: float, limit: int) -> list[Batch]:
    """One tick of the runtime's Pruner plugin (in an event loop of this thread,
    its batches through ``Database.run`` as on a leader): every batch timed."""
    timed = TimedEngine(engine)
    context = PluginContext(
        database=Database(cast("Engine", timed)),
        config=RuntimeConfig(
            queues={}, node=NODE, name="bench-prune", prune_max_age=max_age, prune_limit=limit
        ),
        clock=lambda: datetime.now(timezone.utc),
        wake_queues=lambda queues: None,
        running_ids=list,
        kill=lambda ids: None,
    )
    anyio.run(Pruner(context).tick)
    return timed.batches


# -- figures -----------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def print_table(columns: dict[str, Fetches], batches: list[Batch], total: float) -> None:
    names = list(columns)
    print(f"{'fetch latency':<22}" + "".join(f"{name:>18}" for name in names))
    print("-" * (22 + 18 * len(names)))
    print(f"{'fetches':<22}" + "".join(f"{len(columns[n].seconds):>18,}" for n in names))
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        row = "".join(f"{ms(quantile(columns[n].seconds, q)):>18}" for n in names)
        print(f"{label:<22}{row}")
    rows = sum(batch.rows for batch in batches)
    durations = [batch.seconds for batch in batches]
    print()
    print(f"{'pruning':<22}")
    print("-" * 40)
    for label, value in (
        ("rows deleted", f"{rows:,}"),
        ("batches", f"{len(batches):,}"),
        ("max batch size", f"{max(batch.rows for batch in batches):,}"),
        ("batch p50", ms(statistics.median(durations))),
        ("batch p95", ms(quantile(durations, 0.95))),
        ("batch max", ms(max(durations))),
        ("total", f"{total:.2f} s"),
        ("rows/s", f"{rows / total:,.0f}"),
    ):
        print(f"{label:<22}{value:>18}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["basic", "lite"], default="basic")
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished jobs (1,000,000)")
    parser.add_argument("--available", type=int, default=20_000, help="available jobs (20,000)")
    parser.add_argument("--fetches", type=int, default=2_000, help="fetches per figure (2,000)")
    parser.add_argument("--demand", type=int, default=10, help="jobs per fetch (10)")
    parser.add_argument("--pause", type=float, default=0.002, help="s between fetches (0.002)")
    parser.add_argument("--prune-limit", type=int, default=PRUNE_LIMIT, help="rows per batch")
    parser.add_argument("--prune", type=float, default=PRUNE_MAX_AGE, help="s jobs are kept")
    parser.add_argument("--no-plans", action="store_true", help="skip the EXPLAIN part")
    args = parser.parse_args(argv)

    print(
        f"Oban pruner: {args.rows:,} finished jobs, engine {args.engine}, prune_limit "
        f"{args.prune_limit:,}, fetches of {args.demand} (Python {sys.version.split()[0]}, "
        f"SQLAlchemy {sa.__version__}, oban from {Path(oban.__file__).parent})"
    )
    with fresh(args.engine) as setup:
        bind = sa.create_engine(setup.url)
        instance = Oban(setup.url, prefix=setup.prefix, queues={}, name="bench-prune")
        engine = cast("ClusterEngine", instance.engine)
        try:
            started = time.perf_counter()
            load(bind, setup, args.rows, args.available)
            print(f"loaded in {time.perf_counter() - started:.1f} s{autovacuum(bind, setup)}")

            if not args.no_plans:
                before = datetime.now(timezone.utc) - timedelta(seconds=args.prune)
                print_plans(prune_plans(bind, setup, engine, before, args.prune_limit))
                print()

            fetches = Fetches(available=args.available)
            fetch_loop(bind, setup, engine, fetches, args.demand, args.pause, times=args.fetches)
            idle = fetches.seconds
            fetches.seconds = []

            batches: list[Batch] = []
            pruner = threading.Thread(
                target=lambda: batches.extend(prune_all(engine, args.prune, args.prune_limit))
            )
            started = time.perf_counter()
            pruner.start()
            fetch_loop(
                bind,
                setup,
                engine,
                fetches,
                args.demand,
                args.pause,
                until=lambda: not pruner.is_alive(),
            )
            pruner.join()
            total = time.perf_counter() - started
            during = fetches.seconds
            fetches.seconds = []

            fetch_loop(bind, setup, engine, fetches, args.demand, args.pause, times=args.fetches)
            columns = {
                "before pruning": Fetches(idle),
                "during pruning": Fetches(during),
                "after pruning": Fetches(fetches.seconds),
            }
            vacuumed = ""
            if setup.dialect == "postgresql":
                # Until (auto)vacuum runs, the deleted rows' index entries are still there.
                fetches.seconds = []
                started = time.perf_counter()
                vacuum(bind, setup)
                vacuumed = f"{time.perf_counter() - started:.2f} s"
                fetch_loop(
                    bind, setup, engine, fetches, args.demand, args.pause, times=args.fetches
                )
                columns["after VACUUM"] = Fetches(fetches.seconds)
            left = count(bind, setup, "state IN ('completed', 'cancelled', 'discarded')")
            print_table(columns, batches, total)
            print(f"{'finished rows left':<22}{left:>18,}")
            if vacuumed:
                print(f"{'VACUUM afterwards':<22}{vacuumed:>18}")
        finally:
            instance.close()
            bind.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
