"""``oban metrics`` and the Prometheus collector against two worker processes.

Two ``oban start`` processes run queue ``obs`` (limit 2 each) on one
database with jobs that block on a gate file, so the table holds a known,
steady mix: 4 executing, the rest available, plus a queue nobody runs. The
Prometheus text, served by ``oban metrics`` in a third process and by the
collector in this one, must parse and say what the database says; after the
gate opens and every job completes, again.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from oban import Job
from oban.observability.prometheus import ObanCollector
from tests.cli.conftest import CliDatabase
from tests.cli.support import environment, oban_script, serving
from tests.conftest import wait_for
from tests.observability import workers

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def table_counts(db: CliDatabase) -> dict[tuple[str, str], int]:
    """(queue, state) -> jobs, straight from the table."""
    bind = sa.create_engine(db.url)
    table = "oban_jobs" if db.prefix is None else f'"{db.prefix}".oban_jobs'
    try:
        with bind.connect() as conn:
            query = sa.text(f"SELECT queue, state, count(*) FROM {table} GROUP BY queue, state")
            return {(queue, str(state)): int(n) for queue, state, n in conn.execute(query)}
    finally:
        bind.dispose()


def check(samples: Samples, counts: dict[tuple[str, str], int]) -> None:
    jobs = {
        (dict(labels)["queue"], dict(labels)["state"]): value
        for (name, labels), value in samples.items()
        if name == "oban_jobs"
    }
    assert {key: value for key, value in jobs.items() if value} == counts
    for queue in {queue for queue, _ in counts}:
        depth = samples[("oban_queue_depth", (("queue", queue),))]
        assert depth == counts.get((queue, "available"), 0)
        lag = samples[("oban_queue_lag_seconds", (("queue", queue),))]
        assert lag >= 0
    assert samples[("oban_database_up", ())] == 1


@contextmanager
def metrics_server(db: CliDatabase) -> Iterator[str]:
    """``oban metrics --port 0`` in the background; the URL it serves."""
    flags = ("--port", "0", "--host", "127.0.0.1", *db.flags)
    with serving(*flags, command="metrics", cwd=db.cwd) as server:
        line = server.wait_line("serving Prometheus metrics")
        yield line.rsplit(" ", 1)[-1]
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "oban metrics stopped" in server.seen


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # a local test server
        assert response.status == 200
        return str(response.read().decode())


def test_metrics_match_the_database_with_two_worker_processes(
    migrated: CliDatabase, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    seeder = migrated.make_oban()
    seeder.enqueue_many([workers.Gate.new({"gate": str(gate), "n": n}) for n in range(7)])
    seeder.enqueue_many([Job("app.Nobody", queue="nobody-runs-this") for _ in range(3)])
    collector = ObanCollector(seeder)
    registry = CollectorRegistry()
    registry.register(collector)
    args = ["--queues", "obs:2", "--import", "tests.observability.workers", *migrated.flags]
    with (
        serving(*args, "--node", "one", cwd=migrated.cwd) as one,
        serving(*args, "--node", "two", cwd=migrated.cwd) as two,
        metrics_server(migrated) as url,
    ):
        one.wait_line("oban started")
        two.wait_line("oban started")
        wait_for(
            lambda: table_counts(migrated).get(("obs", "executing")) == 4,
            message="both processes run two gated jobs each",
        )
        steady = {
            ("obs", "executing"): 4,
            ("obs", "available"): 3,
            ("nobody-runs-this", "available"): 3,
        }
        assert table_counts(migrated) == steady
        check(parse(scrape(url)), steady)
        check(parse(generate_latest(registry).decode()), steady)

        gate.touch()
        done = {("obs", "completed"): 7, ("nobody-runs-this", "available"): 3}
        wait_for(lambda: table_counts(migrated) == done, message="every gated job completed")
        check(parse(scrape(url)), done)
        check(parse(generate_latest(registry).decode()), done)


def test_metrics_needs_a_migrated_database(blank: CliDatabase) -> None:
    done = subprocess.run(
        [str(oban_script()), "metrics", "--port", "0", *blank.flags],
        cwd=blank.cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "run `oban migrate` first" in done.stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_metrics_is_listed(flag: str, lite: CliDatabase) -> None:
    done = subprocess.run(
        [str(oban_script()), "metrics", flag], cwd=lite.cwd, env=environment(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "--port" in done.stdout
