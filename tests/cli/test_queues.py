"""``oban queues``, ``oban pause|resume|scale`` via the script, against running nodes."""

from __future__ import annotations

import orjson

from oban import Job
from tests.cli.conftest import CliDatabase
from tests.cli.support import ok, run
from tests.conftest import wait_for

FAST = {"poll_interval": 0.05, "stage_interval": 0.05, "rescue_after": 0.6}


def test_queues_lists_every_node_and_warns_of_queues_no_node_runs(migrated: CliDatabase) -> None:
    a = migrated.make_oban(node="node-a", queues={"default": 2, "mailers": 1}, **FAST)
    b = migrated.make_oban(node="node-b", queues={"default": 3}, **FAST)
    a.enqueue(Job("app.Stranded", queue="nobody-runs-this"))
    with a, b:
        wait_for(lambda: len(a.check_all_queues()) == 3, message="three heartbeats")
        listed = ok("queues", "--json", *migrated.flags, cwd=migrated.cwd)
        rows = [orjson.loads(line) for line in listed.splitlines()]
        assert sorted((row["queue"], row["node"], row["limit"]) for row in rows) == [
            ("default", "node-a", 2),
            ("default", "node-b", 3),
            ("mailers", "node-a", 1),
        ]
        shown = run("queues", *migrated.flags, cwd=migrated.cwd)
        assert shown.returncode == 0, shown.stderr
        assert "node-b" in shown.stdout
        assert "queue 'nobody-runs-this' has 1 available job(s) but no running node" in " ".join(
            shown.stderr.split()
        )


def test_pause_resume_and_scale_reach_the_running_nodes(migrated: CliDatabase) -> None:
    node = migrated.make_oban(node="node-a", queues={"default": 2}, **FAST)
    with node:
        said = ok("pause", "default", *migrated.flags, cwd=migrated.cwd)
        assert "queue 'default' paused on every node" in said
        wait_for(lambda: [i.paused for i in node.check_queue("default", local_only=True)] == [True])
        ok("scale", "default", "5", *migrated.flags, cwd=migrated.cwd)
        wait_for(lambda: [i.limit for i in node.check_queue("default", local_only=True)] == [5])
        ok("resume", "default", *migrated.flags, cwd=migrated.cwd)
        wait_for(
            lambda: [i.paused for i in node.check_queue("default", local_only=True)] == [False]
        )


def test_scale_refuses_a_limit_below_one(migrated: CliDatabase) -> None:
    done = run("scale", "default", "0", *migrated.flags, cwd=migrated.cwd)
    assert done.returncode != 0
    assert "0" in done.stderr
