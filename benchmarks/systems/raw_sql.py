"""Adapter: the raw-SQL floor, ours' statements sent through psycopg with no library around them.

It measures what the database and the driver cost for the work ours does,
so ours ÷ floor says how much the library adds. The schema is ours (made by
``oban.migrate`` before the clock starts); after that only psycopg runs:

* W1: Basic's path for a big batch: ids from the sequence, the rows by
  ``COPY``, and its ``pg_notify``, one transaction;
* W2: Basic's path for one job, the ``INSERT ... SELECT ... FROM
  jsonb_array_elements(%s)`` and its ``pg_notify``, one transaction per job;
* W3: a loop of Basic's fetch (``UPDATE ... WHERE id IN (SELECT ... LIMIT 20
  FOR UPDATE SKIP LOCKED) RETURNING ...``, its own transaction) and one
  batched ack of those 20 (``executemany`` of the completing ``UPDATE``);
* W4: ``LISTEN`` on one connection, the fetch on another when a
  notification comes; the inserter commits one row and its notify.

Only PostgreSQL: the floor is for the comparison with PostgreSQL peers.
"""

from __future__ import annotations

import json
import select
import time
from datetime import datetime, timezone
from typing import Any

import _common
import psycopg

CHANNEL = "oban_bench_insert"

INSERT = """
INSERT INTO oban_jobs (state, queue, worker, attempt, max_attempts, priority, args, meta, tags,
                       errors, attempted_by, inserted_at, scheduled_at)
SELECT CAST(rows.doc ->> 'state' AS oban_job_state), rows.doc ->> 'queue', rows.doc ->> 'worker',
       CAST(rows.doc ->> 'attempt' AS INTEGER), CAST(rows.doc ->> 'max_attempts' AS INTEGER),
       CAST(rows.doc ->> 'priority' AS INTEGER), rows.doc['args'], rows.doc['meta'],
       array((SELECT jsonb_array_elements_text(rows.doc['tags']))), rows.doc['errors'],
       array((SELECT jsonb_array_elements_text(rows.doc['attempted_by']))),
       CAST(rows.doc ->> 'inserted_at' AS TIMESTAMP WITHOUT TIME ZONE),
       CAST(rows.doc ->> 'scheduled_at' AS TIMESTAMP WITHOUT TIME ZONE)
FROM jsonb_array_elements(CAST(%s AS JSONB)) WITH ORDINALITY AS rows(doc, ord)
ORDER BY rows.ord RETURNING oban_jobs.id
"""

NOTIFY = "SELECT pg_notify(%s::VARCHAR, payload) FROM unnest(%s::TEXT[]) AS payload"

FETCH = """
UPDATE oban_jobs SET state = 'executing', attempt = oban_jobs.attempt + 1,
       attempted_by = %s::TEXT[], attempted_at = %s::TIMESTAMP WITHOUT TIME ZONE
WHERE oban_jobs.id IN (
    SELECT oban_jobs.id FROM oban_jobs
    WHERE oban_jobs.state = 'available' AND oban_jobs.queue = %s::VARCHAR
    ORDER BY oban_jobs.priority, oban_jobs.scheduled_at, oban_jobs.id
    LIMIT %s::INTEGER FOR UPDATE SKIP LOCKED)
RETURNING oban_jobs.id, oban_jobs.state, oban_jobs.queue, oban_jobs.worker, oban_jobs.attempt,
          oban_jobs.max_attempts, oban_jobs.priority, oban_jobs.args, oban_jobs.meta,
          oban_jobs.tags, oban_jobs.errors, oban_jobs.attempted_by, oban_jobs.inserted_at,
          oban_jobs.scheduled_at, oban_jobs.attempted_at, oban_jobs.cancelled_at,
          oban_jobs.completed_at, oban_jobs.discarded_at
"""

ACK = """
UPDATE oban_jobs SET state = 'completed', completed_at = %s::TIMESTAMP WITHOUT TIME ZONE
WHERE oban_jobs.id = %s::BIGINT AND oban_jobs.state = 'executing'
  AND oban_jobs.attempt = %s::SMALLINT
"""


def rows_json(numbers: range) -> str:
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
    return json.dumps(
        [
            {
                "state": "available",
                "queue": _common.QUEUE,
                "worker": "bench.Noop",
                "attempt": 0,
                "max_attempts": 20,
                "priority": 0,
                "args": {"n": n},
                "meta": {},
                "tags": [],
                "errors": [],
                "attempted_by": [],
                "inserted_at": now,
                "scheduled_at": now,
            }
            for n in numbers
        ]
    )


COPY = (
    "COPY oban_jobs (id, state, queue, worker, attempt, max_attempts, priority, args, meta, "
    "tags, errors, attempted_by, inserted_at, scheduled_at) FROM STDIN"
)

NEXT_IDS = "SELECT nextval('oban_jobs_id_seq'::regclass) FROM generate_series(1, %s)"


