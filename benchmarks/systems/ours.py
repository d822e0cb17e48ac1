"""Adapter: this checkout's Oban, on PostgreSQL (Basic) or SQLite (Lite).

The driver runs it with PYTHONPATH=<repo root>, so the tree being benchmarked
is the one measured. Workloads (see benchmarks/README.md): W1 bulk insert, W2
single inserts, W3 pre-inserted no-op jobs end to end, W4 pickup latency, W5
several processes and fetch latency on a big table, W6 memory over 100,000
jobs, W7 sustained load. Each prints one JSON result line (see _common.py).
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, cast

import _common
import _ours_workers as w
import anyio
import sqlalchemy as sa

import oban
from oban import Oban, Worker
from oban.engines.base import ClusterEngine

SEED_CHUNK = 10_000


def sa_url(url: str) -> str:
    """The libpq URL the driver gives, with SQLAlchemy's psycopg 3 dialect."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def count(bind: sa.Engine, where: str) -> int:
    with bind.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT count(*) FROM oban_jobs WHERE {where}").scalar()
        return int(found or 0)


def seed(url: str, kind: type[Worker], jobs: int, name: str = "bench-seed") -> None:
    """Insert ``jobs`` jobs, untimed, in chunks."""
    inserter = Oban(url, name=name)
    try:
        for low in range(0, jobs, SEED_CHUNK):
            high = min(low + SEED_CHUNK, jobs)
            inserter.enqueue_many([kind.new({"n": n}) for n in range(low, high)])
    finally:
        inserter.close()


# -- W1 / W2 -------------------------------------------------------------------------------------


def w1(url: str, jobs: int, api: str) -> dict[str, Any]:
    """One enqueue_many (or enqueue_many_async) call of ``jobs`` jobs, built beforehand."""
    instance = Oban(url, name="bench-insert")
    batch = [w.AsyncNoop.new({"n": n}) for n in range(jobs)]
    # Connected before the clock starts, as the peers' adapters and the floor are.
    instance.get_job(0)
    try:
        if api == "async":

            async def insert() -> float:
                started = time.perf_counter()
                await instance.enqueue_many_async(batch)
                return time.perf_counter() - started

            seconds = anyio.run(insert)
        else:
            started = time.perf_counter()
            instance.enqueue_many(batch)
            seconds = time.perf_counter() - started
    finally:
        instance.close()
    return inserted(url, jobs, seconds)


def inserted(url: str, jobs: int, seconds: float) -> dict[str, Any]:
    """An insert workload's result: its rate, and the rows really stored (validity)."""
    bind = sa.create_engine(url)
    stored = count(bind, "state = 'available'")
    bind.dispose()
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


def w2(url: str, jobs: int, api: str) -> dict[str, Any]:
    """``jobs`` enqueue calls, each its own transaction."""
    instance = Oban(url, name="bench-insert")
    instance.get_job(0)  # connected before the clock starts, as in W1
    try:
        if api == "async":

            async def insert() -> float:
                started = time.perf_counter()
                for n in range(jobs):
                    await instance.enqueue_async(w.AsyncNoop.new({"n": n}))
                return time.perf_counter() - started

            seconds = anyio.run(insert)
        else:
            started = time.perf_counter()
            for n in range(jobs):
                instance.enqueue(w.AsyncNoop.new({"n": n}))
            seconds = time.perf_counter() - started
    finally:
        instance.close()
    return inserted(url, jobs, seconds)


# -- W3 ------------------------------------------------------------------------------------------


def w3(url: str, jobs: int, limit: int, kind: str, loop: str, mode: str) -> dict[str, Any]:
    """From start until the database says all ``jobs`` pre-inserted no-op jobs completed.

    The runtime's own counter ends the wait (no polling load on the database
    while it works), then the jobs table is read until it agrees: the acks
    are part of the figure.
    """
    worker_cls: type[Worker] = w.AsyncNoop if kind == "async" else w.SyncNoop
    seed(url, worker_cls, jobs)
    bind = sa.create_engine(url)
    instance = Oban(url, name="bench-run", queues={w.QUEUE: limit}, backend=loop)  # type: ignore[arg-type]

    def stored() -> bool:
        return count(bind, "state = 'completed'") >= jobs

    timeout = 60 + jobs / 20
    w.expect(jobs)
    try:
        if mode == "with":
            started = time.perf_counter()
            with instance:
                ok = w.finished.wait(timeout)
                ok = ok and _common.wait_until(stored, 30)
                seconds = time.perf_counter() - started
        else:

            async def main() -> tuple[bool, float]:
                started = time.perf_counter()
                async with instance:
                    deadline = time.monotonic() + timeout
                    await anyio.to_thread.run_sync(w.finished.wait, timeout)
                    while time.monotonic() < deadline:
                        if await anyio.to_thread.run_sync(stored):
                            return True, time.perf_counter() - started
                        await anyio.sleep(0.01)
                return False, time.perf_counter() - started

            ok, seconds = anyio.run(main, backend=loop)
        completed = count(bind, "state = 'completed'")
    finally:
        instance.close()
        bind.dispose()
    note = None if ok else "timed out"
    return {
        "metrics": _common.rate(jobs, seconds),
        "completed": completed,
        "expected": jobs,
        "note": note,
    }


