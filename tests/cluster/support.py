"""Node processes for the cluster tests, and reading what the nodes share.

:class:`Cluster` spawns nodes (``tests/cluster/node_process.py``, one OS
process each, started as ``python -m`` like the other multi-process tests)
on the test's database and kills whatever is left when the test ends. Nodes
report through files (their ready file, their ``is_leader`` samples, the
workers' logs) and through the database; the test never shares memory with
them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from oban.schema import oban_peers, oban_producers
from tests.conftest import SqlDatabase, wait_for

REPO = Path(__file__).resolve().parents[2]

FAST: dict[str, Any] = {
    "leader_lease": 2,
    "rescue_after": 2,
    "poll_interval": 0.1,
    "stage_interval": 0.1,
    "cancel_check_interval": 0.2,
}
"""Short lease and intervals, so every test takes a few seconds, not minutes."""

HEARTBEAT = min(5.0, FAST["rescue_after"] / 3)
"""Seconds between a node's heartbeats with :data:`FAST` (the library's rule)."""


@dataclass
class Node:
    """One node process: its files, its pid, what it reported."""

    name: str
    process: subprocess.Popen[bytes]
    ready_path: Path
    stderr_path: Path
    samples_path: Path | None
    _ready: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """What the node wrote to stderr (for failure messages)."""
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def ready(self, timeout: float = 30) -> dict[str, Any]:
        """What the node reported once it ran (waits for it; fails if it exited)."""
        if self._ready is None:

            def started() -> bool:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"node {self.name} exited with {self.process.returncode}:\n{self.output()}"
                    )
                return self.ready_path.exists()

            wait_for(started, timeout=timeout, message=f"node {self.name} runs")
            self._ready = json.loads(self.ready_path.read_text())
        return self._ready

    @property
    def leader_node(self) -> str:
        """What this node writes in ``oban_peers.node`` while it leads."""
        return str(self.ready()["leader_node"])

    def samples(self) -> list[tuple[float, bool]]:
        """Every ``(time.time(), is_leader)`` the node reported, in order."""
        assert self.samples_path is not None, f"node {self.name} reports no samples"
        if not self.samples_path.exists():
            return []
        lines = self.samples_path.read_text().splitlines()
        # The last line may be half written while the node runs.
        return [
            (float(at), flag == "1")
            for at, _, flag in (line.partition(" ") for line in lines)
            if flag in ("0", "1")
        ]

    def says_it_leads(self) -> bool:
        """The node's latest report of ``is_leader``."""
        samples = self.samples()
        return bool(samples) and samples[-1][1]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node dies wherever it is, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM: a clean stop; the node must exit 0."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"node {self.name} did not stop on SIGTERM:\n{self.output()}")
        assert code == 0, f"node {self.name} exited with {code}:\n{self.output()}"


@dataclass
class Cluster:
    """Spawns node processes on one test database; kills the rest at the end."""

    database: SqlDatabase
    directory: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.database.bind.url.render_as_string(hide_password=False)

    def path(self, name: str) -> Path:
        """A file in the test's directory (logs, release files)."""
        return self.directory / name

    def spawn(
        self,
        name: str,
        *,
        queues: dict[str, int] | None = None,
        samples: bool = False,
        cron: list[tuple[str, dict[str, Any]]] | None = None,
        clock: dict[str, Any] | None = None,
        lifetime: float = 150,
        application_name: str | None = None,
        url: str | None = None,
        connect_args: dict[str, Any] | None = None,
        **options: Any,
    ) -> Node:
        """Start node ``name`` with :data:`FAST` options overridden by ``options``.

        ``application_name`` names the node's pooled connections in
        ``pg_stat_activity`` (through its URL), so a test can terminate them
        without touching its own; the notifier's is ``oban_notifier:<name>``.
        ``url``: another way to the test's database (a proxy in front of it);
        ``connect_args``: the driver's keyword arguments (``prepare_threshold``).
        """
        ready = self.path(f"{name}.ready")
        stderr = self.path(f"{name}.stderr")
        sample_path = self.path(f"{name}.samples") if samples else None
        node_url = sa.make_url(url or self.url)
        if application_name is not None:
            node_url = node_url.update_query_dict({"application_name": application_name})
        spec = {
            "url": node_url.render_as_string(hide_password=False),
            "connect_args": connect_args,
            "prefix": self.database.prefix,
            "node": name,
            "queues": queues or {},
            "options": {**FAST, **options},
            "ready": str(ready),
            "samples": None if sample_path is None else str(sample_path),
            "cron": cron or [],
            "clock": clock,
            "lifetime": lifetime,
        }
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.cluster.node_process", json.dumps(spec)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        node = Node(name, process, ready, stderr, sample_path)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.process.kill()
            node.process.wait(timeout=30)


@contextmanager
def connect(database: SqlDatabase) -> Iterator[Connection]:
    """A connection of the test's own on which ``oban.schema`` tables name the
    test's tables (the prefix schema on PostgreSQL), timestamps read as aware UTC."""
    options = {"schema_translate_map": {None: database.prefix}} if database.prefix else {}
    with database.bind.connect().execution_options(**options) as conn:
        yield conn


@dataclass(frozen=True)
class Lease:
    node: str
    """``"<node>#<instance id>"`` of the holder."""
    started_at: datetime
    expires_at: datetime


def lease(database: SqlDatabase, name: str = "oban") -> Lease | None:
    """The leader lease row of ``name`` in ``oban_peers``, if there is one."""
    peers = oban_peers.c
    with connect(database) as conn:
        row = conn.execute(
            sa.select(peers.node, peers.started_at, peers.expires_at).where(peers.name == name)
        ).first()
    return None if row is None else Lease(row.node, row.started_at, row.expires_at)


@dataclass(frozen=True)
class Beat:
    node: str
    queue: str
    meta: dict[str, Any]
    updated_at: datetime


def heartbeats(database: SqlDatabase, queue: str | None = None) -> list[Beat]:
    """Every heartbeat row in ``oban_producers`` (of ``queue``), oldest node name first."""
    p = oban_producers.c
    statement = sa.select(p.node, p.queue, p.meta, p.updated_at).order_by(p.node)
    if queue is not None:
        statement = statement.where(p.queue == queue)
    with connect(database) as conn:
        rows = conn.execute(statement)
        return [Beat(row.node, row.queue, row.meta, row.updated_at) for row in rows]
