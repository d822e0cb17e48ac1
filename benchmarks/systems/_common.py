"""What every adapter shares: its command line, its one JSON result line, timing helpers.

Adapters run inside each system's own virtual environment, so this module uses
the standard library only. The driver (benchmarks/bench.py) runs an adapter as

    <venv python> benchmarks/systems/<adapter>.py '<json config>'

and reads the last stdout line that starts with ``{``: the result. Anything
else an adapter (or the library under test) prints goes to stderr, which the
driver keeps in a log file.

The config holds ``workload`` (W1, W2, W3, W4, or for ours W5-W7 too), ``url``
(a libpq URL, ``postgresql://user@host:port/db``, or ``sqlite:///path``),
``jobs`` and workload-specific keys (``variant``, ``limit``, ``interval``...).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

QUEUE = "bench"
"""Every system's jobs go to one queue of this name (where queues exist)."""

W4_INTERVAL = 0.020


def config() -> dict[str, Any]:
    """The JSON config given as the first argument."""
    loaded: dict[str, Any] = json.loads(sys.argv[1])
    return loaded


def emit(**result: Any) -> None:
    """Print the result line the driver reads, and flush it."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    sys.stderr.write(f"[{os.path.basename(sys.argv[0])}] {message}\n")
    sys.stderr.flush()


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_result(commits: dict[int, float], starts: dict[int, float]) -> dict[str, Any]:
    """W4's figures: insert-commit -> process-start, per job seen on both sides."""
    both = [starts[n] - commits[n] for n in commits if n in starts]
    millis = [1000 * seconds for seconds in both]
    return {
        "metrics": {
            "p50_ms": quantile(millis, 0.50) if millis else None,
            "p95_ms": quantile(millis, 0.95) if millis else None,
            "mean_ms": statistics.fmean(millis) if millis else None,
        },
        "completed": len(both),
        "expected": len(commits),
    }


def rss_mb() -> float:
    """This process's resident set size (VmRSS in /proc/self/status), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- W4: the inserting process ---------------------------------------------------------------


def spawn_inserter(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    """Start this same adapter as W4's inserting process (``role: insert``).

    The inserter is a separate process, as a web app enqueueing into a worker
    process would be: the worker's runtime stays idle between jobs, and the
    two sides share only the database and the host's clock.
    """
    child = dict(cfg, role="insert")
    return subprocess.Popen(
        [sys.executable, sys.argv[0], json.dumps(child)],
        stdout=subprocess.PIPE,
        text=True,
    )


def inserter_commits(proc: subprocess.Popen[str], timeout: float = 120.0) -> dict[int, float]:
    """Wait for the inserter and return its commit times, job number -> time.time()."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"inserter exited {proc.returncode}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    data = json.loads(lines[-1])
    return {int(n): float(t) for n, t in data["commits"].items()}


def paced_inserts(insert_one: Callable[[int], None], jobs: int, interval: float) -> None:
    """W4's inserter body: ``jobs`` single inserts ``interval`` apart, each timed
    right after its commit; prints the commit times as the result line."""
    commits: dict[int, float] = {}
    start = time.monotonic()
    for n in range(jobs):
        target = start + n * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        insert_one(n)
        commits[n] = time.time()
    emit(commits=commits)


async def paced_inserts_async(
    insert_one: Callable[[int], Awaitable[None]], jobs: int, interval: float
) -> None:
    """paced_inserts for an async-only client."""
    import asyncio

    commits: dict[int, float] = {}
    start = time.monotonic()
    for n in range(jobs):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await insert_one(n)
        commits[n] = time.time()
    emit(commits=commits)


async def wait_until_async(done: Callable[[], bool], timeout: float, pause: float = 0.002) -> bool:
    """wait_until on asyncio, for the adapters of async-only peers."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(pause)
    return True


class Countdown:
    """Counts finished jobs in a handler and wakes the waiter when the last one is done.

    The benchmark waits on an event rather than polling a counter: a loop
    that wakes every few milliseconds competes with the system under test
    for the event loop and the GIL (it made awa-pg's W3 several times slower).
    """

    def __init__(self) -> None:
        self.done = 0
        self.target: int | None = None
        self.event: Any = None

    def arm(self, target: int) -> None:
        """Call on the event loop that will wait, before the runtime starts."""
        import asyncio

        self.target, self.event = target, asyncio.Event()
        if self.done >= target:
            self.event.set()

    def hit(self) -> None:
        self.done += 1
        if self.event is not None and self.target is not None and self.done >= self.target:
            self.event.set()

    async def wait(self, timeout: float) -> bool:
        import asyncio

        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def wait_until(done: Callable[[], bool], timeout: float, pause: float = 0.01) -> bool:
    """Poll ``done()`` every ``pause`` seconds; False when ``timeout`` ran out first."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
    return True


def rate(jobs: int, seconds: float) -> dict[str, Any]:
    return {"rate": jobs / seconds if seconds > 0 else None, "seconds": seconds}


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of these distributions, plus the interpreter's."""
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
