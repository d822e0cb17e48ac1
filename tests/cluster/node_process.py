"""One Oban node in its own OS process, for the tests in ``tests/cluster``.

``python -m tests.cluster.node_process '<spec as JSON>'`` (built by
``tests.cluster.support.Cluster.spawn``). The spec:

- ``url``, ``prefix`` (PostgreSQL schema or null), ``node``, ``queues``, and
  ``options``: further ``Oban(...)`` keyword arguments (leader_lease, ...);
- ``ready``: a file written (atomically) once the node runs, holding its pid
  and what it writes in ``oban_peers.node`` (``"<node>#<instance id>"``);
- ``samples``: a file this node appends ``"<time.time()> <0|1>"`` to every
  20 ms, its own ``is_leader``; null for none;
- ``cron``: ``[[expression, options], ...]`` entries of
  :class:`tests.cluster.workers.CronTick`;
- ``connect_args``: null, or the driver's keyword arguments for the node's
  engine (``{"prepare_threshold": null}`` behind PgBouncer);
- ``clock``: null for the wall clock, ``{"offset": seconds}`` for the wall
  clock shifted by that much (a node whose clock is wrong), or
  ``{"base", "end", "speed", "go"}``:
  a simulated clock that stands at ``base`` until the file ``go`` exists, then
  runs ``speed`` times as fast as ``time.time()`` from the instant written in
  it, and stops at ``end``. Every node computes the same time from the same
  file, with no other coordination;
- ``lifetime``: seconds after which the node stops by itself, so a test that
  died leaves no process behind.

SIGTERM stops Oban cleanly (grace 5 s) and exits 0; SIGKILL is the crash.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from oban import Oban
from oban.engines import create_bind
from tests.cluster.workers import CronTick


class SimulatedClock:
    """``base + (time.time() - t0) * speed``: ``base`` until ``go`` exists, ``end`` at most."""

    def __init__(self, base: datetime, end: datetime, speed: float, go: Path) -> None:
        self.base, self.end, self.speed, self.go = base, end, speed, go
        self.t0: float | None = None

    def __call__(self) -> datetime:
        if self.t0 is None:
            try:
                self.t0 = float(self.go.read_text())
            except (FileNotFoundError, ValueError):
                return self.base
        elapsed = max(0.0, time.time() - self.t0) * self.speed
        return min(self.end, self.base + timedelta(seconds=elapsed))


class OffsetClock:
    """The wall clock ``offset`` seconds off: a node whose clock is skewed."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[0])
    options: dict[str, Any] = dict(spec.get("options") or {})
    if spec.get("prefix"):
        options["prefix"] = spec["prefix"]
    clock_spec = spec.get("clock")
    if clock_spec and "offset" in clock_spec:
        options["clock"] = OffsetClock(float(clock_spec["offset"]))
    elif clock_spec:
        options["clock"] = SimulatedClock(
            datetime.fromisoformat(clock_spec["base"]),
            datetime.fromisoformat(clock_spec["end"]),
            float(clock_spec["speed"]),
            Path(clock_spec["go"]),
        )
    cron = [(expression, CronTick, entry) for expression, entry in spec.get("cron") or []]
    if cron:
        options["cron"] = cron
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stop.set())

    bind: Any = spec["url"]
    if spec.get("connect_args"):
        bind = create_bind(spec["url"], connect_args=spec["connect_args"])
    instance = Oban(bind, node=spec["node"], queues=spec.get("queues") or {}, **options)
    instance.start()
    try:
        ready = {
            "pid": os.getpid(),
            "node": spec["node"],
            "instance_id": instance.instance_id,
            "leader_node": f"{spec['node']}#{instance.instance_id}",
        }
        write_atomically(Path(spec["ready"]), json.dumps(ready))
        samples = spec.get("samples")
        fd = os.open(samples, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if samples else None
        deadline = time.monotonic() + float(spec.get("lifetime", 120))
        try:
            while not stop.wait(0.02):
                if fd is not None:
                    leading = int(instance.is_leader)
                    os.write(fd, f"{time.time():.6f} {leading}\n".encode())
                if time.monotonic() > deadline:
                    print(f"{spec['node']}: lifetime over, stopping", file=sys.stderr)
                    break
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        instance.stop(grace=5)
        instance.close()
    print(f"{spec['node']}: stopped at {datetime.now(timezone.utc).isoformat()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
