"""Adapter: pgqueuer, a PostgreSQL job queue on asyncio (LISTEN/NOTIFY, SKIP LOCKED).

Idiomatic use, from its docs: an asyncpg connection in ``AsyncpgDriver``,
``Queries.install()`` for the schema, ``Queries.enqueue`` with lists for a
batch (its bulk path: one statement over arrays) and with scalars for one
job, and a ``QueueManager`` with one ``async def`` entrypoint running
``qm.run(batch_size=10, max_concurrent_tasks=20)`` (20 in flight; pgqueuer
requires max_concurrent_tasks >= 2 x batch_size). A finished job leaves the
``pgqueuer`` table and is logged in ``pgqueuer_log``, so completion is the
handler's count, then the queue table empty, then the log's ``successful``
rows (counted after shutdown, when its status buffer has been flushed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _common
import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager

ENTRYPOINT = "bench"
state: dict[str, Any] = {"starts": {}}
counter = _common.Countdown()


async def scalar(conn, sql: str) -> int:
    return int(await conn.fetchval(sql))


def payloads(low: int, high: int) -> list[bytes | None]:
    return [str(n).encode() for n in range(low, high)]


async def w1(conn, jobs: int) -> dict[str, Any]:
    queries = Queries(AsyncpgDriver(conn))
    data = payloads(0, jobs)
    started = time.perf_counter()
    await queries.enqueue([ENTRYPOINT] * jobs, data, [0] * jobs)
    seconds = time.perf_counter() - started
    stored = await scalar(conn, "SELECT count(*) FROM pgqueuer")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w2(conn, jobs: int) -> dict[str, Any]:
    queries = Queries(AsyncpgDriver(conn))
    started = time.perf_counter()
    for n in range(jobs):
        await queries.enqueue(ENTRYPOINT, str(n).encode())
    seconds = time.perf_counter() - started
    stored = await scalar(conn, "SELECT count(*) FROM pgqueuer")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


def manager(conn, stamp: bool, limit: int) -> QueueManager:
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint(ENTRYPOINT)
    async def handle(job) -> None:
        if stamp:
            state["starts"][int(job.payload.decode())] = time.time()
        counter.hit()

    return qm


async def w3(url: str, conn, jobs: int, limit: int) -> dict[str, Any]:
    queries = Queries(AsyncpgDriver(conn))
    for low in range(0, jobs, 10_000):
        high = min(low + 10_000, jobs)
        await queries.enqueue([ENTRYPOINT] * (high - low), payloads(low, high), [0] * (high - low))
    worker_conn = await asyncpg.connect(url)
    qm = manager(worker_conn, stamp=False, limit=limit)
    counter.arm(jobs)
    started = time.perf_counter()
    task = asyncio.create_task(qm.run(batch_size=limit // 2, max_concurrent_tasks=limit))
    ok = await counter.wait(60 + jobs / 20)
    while ok and await scalar(conn, "SELECT count(*) FROM pgqueuer") > 0:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    qm.shutdown.set()
    await task
    await worker_conn.close()
    logged = await scalar(conn, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    left = await scalar(conn, "SELECT count(*) FROM pgqueuer")
    return {
        "metrics": _common.rate(jobs, seconds),
        "completed": min(logged, counter.done) if left == 0 else 0,
        "expected": jobs,
    }


async def w4(cfg, url: str) -> dict[str, Any]:
    worker_conn = await asyncpg.connect(url)
    qm = manager(worker_conn, stamp=True, limit=20)
    task = asyncio.create_task(qm.run(batch_size=10, max_concurrent_tasks=20))
    await asyncio.sleep(1.0)
    proc = _common.spawn_inserter(cfg)
    commits = await asyncio.to_thread(_common.inserter_commits, proc)
    await _common.wait_until_async(lambda: all(n in state["starts"] for n in commits), 10)
    qm.shutdown.set()
    await task
    await worker_conn.close()
    return _common.latency_result(commits, state["starts"])


async def w4_insert(conn, jobs: int) -> None:
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue(ENTRYPOINT, b"-1")  # warm up before the clock starts

    async def insert_one(n: int) -> None:
        await queries.enqueue(ENTRYPOINT, str(n).encode())

    await _common.paced_inserts_async(insert_one, jobs, _common.W4_INTERVAL)


async def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(versions=_common.versions("pgqueuer", "asyncpg"))
        return
    url = cfg["url"]
    conn = await asyncpg.connect(url)
    try:
        if cfg.get("role") == "insert":
            await w4_insert(conn, int(cfg["jobs"]))
            return
        await Queries(AsyncpgDriver(conn)).install()
        workload, jobs = cfg["workload"], int(cfg["jobs"])
        if workload == "W1":
            result = await w1(conn, jobs)
        elif workload == "W2":
            result = await w2(conn, jobs)
        elif workload == "W3":
            result = await w3(url, conn, jobs, cfg.get("limit", 20))
        elif workload == "W4":
            result = await w4(cfg, url)
        else:
            raise SystemExit(f"pgqueuer has no {workload}")
        _common.emit(**result)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
