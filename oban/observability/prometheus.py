"""A Prometheus collector of Oban's figures, read from the database at each scrape.

``registry.register(ObanCollector(oban))`` (or ``oban metrics --port 9100``)
exposes:

- ``oban_jobs{queue, state}``: jobs in the table, per queue and state;
- ``oban_queue_depth{queue}``: available jobs, waiting for a free slot;
- ``oban_queue_lag_seconds{queue}``: how long the oldest available job has waited;
- ``oban_database_up``: 1 when the last scrape could read the database, else 0;
- with ``durations=True``, ``oban_job_duration_seconds{queue, state}``: a
  histogram of the attempts *this process* ran (a telemetry handler), for
  scraping each worker process; Prometheus sums them across targets.

The counts come from one statement at scrape time, never from counters kept
in a process: with several worker processes each would see only its own
jobs, and a process that restarts would start from zero. Any process that
reaches the database, a worker or a separate ``oban metrics``, serves the
same, correct numbers.

Needs the ``prometheus`` extra (``pip install oban[prometheus]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from .. import telemetry
from ..engines.base import Capability
from ..engines.stats import QueueStats, queue_stats
from ..errors import ConfigError, DatabaseError
from ..job import JobState
from ..oban import Oban

try:
    from prometheus_client import Histogram
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise ImportError(
        "oban.observability.prometheus needs prometheus-client: pip install 'oban[prometheus]'"
    ) from exc

__all__ = ["DURATION_BUCKETS", "ObanCollector"]

logger = logging.getLogger("oban")

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
"""Seconds: job durations run from a few milliseconds to many minutes."""


class ObanCollector(Collector):
    """The figures of ``oban``'s database (its engine and ``prefix``), for a registry.

    Args:
        oban: an instance with a database (not ``testing="inline"``); it need
            not be running: a separate process can serve the metrics.
        namespace: the metric name prefix (``oban``).
        durations: also keep a histogram of the attempts this process runs.
    """

    def __init__(self, oban: Oban, *, namespace: str = "oban", durations: bool = False) -> None:
        if Capability.PERSISTENT not in oban.engine.capabilities:
            raise ConfigError(
                "ObanCollector reads the jobs table: give it an Oban with a database, "
                "not testing='inline'"
            )
        self.oban = oban
        self.namespace = namespace
        self._histogram: Histogram | None = None
        self._handle: telemetry.Handle | None = None
        if durations:
            self._histogram = Histogram(
                f"{namespace}_job_duration_seconds",
                "Seconds each attempt of a job ran in this process, by queue and resulting state.",
                labelnames=("queue", "state"),
                buckets=DURATION_BUCKETS,
                registry=None,
            )
            self._handle = telemetry.attach(self._observe, events=["job.stop", "job.exception"])

    def _observe(self, event: str, data: dict[str, Any]) -> None:
        if self._histogram is not None:
            self._histogram.labels(data["queue"], data["state"]).observe(data["duration"])

    def close(self) -> None:
        """Stop recording durations (the database figures need no cleanup)."""
        if self._handle is not None:
            telemetry.detach(self._handle)
            self._handle = None

    def read(self) -> dict[str, QueueStats]:
        """The database's figures now: one statement."""
        oban = self.oban
        with oban.engine.transaction() as conn:
            return queue_stats(conn, prefix=oban.prefix)

    def collect(self) -> Iterator[Metric]:
        name = self.namespace
        up = GaugeMetricFamily(
            f"{name}_database_up", "1 if the last scrape read the Oban tables, else 0."
        )
        try:
            stats = self.read()
        except DatabaseError as exc:
            logger.warning("Prometheus scrape could not read the Oban tables: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self.oban.clock()
        jobs = GaugeMetricFamily(
            f"{name}_jobs", "Jobs in the table, by queue and state.", labels=["queue", "state"]
        )
        depth = GaugeMetricFamily(
            f"{name}_queue_depth", "Available jobs waiting to run, by queue.", labels=["queue"]
        )
        lag = GaugeMetricFamily(
            f"{name}_queue_lag_seconds",
            "Seconds the oldest available job of the queue has waited (0: none waits).",
            labels=["queue"],
        )
        for queue, figures in sorted(stats.items()):
            for state in JobState:
                jobs.add_metric([queue, state.value], figures.count(state))
            depth.add_metric([queue], figures.count(JobState.AVAILABLE))
            lag.add_metric([queue], figures.lag(now))
        yield jobs
        yield depth
        yield lag
        if self._histogram is not None:
            yield from self._histogram.collect()
