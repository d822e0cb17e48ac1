"""Adapter: oban-py (the ``oban`` package on PyPI), the official asyncio port of Elixir Oban.

Runs in its own virtual environment (Python 3.12, which oban-py requires),
never with this checkout on the path (both packages are named ``oban``).
Idiomatic use, from its docs: a psycopg ``AsyncConnectionPool``,
``oban.schema.install``, ``@worker`` classes with ``async def process``,
``enqueue_many`` for bulk inserts (one multi-row insert), ``enqueue`` for one,
and ``async with Oban(pool=..., queues={"bench": 20})`` as the runtime.
Completion is read back from its ``oban_jobs`` table (``state = 'completed'``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _common
from psycopg_pool import AsyncConnectionPool

from oban import Oban, worker
from oban.schema import install

state: dict[str, Any] = {"starts": {}}
counter = _common.Countdown()


@worker(queue=_common.QUEUE)
class Noop:
    async def process(self, job):
        counter.hit()


@worker(queue=_common.QUEUE)
class Stamp:
    async def process(self, job):
        state["starts"][int(job.args["n"])] = time.time()
        counter.hit()


async def open_pool(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(conninfo=url, open=False, min_size=1, max_size=10)
    await pool.open()
    return pool


async def count(pool: AsyncConnectionPool, where: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM oban_jobs WHERE {where}")
        row = await cur.fetchone()
        return int(row[0])


async def w1(pool, jobs: int) -> dict[str, Any]:
    client = Oban(pool=pool, name="insert")
    batch = [Noop.new({"n": n}) for n in range(jobs)]
    started = time.perf_counter()
    await client.enqueue_many(batch)
    seconds = time.perf_counter() - started
    stored = await count(pool, "state = 'available'")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w2(pool, jobs: int) -> dict[str, Any]:
    client = Oban(pool=pool, name="insert")
    started = time.perf_counter()
    for n in range(jobs):
        await client.enqueue(Noop.new({"n": n}))
    seconds = time.perf_counter() - started
    stored = await count(pool, "state = 'available'")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w3(pool, jobs: int, limit: int) -> dict[str, Any]:
    client = Oban(pool=pool, name="insert")
    for low in range(0, jobs, 10_000):
        await client.enqueue_many([Noop.new({"n": n}) for n in range(low, min(low + 10_000, jobs))])
    counter.arm(jobs)
    started = time.perf_counter()
    async with Oban(pool=pool, name="Oban", queues={_common.QUEUE: limit}):
        ok = await counter.wait(60 + jobs / 20)
        while ok and await count(pool, "state = 'completed'") < jobs:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
    completed = await count(pool, "state = 'completed'")
    return {"metrics": _common.rate(jobs, seconds), "completed": completed, "expected": jobs}


async def w4(cfg, pool) -> dict[str, Any]:
    async with Oban(pool=pool, name="Oban", queues={_common.QUEUE: 20}):
        await asyncio.sleep(1.0)
        proc = _common.spawn_inserter(cfg)
        commits = await asyncio.to_thread(_common.inserter_commits, proc)
        await _common.wait_until_async(lambda: all(n in state["starts"] for n in commits), 10)
    return _common.latency_result(commits, state["starts"])


async def w4_insert(pool, jobs: int) -> None:
    client = Oban(pool=pool, name="insert")
    await client.enqueue(Stamp.new({"n": -1}))  # warm up before the clock starts

    async def insert_one(n: int) -> None:
        await client.enqueue(Stamp.new({"n": n}))

    await _common.paced_inserts_async(insert_one, jobs, _common.W4_INTERVAL)


async def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(versions=_common.versions("oban", "psycopg", "psycopg-pool"))
        return
    pool = await open_pool(cfg["url"])
    try:
        if cfg.get("role") == "insert":
            await w4_insert(pool, int(cfg["jobs"]))
            return
        await install(pool)
        workload, jobs = cfg["workload"], int(cfg["jobs"])
        if workload == "W1":
            result = await w1(pool, jobs)
        elif workload == "W2":
            result = await w2(pool, jobs)
        elif workload == "W3":
            result = await w3(pool, jobs, cfg.get("limit", 20))
        elif workload == "W4":
            result = await w4(cfg, pool)
        else:
            raise SystemExit(f"oban-py has no {workload}")
        _common.emit(**result)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