# -- W4 ------------------------------------------------------------------------------------------


def w4_insert(url: str, jobs: int, interval: float, kind: str) -> None:
    """The inserting process: ``jobs`` single enqueues ``interval`` apart."""
    worker_cls: type[Worker] = w.AsyncStamp if kind == "async" else w.SyncStamp
    inserter = Oban(url, name="bench-insert")
    inserter.enqueue(worker_cls.new({"n": -1}))  # connect and warm up before the clock starts

    def insert_one(n: int) -> None:
        inserter.enqueue(worker_cls.new({"n": n}))

    try:
        _common.paced_inserts(insert_one, jobs, interval)
    finally:
        inserter.close()


def w4(cfg: dict[str, Any], url: str, jobs: int, kind: str) -> dict[str, Any]:
    """Idle runtime; another process enqueues ``jobs`` jobs 20 ms apart."""
    instance = Oban(url, name="bench-run", queues={w.QUEUE: 20})
    with instance:
        time.sleep(1.0)  # idle: started, listening, nothing to do
        proc = _common.spawn_inserter(cfg)
        commits = _common.inserter_commits(proc)
        _common.wait_until(lambda: all(n in w.starts for n in commits), 10)
    return _common.latency_result(commits, w.starts)


# -- W5 ------------------------------------------------------------------------------------------


