"""Adapter: awa-pg, a job queue with a Rust core (PyO3) and a Python SDK.

Idiomatic use, from its README: ``AsyncClient(url)``, ``migrate()`` (a fresh
database goes straight to its queue-storage engine), a dataclass per job
kind, ``enqueue_many_copy`` as the bulk path (COPY into queue storage),
``insert`` for one job, ``@client.task(Args, queue=...)`` with an ``async def``
handler and ``start([("bench", 20)])`` for 20 workers on the queue (its
default 200 ms poll backs up LISTEN/NOTIFY wake-ups). Finished jobs leave the
ready storage for a receipt ring rather than staying in one table, so
completion is the handler's count, confirmed by ``queue_stats()`` reporting
nothing available, running, retryable or failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import _common
import awa


@dataclass
class BenchNoop:
    n: int


@dataclass
class BenchStamp:
    n: int


state: dict[str, Any] = {"starts": {}}
counter = _common.Countdown()


async def stats(client: awa.AsyncClient) -> dict[str, int]:
    found = {"available": 0, "running": 0, "retryable": 0, "failed": 0, "scheduled": 0}
    for stat in await client.queue_stats():
        if stat.queue == _common.QUEUE:
            for key in found:
                found[key] += int(getattr(stat, key))
    return found


async def w1(client: awa.AsyncClient, jobs: int) -> dict[str, Any]:
    batch = [BenchNoop(n=n) for n in range(jobs)]
    started = time.perf_counter()
    await client.enqueue_many_copy(batch, queue=_common.QUEUE)
    seconds = time.perf_counter() - started
    stored = (await stats(client))["available"]
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


async def w2(client: awa.AsyncClient, jobs: int) -> dict[str, Any]:
    started = time.perf_counter()
    for n in range(jobs):
        await client.insert(BenchNoop(n=n), queue=_common.QUEUE)
    seconds = time.perf_counter() - started
    stored = (await stats(client))["available"]
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


def register(client: awa.AsyncClient) -> None:
    @client.task(BenchNoop, queue=_common.QUEUE)
    async def noop(job: Any) -> None:
        counter.hit()

    @client.task(BenchStamp, queue=_common.QUEUE)
    async def stamp(job: Any) -> None:
        state["starts"][int(job.args.n)] = time.time()
        counter.hit()


async def settled(client: awa.AsyncClient) -> bool:
    now = await stats(client)
    return now["available"] + now["running"] + now["retryable"] + now["scheduled"] == 0


async def w3(client: awa.AsyncClient, jobs: int, limit: int) -> dict[str, Any]:
    for low in range(0, jobs, 10_000):
        high = min(low + 10_000, jobs)
        await client.enqueue_many_copy(
            [BenchNoop(n=n) for n in range(low, high)], queue=_common.QUEUE
        )
    register(client)
    counter.arm(jobs)
    started = time.perf_counter()
    await client.start([(_common.QUEUE, limit)])
    ok = await counter.wait(60 + jobs / 20)
    deadline = time.monotonic() + 30
    while ok and not await settled(client) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - started
    await client.shutdown()
    final = await stats(client)
    clean = final["available"] + final["running"] + final["retryable"] + final["failed"] == 0
    return {
        "metrics": _common.rate(jobs, seconds),
        "completed": counter.done if clean else 0,
        "expected": jobs,
        "note": None if clean else f"queue_stats after the run: {final}",
    }


async def w4(cfg: dict[str, Any], client: awa.AsyncClient) -> dict[str, Any]:
    register(client)
    await client.start([(_common.QUEUE, 20)])
    await asyncio.sleep(1.0)
    proc = _common.spawn_inserter(cfg)
    commits = await asyncio.to_thread(_common.inserter_commits, proc)
    await _common.wait_until_async(lambda: all(n in state["starts"] for n in commits), 10)
    await client.shutdown()
    return _common.latency_result(commits, state["starts"])


async def w4_insert(client: awa.AsyncClient, jobs: int) -> None:
    await client.insert(BenchStamp(n=-1), queue=_common.QUEUE)  # warm up before the clock

    async def insert_one(n: int) -> None:
        await client.insert(BenchStamp(n=n), queue=_common.QUEUE)

    await _common.paced_inserts_async(insert_one, jobs, _common.W4_INTERVAL)


async def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(versions=_common.versions("awa-pg"))
        return
    client = awa.AsyncClient(cfg["url"], max_connections=10)
    try:
        if cfg.get("role") == "insert":
            await w4_insert(client, int(cfg["jobs"]))
            return
        await client.migrate()
        # A fresh database's queue storage is prepared but not yet the active
        # backend until a worker fleet flips it; select it now, as its docs do
        # for queue-storage-only setups, so enqueue_many_copy can write to it.
        await client.install_queue_storage()
        workload, jobs = cfg["workload"], int(cfg["jobs"])
        if workload == "W1":
            result = await w1(client, jobs)
        elif workload == "W2":
            result = await w2(client, jobs)
        elif workload == "W3":
            result = await w3(client, jobs, cfg.get("limit", 20))
        elif workload == "W4":
            result = await w4(cfg, client)
        else:
            raise SystemExit(f"awa-pg has no {workload}")
        _common.emit(**result)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
