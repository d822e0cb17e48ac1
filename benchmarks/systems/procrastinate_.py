"""Adapter: procrastinate, a PostgreSQL task queue (psycopg 3, LISTEN/NOTIFY, asyncio worker).

Idiomatic use, from its docs: ``App(connector=PsycopgConnector(...))``,
``schema_manager.apply_schema_async()``, an ``async def`` task;
``batch_defer_async`` is its bulk insert (one statement for the batch),
``defer_async`` a single one; the worker is ``app.run_worker_async`` with
``concurrency=20`` (its way to run 20 async jobs at once), and for W3
``wait=False``, which returns once the queue is caught up. Jobs stay in
``procrastinate_jobs``; completion is ``status = 'succeeded'`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import _common
import psycopg
from procrastinate import App, PsycopgConnector

state: dict[str, Any] = {"starts": {}}
counter = _common.Countdown()


def make_app(url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=url))

    @app.task(queue=_common.QUEUE, name="noop")
    async def noop(n: int) -> None:
        counter.hit()

    @app.task(queue=_common.QUEUE, name="stamp")
    async def stamp(n: int) -> None:
        state["starts"][n] = time.time()
        counter.hit()

    return app


async def count(url: str, where: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM procrastinate_jobs WHERE {where}")
        row = await cur.fetchone()
        return int(row[0])


async def w1(app: App, url: str, jobs: int) -> dict[str, Any]:
    task = app.tasks["noop"]
    batch = [{"n": n} for n in range(jobs)]
    started = time.perf_counter()
    await task.batch_defer_async(*batch)
    seconds = time.perf_counter() - started
    stored = await count(url, "status = 'todo'")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w2(app: App, url: str, jobs: int) -> dict[str, Any]:
    task = app.tasks["noop"]
    started = time.perf_counter()
    for n in range(jobs):
        await task.defer_async(n=n)
    seconds = time.perf_counter() - started
    stored = await count(url, "status = 'todo'")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w3(app: App, url: str, jobs: int, limit: int) -> dict[str, Any]:
    task = app.tasks["noop"]
    for low in range(0, jobs, 10_000):
        await task.batch_defer_async(*[{"n": n} for n in range(low, min(low + 10_000, jobs))])
    started = time.perf_counter()
    await app.run_worker_async(
        queues=[_common.QUEUE], concurrency=limit, wait=False, install_signal_handlers=False
    )
    seconds = time.perf_counter() - started
    completed = await count(url, "status = 'succeeded'")
    return {"metrics": _common.rate(jobs, seconds), "completed": completed, "expected": jobs}


async def w4(cfg: dict[str, Any], app: App) -> dict[str, Any]:
    worker = asyncio.create_task(
        app.run_worker_async(
            queues=[_common.QUEUE], concurrency=20, wait=True, install_signal_handlers=False
        )
    )
    await asyncio.sleep(1.0)
    proc = _common.spawn_inserter(cfg)
    commits = await asyncio.to_thread(_common.inserter_commits, proc)
    await _common.wait_until_async(lambda: all(n in state["starts"] for n in commits), 10)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    return _common.latency_result(commits, state["starts"])


async def w4_insert(app: App, jobs: int) -> None:
    task = app.tasks["stamp"]
    await task.defer_async(n=-1)  # warm up before the clock starts

    async def insert_one(n: int) -> None:
        await task.defer_async(n=n)

    await _common.paced_inserts_async(insert_one, jobs, _common.W4_INTERVAL)


async def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(versions=_common.versions("procrastinate", "psycopg", "psycopg-pool"))
        return
    url = cfg["url"]
    app = make_app(url)
    async with app.open_async():
        if cfg.get("role") == "insert":
            await w4_insert(app, int(cfg["jobs"]))
            return
        await app.schema_manager.apply_schema_async()
        workload, jobs = cfg["workload"], int(cfg["jobs"])
        if workload == "W1":
            result = await w1(app, url, jobs)
        elif workload == "W2":
            result = await w2(app, url, jobs)
        elif workload == "W3":
            result = await w3(app, url, jobs, cfg.get("limit", 20))
        elif workload == "W4":
            result = await w4(cfg, app)
        else:
            raise SystemExit(f"procrastinate has no {workload}")
    _common.emit(**result)


if __name__ == "__main__":
    asyncio.run(main())