def w5_child(url: str, limit: int, index: int) -> None:
    """One of W5's worker processes: ready, wait for "go", run until "stop"."""
    instance = Oban(
        url, name="bench-run", node=f"bench-{index}", queues={w.QUEUE: limit}, prune=False
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    with instance:
        sys.stdin.readline()
    _common.emit(done=w.done)


def w5_processes(cfg: dict[str, Any], url: str, jobs: int, procs: int) -> dict[str, Any]:
    """``procs`` processes, each one queue of limit 20, share ``jobs`` pre-inserted jobs."""
    seed(url, w.AsyncNoop, jobs)
    children = []
    for index in range(procs):
        child_cfg = dict(cfg, role="w5-child", index=index)
        children.append(
            subprocess.Popen(
                [sys.executable, sys.argv[0], _json(child_cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        assert child.stdout is not None
        child.stdout.readline()  # "ready": imported, configured
    bind = sa.create_engine(url)
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    ok = _common.wait_until(
        lambda: count(bind, "state = 'completed'") >= jobs, 60 + jobs / 50, 0.02
    )
    seconds = time.perf_counter() - started
    handled = 0
    for child in children:
        assert child.stdin is not None
        child.stdin.write("stop\n")
        child.stdin.flush()
        out, _ = child.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        handled += int(_loads(lines[-1])["done"]) if lines else 0
    completed = count(bind, "state = 'completed'")
    bind.dispose()
    return {
        "metrics": _common.rate(jobs, seconds),
        "completed": min(completed, handled),
        "expected": jobs,
        "note": None if ok and handled == jobs else f"handled {handled}, completed {completed}",
    }


PG_FINISHED = """
INSERT INTO oban_jobs (state, queue, worker, args, attempt, attempted_by,
                       inserted_at, scheduled_at, attempted_at, completed_at)
SELECT 'completed', 'done', 'bench.Done', jsonb_build_object('n', g), 1, ARRAY['bench'],
       timezone('UTC', now()) - interval '10 seconds',
       timezone('UTC', now()) - interval '10 seconds',
       timezone('UTC', now()) - interval '9 seconds', timezone('UTC', now()) - interval '8 seconds'
FROM generate_series(1, {rows:d}) AS g
"""

LITE_FINISHED = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows:d})
INSERT INTO oban_jobs (state, queue, worker, args, attempt, attempted_by,
                       inserted_at, scheduled_at, attempted_at, completed_at)
SELECT 'completed', 'done', 'bench.Done', '{{"n":' || n || '}}', 1, '["bench"]',
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-9 seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-8 seconds')
FROM g
"""


def w5_fetch(url: str, finished: int, fetches: int, demand: int) -> dict[str, Any]:
    """Fetch latency (engine.fetch_jobs of ``demand`` jobs, own transaction each)
    with ``finished`` completed rows in the table beside the available ones."""
    bind = sa.create_engine(url)
    postgres = bind.dialect.name == "postgresql"
    with bind.begin() as conn:
        conn.exec_driver_sql((PG_FINISHED if postgres else LITE_FINISHED).format(rows=finished))
    bind.dispose()
    seed(url, w.AsyncNoop, fetches * demand)
    bind = sa.create_engine(url)
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE oban_jobs" if postgres else "ANALYZE")
    instance = Oban(url, name="bench-fetch")
    engine = cast("ClusterEngine", instance.engine)
    attempted_by = ["bench", str(uuid.uuid4())]
    seconds: list[float] = []
    claimed = 0
    try:
        for _ in range(fetches):
            now = datetime.now(timezone.utc)
            began = time.perf_counter()
            with engine.transaction() as conn:
                claimed += len(engine.fetch_jobs(conn, w.QUEUE, demand, attempted_by, now))
            seconds.append(time.perf_counter() - began)
            time.sleep(0.002)  # a producer fetches when woken, not in a tight loop
    finally:
        instance.close()
        bind.dispose()
    millis = [1000 * s for s in seconds]
    return {
        "metrics": {
            "p50_ms": _common.quantile(millis, 0.5),
            "p95_ms": _common.quantile(millis, 0.95),
            "finished_rows": finished,
        },
        "completed": claimed,
        "expected": fetches * demand,
    }


# -- W6 ------------------------------------------------------------------------------------------


def w6(url: str, jobs: int, warmup: int, batch: int) -> dict[str, Any]:
    """RSS after a warm-up, and again after ``jobs`` more jobs, in one process."""
    instance = Oban(url, name="bench-run", queues={w.QUEUE: 20})
    bind = sa.create_engine(url)
    with instance:
        instance.enqueue_many([w.AsyncNoop.new({"n": n}) for n in range(warmup)])
        _common.wait_until(lambda: w.done >= warmup, 120)
        gc.collect()
        before = _common.rss_mb()
        offered = 0
        while offered < jobs:
            size = min(batch, jobs - offered)
            instance.enqueue_many([w.AsyncNoop.new({"n": offered + n}) for n in range(size)])
            offered += size
            # keep at most two batches waiting, as a steady producer would
            sent = offered
            _common.wait_until(lambda: warmup + sent - w.done <= batch, 120)  # noqa: B023
        ok = _common.wait_until(lambda: w.done >= warmup + jobs, 120)
        ok = ok and _common.wait_until(
            lambda: count(bind, "state = 'completed'") >= warmup + jobs, 30
        )
        gc.collect()
        after = _common.rss_mb()
    completed = count(bind, "state = 'completed'") - warmup
    bind.dispose()
    return {
        "metrics": {"rss_before_mb": before, "rss_after_mb": after, "growth_mb": after - before},
        "completed": completed,
        "expected": jobs,
        "note": None if ok else "timed out",
    }


# -- W7 ------------------------------------------------------------------------------------------


def w7(url: str, offered_rate: float, duration: float, window: float) -> dict[str, Any]:
    """A producer offers ``offered_rate`` jobs/s for ``duration`` s, credited on real
    elapsed time and inserted every 10 ms as one batch; one process runs the
    queue with 16 slots of 1 ms ``async def`` jobs. Every ``window`` seconds:
    completion rate, queue depth, pickup latency p50/p99 (insert commit ->
    process start). The producer enqueues through the running instance, as code
    in the same process does (on Lite that is what wakes the queue at once: it
    has no NOTIFY, and its signals stay inside one instance)."""
    instance = Oban(url, name="bench-run", queues={w.QUEUE: 16})
    producer = instance
    bind = sa.create_engine(url)
    commits: dict[int, float] = {}
    stop = threading.Event()
    offered = [0]

    def produce() -> None:
        started = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= duration:
                break
            due = int(offered_rate * elapsed) - offered[0]
            if due > 0:
                low = offered[0]
                producer.enqueue_many([w.AsyncMillisecond.new({"n": low + n}) for n in range(due)])
                now = time.time()
                for n in range(low, low + due):
                    commits[n] = now
                offered[0] += due
            time.sleep(0.01)

    windows: list[dict[str, Any]] = []
    with instance:
        thread = threading.Thread(target=produce, daemon=True)
        began = time.monotonic()
        thread.start()
        last_done, last_at = 0, began
        while thread.is_alive():
            # the last window ends with the producer, so no window counts idle time
            thread.join(timeout=max(0.0, last_at + window - time.monotonic()))
            now_done, now_at = w.done, time.monotonic()
            depth = count(bind, "state = 'available'")
            low, high = time.time() - (now_at - last_at), time.time()
            picked = [
                1000 * (start - commits[n])
                for n, start in list(w.starts.items())
                if low <= start < high and n in commits
            ]
            windows.append(
                {
                    "t": round(now_at - began, 1),
                    "completed_per_s": (now_done - last_done) / (now_at - last_at),
                    "depth": depth,
                    "pickup_p50_ms": _common.quantile(picked, 0.5) if picked else None,
                    "pickup_p99_ms": _common.quantile(picked, 0.99) if picked else None,
                }
            )
            last_done, last_at = now_done, now_at
        thread.join()
        done_at_end, ended = w.done, time.monotonic()
        ok = _common.wait_until(lambda: w.done >= offered[0], 30)
        ok = ok and _common.wait_until(lambda: count(bind, "state = 'completed'") >= offered[0], 30)
    completed = count(bind, "state = 'completed'")
    bind.dispose()
    pickups = [1000 * (w.starts[n] - commits[n]) for n in commits if n in w.starts]
    depths = [row["depth"] for row in windows]
    return {
        "metrics": {
            "offered_per_s": offered[0] / duration,
            # jobs done while the producer ran, over that time (a mean of the
            # windows' rates would overweight the last, shorter window)
            "completed_per_s": done_at_end / max(ended - began, 1e-9),
            "max_depth": max(depths or [0]),
            "pickup_p50_ms": _common.quantile(pickups, 0.5),
            "pickup_p99_ms": _common.quantile(pickups, 0.99),
            "windows": windows,
        },
        "completed": completed,
        "expected": offered[0],
        "note": None if ok else "did not drain",
    }


def w7_saturated(url: str, jobs: int, slots: int) -> dict[str, Any]:
    """Per-slot overhead: ``jobs`` pre-inserted 1 ms jobs through ``slots`` slots;
    overhead = slots x elapsed / jobs - the jobs' measured mean duration."""
    seed(url, w.AsyncMillisecond, jobs)
    bind = sa.create_engine(url)
    instance = Oban(url, name="bench-run", queues={w.QUEUE: slots})
    w.expect(jobs)
    started = time.perf_counter()
    with instance:
        ok = w.finished.wait(60 + jobs / 20)
        ok = ok and _common.wait_until(lambda: count(bind, "state = 'completed'") >= jobs, 30)
        seconds = time.perf_counter() - started
    completed = count(bind, "state = 'completed'")
    bind.dispose()
    job_ms = 1000 * statistics.fmean(w.durations) if w.durations else float("nan")
    per_job_ms = 1000 * slots * seconds / jobs
    return {
        "metrics": {
            "rate": jobs / seconds,
            "job_ms": job_ms,
            "slot_ms_per_job": per_job_ms,
            "overhead_ms": per_job_ms - job_ms,
        },
        "completed": completed,
        "expected": jobs,
        "note": None if ok else "timed out",
    }


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def _loads(text: str) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(text)
    return loaded


def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(
            versions=_common.versions("sqlalchemy", "psycopg", "anyio", "trio")
            | {"oban (this tree)": oban.__version__}
        )
        return
    url = sa_url(cfg["url"])
    role = cfg.get("role")
    if role == "insert":
        w4_insert(url, int(cfg["jobs"]), _common.W4_INTERVAL, cfg.get("worker", "async"))
        return
    if role == "w5-child":
        w5_child(url, cfg.get("limit", 20), int(cfg["index"]))
        return
    bind = sa.create_engine(url)
    oban.migrate(bind)
    bind.dispose()
    workload, jobs = cfg["workload"], int(cfg["jobs"])
    if workload == "W1":
        result = w1(url, jobs, cfg.get("api", "sync"))
    elif workload == "W2":
        result = w2(url, jobs, cfg.get("api", "sync"))
    elif workload == "W3":
        result = w3(
            url, jobs, cfg.get("limit", 20), cfg["worker"], cfg["loop"], cfg.get("mode", "with")
        )
    elif workload == "W4":
        result = w4(cfg, url, jobs, cfg.get("worker", "async"))
    elif workload == "W5":
        if cfg.get("part") == "fetch":
            result = w5_fetch(url, int(cfg["finished"]), int(cfg.get("fetches", 500)), 20)
        else:
            result = w5_processes(cfg, url, jobs, int(cfg["procs"]))
    elif workload == "W6":
        result = w6(url, jobs, int(cfg.get("warmup", 2_000)), int(cfg.get("batch", 5_000)))
    elif workload == "W7":
        if cfg.get("part") == "saturated":
            result = w7_saturated(url, jobs, 16)
        else:
            result = w7(url, float(cfg["rate"]), float(cfg["duration"]), 5.0)
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    _common.emit(**result)


if __name__ == "__main__":
    main()
