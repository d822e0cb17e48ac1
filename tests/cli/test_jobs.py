"""``oban jobs``, ``oban job`` and ``oban cancel|retry|delete`` through the installed script."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from oban import Job, JobState
from tests.cli.conftest import CliDatabase
from tests.cli.support import fails, ok
from tests.conftest import wait_for

RECORD = "tests.cli.workers.Record"
FAIL = "tests.cli.workers.Fail"


def _enqueue(db: CliDatabase, count: int, **options: Any) -> list[Job]:
    made = db.make_oban()
    return made.enqueue_many(
        [Job(RECORD, args={"log": "unused", "n": n}, **options) for n in range(count)]
    )


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_jobs_lists_newest_first_in_a_table(migrated: CliDatabase) -> None:
    saved = _enqueue(migrated, 3, queue="mailers", tags=["email"])
    out = ok("jobs", *migrated.flags, cwd=migrated.cwd)
    header, *rows = [line for line in out.splitlines() if line.strip()]
    for column in ("id", "state", "queue", "worker", "attempt", "scheduled_at", "args"):
        assert column in header
    assert [row.split()[0] for row in rows] == [str(job.id) for job in reversed(saved)]
    assert "available" in rows[0]
    assert "mailers" in rows[0]
    assert RECORD in rows[0]
    assert "0/20" in rows[0]
    assert '"n":2' in rows[0]


def test_jobs_json_filters_and_limit(migrated: CliDatabase) -> None:
    _enqueue(migrated, 2, queue="a")
    in_b = _enqueue(migrated, 3, queue="b")
    lines = _json_lines(ok("jobs", "--json", "--queue", "b", *migrated.flags, cwd=migrated.cwd))
    assert [line["id"] for line in lines] == [job.id for job in reversed(in_b)]
    assert lines[0]["args"] == {"log": "unused", "n": 2}
    assert lines[0]["state"] == "available"
    assert isinstance(lines[0]["inserted_at"], str)
    limited = ok("jobs", "--json", "--limit", "2", *migrated.flags, cwd=migrated.cwd)
    assert len(_json_lines(limited)) == 2
    none = ok("jobs", "--state", "completed", *migrated.flags, cwd=migrated.cwd)
    assert none.strip() == "no jobs"


def test_jobs_pages_past_the_librarys_page_size(lite: CliDatabase) -> None:
    _enqueue(lite, 1005)
    lines = _json_lines(ok("jobs", "--json", "--limit", "1003", *lite.flags, cwd=lite.cwd))
    ids = [line["id"] for line in lines]
    assert len(ids) == 1003
    assert len(set(ids)) == 1003


def test_job_shows_everything_with_full_tracebacks(migrated: CliDatabase) -> None:
    runner = migrated.make_oban(queues={"default": 1}, poll_interval=0.05)
    with runner:
        failed = runner.enqueue(
            Job(FAIL, args={"n": 7}, tags=["Nightly"], meta={"who": "me"}, max_attempts=1)
        )
        assert failed.id is not None
        wait_for(lambda: getattr(runner.get_job(failed.id or 0), "state", None) == "discarded")
    out = ok("job", str(failed.id), *migrated.flags, cwd=migrated.cwd)
    assert "discarded" in out
    assert "tests.cli.workers.Fail" in out
    assert "nightly" in out
    assert '"who": "me"' in out
    assert '"n": 7' in out
    assert "error 1: attempt 1 at" in out
    assert "Traceback (most recent call last)" in out
    assert "RuntimeError: boom 7" in out
    assert "attempted_by" in out
    record = json.loads(ok("job", str(failed.id), "--json", *migrated.flags, cwd=migrated.cwd))
    assert record["state"] == "discarded"
    assert "RuntimeError: boom 7" in record["errors"][0]["error"]


@pytest.mark.parametrize("stored", ["[1, 2]", "not json"], ids=["array", "not-json"])
def test_jobs_lists_the_others_around_a_row_that_cannot_be_read(
    migrated: CliDatabase, stored: str
) -> None:
    first, bad, last = _enqueue(migrated, 3)
    table = f'"{migrated.prefix}".oban_jobs' if migrated.prefix else "oban_jobs"
    bind = sa.create_engine(migrated.url)
    try:
        # What a hand-written UPDATE may leave behind; PostgreSQL refuses what is not JSON.
        with bind.begin() as conn:
            update = sa.text(f"UPDATE {table} SET args = :args WHERE id = :id")
            conn.execute(update, {"args": stored, "id": bad.id})
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0]
        pytest.skip(f"this database cannot hold {stored!r} in args: {reason}")
    finally:
        bind.dispose()

    out = ok("jobs", *migrated.flags, cwd=migrated.cwd)
    _header, *rows = [line for line in out.splitlines() if line.strip()]
    assert [row.split()[0] for row in rows] == [str(job.id) for job in (last, bad, first)]
    lines = _json_lines(ok("jobs", "--json", *migrated.flags, cwd=migrated.cwd))
    assert [line["args"] for line in lines] == [
        {"log": "unused", "n": 2},
        {},
        {"log": "unused", "n": 0},
    ]
    assert str(bad.id) in ok("job", str(bad.id), *migrated.flags, cwd=migrated.cwd)


def test_markup_in_args_is_shown_not_interpreted(lite: CliDatabase) -> None:
    made = lite.make_oban()
    saved = made.enqueue(Job(RECORD, args={"text": "[bold]x[/bold]"}))
    assert "[bold]x[/bold]" in ok("job", str(saved.id), *lite.flags, cwd=lite.cwd)
    assert "[bold]x[/bold]" in ok("jobs", *lite.flags, cwd=lite.cwd)


def _state(db: CliDatabase, job: Job) -> JobState | None:
    found = db.make_oban().get_job(job.id or 0)
    return None if found is None else found.state


def test_cancel_retry_delete_by_id(migrated: CliDatabase) -> None:
    first, second = _enqueue(migrated, 2)
    out = ok("cancel", str(first.id), str(second.id), *migrated.flags, cwd=migrated.cwd)
    assert out.strip() == "cancelled 2 jobs"
    assert _state(migrated, first) == "cancelled"
    again = ok("cancel", str(first.id), *migrated.flags, cwd=migrated.cwd)
    assert again.strip().startswith("cancelled 0 jobs; 1 left alone")
    assert ok("retry", str(first.id), *migrated.flags, cwd=migrated.cwd).strip() == "retried 1 job"
    assert _state(migrated, first) == "available"
    assert ok("delete", str(first.id), *migrated.flags, cwd=migrated.cwd).strip() == "deleted 1 job"
    assert _state(migrated, first) is None
    assert _state(migrated, second) == "cancelled"


def test_bulk_by_filter_and_all(migrated: CliDatabase) -> None:
    in_a = _enqueue(migrated, 3, queue="a")
    in_b = _enqueue(migrated, 2, queue="b")
    out = ok("cancel", "--queue", "a", *migrated.flags, cwd=migrated.cwd)
    assert out.strip() == "cancelled 3 jobs"
    assert {_state(migrated, job) for job in in_a} == {"cancelled"}
    assert {_state(migrated, job) for job in in_b} == {"available"}
    out = ok("retry", "--state", "cancelled", *migrated.flags, cwd=migrated.cwd)
    assert out.strip() == "retried 3 jobs"
    out = ok("delete", "--all", *migrated.flags, cwd=migrated.cwd)
    assert out.strip() == "deleted 5 jobs"
    assert migrated.make_oban().list_jobs() == []


def test_bulk_without_a_filter_is_refused(migrated: CliDatabase) -> None:
    saved = _enqueue(migrated, 2)
    for action in ("cancel", "retry", "delete"):
        line = fails(action, *migrated.flags, cwd=migrated.cwd)
        assert "--all" in line
    assert {_state(migrated, job) for job in saved} == {"available"}


def test_unknown_ids_change_nothing(lite: CliDatabase) -> None:
    (saved,) = _enqueue(lite, 1)
    line = fails("cancel", str(saved.id), "999999", *lite.flags, cwd=lite.cwd)
    assert "no job with id 999999" in line
    assert _state(lite, saved) == "available"
    assert "no job with id 999999" in fails("job", "999999", *lite.flags, cwd=lite.cwd)


def test_worker_filter_takes_the_stored_name(lite: CliDatabase) -> None:
    made = lite.make_oban()
    made.enqueue(Job("app.Other"))
    _enqueue(lite, 2)
    lines = _json_lines(ok("jobs", "--json", "--worker", RECORD, *lite.flags, cwd=lite.cwd))
    assert {line["worker"] for line in lines} == {RECORD}
    assert len(lines) == 2
    assert made.delete_many(worker="app.Other") == 1
