"""The cost of one attempt in the executor alone, to see what observability adds.

End-to-end throughput (``throughput.py``) is bound by database round trips
and moves by tens of percent on a shared machine, far more than the
fraction of a microsecond telemetry's checks cost. This times
``oban.attempt.execute`` of a no-op ``async def`` job on the event loop, no
database: the best of ``--batches`` batches of ``--jobs`` attempts (the
minimum is what the code costs; the rest is the machine's other work).

    python benchmarks/attempt_overhead.py            # as installed: OTel on if importable
    python benchmarks/attempt_overhead.py --otel-off # Oban(telemetry_otel=False)
    python benchmarks/attempt_overhead.py --handler  # one telemetry handler attached
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

import anyio

from oban import Job, Worker, telemetry, worker
from oban.attempt import execute
from oban.observability import otel

NOW = datetime.now(timezone.utc)


@worker(queue="bench")
class Noop(Worker):
    """Does nothing, on the event loop."""

    async def process(self, job: Job) -> None:
        return None


def _job(n: int) -> Job:
    return Job.from_row(
        {
            "id": n, "worker": Noop.__module__ + ".Noop", "queue": "bench", "args": {},
            "meta": {}, "state": "executing", "attempt": 1, "max_attempts": 20,
            "scheduled_at": NOW, "attempted_at": NOW, "inserted_at": NOW,
        }
    )  # fmt: skip


async def best_attempt(jobs: int, batches: int) -> float:
    best = float("inf")
    for _ in range(batches):
        batch = [_job(n) for n in range(jobs)]
        started = time.perf_counter()
        for job in batch:
            await execute(job, limiter=None, clock=lambda: NOW)
        best = min(best, (time.perf_counter() - started) / jobs)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=200, help="attempts per batch (200)")
    parser.add_argument("--batches", type=int, default=200, help="batches; the best counts (200)")
    parser.add_argument("--otel-off", action="store_true", help="turn OpenTelemetry off")
    parser.add_argument("--handler", action="store_true", help="attach a no-op handler")
    args = parser.parse_args(argv)
    if args.otel_off:
        otel.set_enabled(False)
    if args.handler:
        telemetry.attach(lambda event, data: None)
    seconds = anyio.run(best_attempt, args.jobs, args.batches)
    print(
        f"{seconds * 1e6:.2f} us per attempt (otel importable: {otel.AVAILABLE}, "
        f"on: {otel.enabled}, handlers: {len(telemetry.handlers())})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
