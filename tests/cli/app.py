"""An application module for ``--app tests.cli.app:oban``: its Oban reads OBAN_TEST_CLI_DB."""

from __future__ import annotations

import os

import oban as oban_lib
from tests.cli import workers as workers  # registers the workers, as an app would

oban = oban_lib.Oban(
    os.environ["OBAN_TEST_CLI_DB"],
    queues={"default": 5},
    prefix=os.environ.get("OBAN_TEST_CLI_PREFIX") or None,
    node="app-node",
    poll_interval=0.1,
)

not_an_oban = "just a string"
