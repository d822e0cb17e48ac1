"""An application with a cron table, for ``oban cron --app tests.cli.cron_app``.

Its clock stands still just before the 2026 spring-forward night in Paris, so
the next run times the command prints are known exactly.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import oban as oban_lib
from tests.cli.workers import Record

NOW = datetime(2026, 3, 29, 0, 10, tzinfo=timezone.utc)  # 01:10 in Paris (CET)

oban = oban_lib.Oban(
    os.environ["OBAN_TEST_CLI_DB"],
    queues={"default": 1},
    cron=[
        ("*/15 * * * *", Record, {"args": {"every": "quarter"}}),
        ("30 2 * * *", Record, {"args": {"at": "02:30"}, "queue": "nightly"}),
    ],
    timezone="Europe/Paris",
    clock=lambda: NOW,
)

empty = oban_lib.Oban(os.environ["OBAN_TEST_CLI_DB"])