def copy_insert(conn: psycopg.Connection[Any], numbers: range) -> None:
    """One transaction: ids from the sequence, the rows by COPY, the notify (as Basic
    sends a big batch), the COPY text written by the simplest code that makes it."""
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
    with conn.transaction(), conn.cursor() as cursor:
        ids = [row[0] for row in cursor.execute(NEXT_IDS, (len(numbers),)).fetchall()]
        tail = f"\t{{}}\t{{}}\t[]\t{{}}\t{now}\t{now}\n"
        head = f"\tavailable\t{_common.QUEUE}\tbench.Noop\t0\t20\t0\t"
        data = "".join(
            f'{job_id}{head}{{"n":{n}}}{tail}' for job_id, n in zip(ids, numbers, strict=True)
        )
        with cursor.copy(COPY) as copy:
            copy.write(data)
        cursor.execute(NOTIFY, (CHANNEL, [json.dumps({"queue": _common.QUEUE})]))


def insert(conn: psycopg.Connection[Any], numbers: range) -> None:
    """One transaction: the insert statement and its notify (as Basic sends them)."""
    with conn.transaction():
        conn.execute(INSERT, (rows_json(numbers),))
        conn.execute(NOTIFY, (CHANNEL, [json.dumps({"queue": _common.QUEUE})]))


def count(conn: psycopg.Connection[Any], state: str) -> int:
    row = conn.execute("SELECT count(*) FROM oban_jobs WHERE state = %s", (state,)).fetchone()
    return int(row[0]) if row else 0


def fetch_and_ack(conn: psycopg.Connection[Any], demand: int, node: list[str]) -> list[int]:
    """One fetch transaction, then one ack transaction for what it claimed; the job numbers."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with conn.transaction():
        claimed = conn.execute(FETCH, (node, now, _common.QUEUE, demand)).fetchall()
    if claimed:
        done = datetime.now(timezone.utc).replace(tzinfo=None)
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(ACK, [(done, row[0], row[4]) for row in claimed])
    return [int(row[7]["n"]) for row in claimed]


def w1(url: str, jobs: int) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        started = time.perf_counter()
        copy_insert(conn, range(jobs))
        seconds = time.perf_counter() - started
        stored = count(conn, "available")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


def w2(url: str, jobs: int) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        started = time.perf_counter()
        for n in range(jobs):
            insert(conn, range(n, n + 1))
        seconds = time.perf_counter() - started
        stored = count(conn, "available")
    return {"metrics": _common.rate(jobs, seconds), "completed": stored, "expected": jobs}


def w3(url: str, jobs: int, limit: int) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        for low in range(0, jobs, 10_000):
            insert(conn, range(low, min(low + 10_000, jobs)))
        node = ["bench", "raw"]
        started = time.perf_counter()
        while fetch_and_ack(conn, limit, node):
            pass
        seconds = time.perf_counter() - started
        completed = count(conn, "completed")
    return {"metrics": _common.rate(jobs, seconds), "completed": completed, "expected": jobs}


def w4_insert(url: str, jobs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        _common.paced_inserts(lambda n: insert(conn, range(n, n + 1)), jobs, _common.W4_INTERVAL)


def w4(cfg: dict[str, Any], url: str) -> dict[str, Any]:
    starts: dict[int, float] = {}
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        listener.execute(f"LISTEN {CHANNEL}")
        proc = _common.spawn_inserter(cfg)
        node = ["bench", "raw"]
        while proc.poll() is None or len(starts) < int(cfg["jobs"]):
            ready, _, _ = select.select([listener.fileno()], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            for _ in listener.notifies(timeout=0):
                pass
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            with conn.transaction():
                claimed = conn.execute(FETCH, (node, now, _common.QUEUE, 20)).fetchall()
            stamp = time.time()
            for row in claimed:
                starts[int(row[7]["n"])] = stamp
            if claimed:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(ACK, [(now, row[0], row[4]) for row in claimed])
        commits = _common.inserter_commits(proc)
    return _common.latency_result(commits, starts)


def main() -> None:
    cfg = _common.config()
    if cfg.get("workload") == "versions":
        _common.emit(versions=_common.versions("psycopg"))
        return
    url = cfg["url"]
    if cfg.get("role") == "insert":
        w4_insert(url, int(cfg["jobs"]))
        return
    import oban  # the schema only: the same tables and indexes ours uses

    oban.migrate("postgresql+psycopg://" + url[len("postgresql://") :])
    workload, jobs = cfg["workload"], int(cfg["jobs"])
    if workload == "W1":
        result = w1(url, jobs)
    elif workload == "W2":
        result = w2(url, jobs)
    elif workload == "W3":
        result = w3(url, jobs, cfg.get("limit", 20))
    elif workload == "W4":
        result = w4(cfg, url)
    else:
        raise SystemExit(f"raw_sql has no {workload}")
    _common.emit(**result)


if __name__ == "__main__":
    main()
