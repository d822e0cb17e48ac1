"""``oban cron``: each entry's next run times, in the instance's timezone."""

from __future__ import annotations

import orjson

from tests.cli.conftest import CliDatabase
from tests.cli.support import ok


def test_cron_lists_each_entry_with_its_next_runs_across_dst(lite: CliDatabase) -> None:
    env = {"OBAN_TEST_CLI_DB": lite.url}
    out = ok("cron", "--json", "--app", "tests.cli.cron_app:oban", cwd=lite.cwd, env=env)
    rows = {row["expression"]: row for row in map(orjson.loads, out.splitlines())}
    assert rows["*/15 * * * *"]["next"] == [
        "2026-03-29T01:15:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T01:45:00+01:00",
    ]
    # 02:30 does not exist that night: it runs at 03:00 CEST, the next valid instant.
    assert rows["30 2 * * *"]["next"] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert rows["30 2 * * *"]["queue"] == "nightly"
    assert rows["30 2 * * *"]["worker"] == "tests.cli.workers.Record"

    table = ok("cron", "-n", "1", "--app", "tests.cli.cron_app:oban", cwd=lite.cwd, env=env)
    assert "next runs (Europe/Paris)" in table
    assert "2026-03-29 03:00 CEST" in table


def test_cron_says_where_entries_come_from_when_there_are_none(lite: CliDatabase) -> None:
    env = {"OBAN_TEST_CLI_DB": lite.url}
    out = ok("cron", "--app", "tests.cli.cron_app:empty", cwd=lite.cwd, env=env)
    assert "no cron entries" in out
