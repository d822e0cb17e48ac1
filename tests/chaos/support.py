"""What every chaos scenario asserts and reports, from the workers' own logs.

The jobs table is what is under test, so the counts never come from it: each
job appends ``start <id> <attempt> <pid>`` to a log file outside the database
as it begins (``tests.cluster.workers.Note``). :func:`tally` reads the log
against the ids that were inserted and :func:`report` prints one line per
scenario (and appends it, as JSON, to ``$OBAN_CHAOS_REPORT`` when set), which
is where the table in ``docs/reliability.md`` comes from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa

from tests.cluster.workers import starts
from tests.conftest import SqlDatabase


@dataclass
class Tally:
    """How the inserted jobs fared, by the log: lost ones never started."""

    scenario: str
    jobs: int
    lost: list[int]
    twice: dict[int, int]
    """Job id → number of starts, for every job that started more than once."""
    recovery_seconds: float | None = None
    """Seconds from the fault's end to jobs flowing again (the longest, if several)."""
    notes: dict[str, object] = field(default_factory=dict)


def tally(scenario: str, log: Path, job_ids: Iterable[int]) -> Tally:
    counts = starts(log)
    expected = set(job_ids)
    lost = sorted(expected - set(counts))
    twice = {job_id: n for job_id, n in sorted(counts.items()) if n > 1}
    unknown = set(counts) - expected
    assert not unknown, f"the log names jobs that were never inserted: {sorted(unknown)[:10]}"
    return Tally(scenario, len(expected), lost, twice)


def report(result: Tally) -> None:
    """Print the scenario's figures (``pytest -s`` shows them) and append them to
    ``$OBAN_CHAOS_REPORT`` (JSON lines) when that is set."""
    line = {
        "scenario": result.scenario,
        "jobs": result.jobs,
        "lost": len(result.lost),
        "started_twice": len(result.twice),
        "recovery_seconds": result.recovery_seconds,
        **result.notes,
    }
    print(f"CHAOS {json.dumps(line)}")
    target = os.environ.get("OBAN_CHAOS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({**line, "twice_ids": asdict(result)["twice"]}) + "\n")


def completed(database: SqlDatabase) -> int:
    """Jobs in state completed (whether they ran is the log's to say, not this)."""
    with database.bind.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")
            ).scalar_one()
        )
