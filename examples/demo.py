"""A tour of Oban on a SQLite file: no server, about twenty seconds.

Enqueues a few dozen jobs into ``demo.db`` (beside this file, or the path given
as the first argument) and runs two queues in a background thread: some jobs
succeed, some fail and are retried, some snooze, some are scheduled for later,
one is cancelled by its worker. Every attempt is printed as it happens, then a
table of where each job ended.

Run it with:  python -m examples.demo   (from the repository root)
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from rich.table import Table

from examples.demo_workers import Charge, Report, SendWelcome, console, remind, say
from oban import Job, JobState, Oban


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("demo.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    oban = Oban(
        f"sqlite:///{path}",
        queues={"default": 5, "mailers": 3},
        poll_interval=0.2,
        stage_interval=0.2,
    )
    oban.migrate()
    console.rule(f"[bold]Oban demo[/] — jobs in {path}")

    jobs: list[Job] = []
    with oban:
        jobs += oban.enqueue_many(
            SendWelcome.new({"user_id": n, "flaky": n % 5 == 0, "broken": n == 7})
            for n in range(1, 21)
        )
        jobs += [
            Report.enqueue({"name": name, "wait": wait})
            for name, wait in [("sales", 2), ("stock", 1)]
        ]
        jobs += [Charge.enqueue({"order": n, "void": n == 3}) for n in range(1, 7)]
        jobs += [
            remind.options(schedule_in=seconds).enqueue(n, "renew")
            for n, seconds in [(1, 3), (2, 5)]
        ]
        say("demo", f"enqueued {len(jobs)} jobs; 2 are scheduled 3s and 5s from now")

        final = {JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [oban.get_job(j.id or 0) for j in jobs]
            if all(s is not None and s.state in final for s in states):
                break
            time.sleep(0.2)

    table = Table(title="Where every job ended")
    for column in ("id", "worker", "queue", "state", "attempts", "errors / result"):
        table.add_column(column)
    counts: Counter[str] = Counter()
    for saved in (oban.get_job(j.id or 0) for j in jobs):
        assert saved is not None
        counts[saved.state.value] += 1
        last = saved.errors[-1]["error"].splitlines()[-1] if saved.errors else ""
        result = saved.meta.get("return", "") if saved.meta.get("recorded") else ""
        table.add_row(
            str(saved.id),
            saved.worker.rsplit(".", 1)[-1],
            saved.queue,
            saved.state.value,
            f"{saved.attempt}/{saved.max_attempts}",
            last or str(result),
        )
    console.print(table)
    console.print("  ".join(f"{state}: {count}" for state, count in sorted(counts.items())))
    oban.close()


if __name__ == "__main__":
    main()
