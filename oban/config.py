"""``Oban(...)``'s options: their defaults, their checks, and what the runtime gets.

Pure functions: each check takes what the caller passed and returns the value
to use or raises :class:`~oban.ConfigError` naming the option and what it
accepts. The defaults are defined once here; ``Oban.__init__`` and
:class:`RuntimeConfig` both read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ConfigError

__all__ = [
    "BACKENDS",
    "CANCEL_CHECK_INTERVAL",
    "POLL_INTERVAL",
    "SHUTDOWN_GRACE",
    "STAGE_INTERVAL",
    "TESTING_MODES",
    "RuntimeConfig",
    "check_backend",
    "check_count",
    "check_name",
    "check_prune",
    "check_queues",
    "check_seconds",
    "check_testing",
    "runtime_config",
]

POLL_INTERVAL = 1.0
"""Seconds between fetches of a queue when nothing signals new jobs."""
STAGE_INTERVAL = 1.0
"""Seconds between moves of due scheduled/retryable jobs to available."""
STAGE_LIMIT = 5_000
"""The most jobs one staging step moves (the next step takes the rest)."""
SHUTDOWN_GRACE = 15.0
"""Seconds ``stop()`` lets running jobs finish before putting them back."""
CANCEL_CHECK_INTERVAL = 1.0
"""Seconds between checks whether jobs running here were cancelled elsewhere."""
ACK_DELAY = 0.005
"""Seconds the acker waits for more acks to write together."""
DISPATCH_COOLDOWN = 0.005
"""Seconds from one fetch of a producer to the next while more than half of its
slots are busy (Elixir Oban's ``dispatch_cooldown``): jobs that end one by one
(``def`` jobs in threads) are refilled by one fetch, not one fetch each. With
half the slots free the fetch goes at once: it is a batch already."""
ERROR_BACKOFF = (0.1, 5.0)
"""(first, longest) pause in seconds of a loop after a database error."""
LEADER_LEASE = 30.0
"""Seconds a leader holds its lease; it renews at a third of that. A leader that
dies is replaced at most this long after its last renewal."""
RESCUE_AFTER = 30.0
"""Seconds without a heartbeat after which a node's executing jobs are rescued."""
HEARTBEAT_INTERVAL = 5.0
"""Seconds between heartbeats (at most; less when ``rescue_after`` is short)."""
PRUNE_MAX_AGE = 60.0
"""Seconds finished jobs are kept before the pruner deletes them."""
PRUNE_LIMIT = 10_000
"""The most jobs one pruner transaction deletes."""
PRUNE_INTERVAL = 30.0
"""Seconds between pruner runs."""
RESCUE_LIMIT = 1_000
"""The most orphaned jobs one lifeline transaction rescues."""
CRON_INTERVAL = 1.0
"""Seconds between the leader's looks at the cron table (a slot is inserted this late at most)."""

TESTING_MODES = ("inline", "manual")
BACKENDS = ("asyncio", "trio")


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs to know; checked by :func:`runtime_config` before it gets here."""

    queues: dict[str, int]
    node: str
    poll_interval: float = POLL_INTERVAL
    stage_interval: float = STAGE_INTERVAL
    stage_limit: int = STAGE_LIMIT
    shutdown_grace: float = SHUTDOWN_GRACE
    ack_delay: float = ACK_DELAY
    dispatch_cooldown: float = DISPATCH_COOLDOWN
    """Seconds a producer lets pass after a fetch before the next while more than
    half of its slots are busy, so slots freed one by one are refilled by one fetch."""
    error_backoff: tuple[float, float] = ERROR_BACKOFF
    cancel_check_interval: float = CANCEL_CHECK_INTERVAL
    """Seconds between checks whether jobs running here were cancelled elsewhere
    (another process on the SQLite file, a lost notification)."""
    name: str = "oban"
    cluster: bool = True
    """Run the many-node plugins (leadership, heartbeats, lifeline, pruner, cron,
    queue state); off in testing modes."""
    leader_lease: float = LEADER_LEASE
    rescue_after: float = RESCUE_AFTER
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    prune_max_age: float | None = PRUNE_MAX_AGE
    """None: keep finished jobs forever."""
    prune_limit: int = PRUNE_LIMIT
    prune_interval: float = PRUNE_INTERVAL
    rescue_limit: int = RESCUE_LIMIT
    cron: tuple[Any, ...] = ()
    """The :class:`~oban.cron.CronEntry` table (from ``cron=`` and ``@worker(cron=)``)."""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    cron_catch_up: float | None = None
    """Seconds of missed slots a new leader inserts late; None: the last slot only."""
    cron_interval: float = CRON_INTERVAL


def check_queues(queues: object) -> dict[str, int]:
    """``queues``: a dict of queue name -> how many of its jobs run at once here."""
    if queues is None:
        return {}
    if not isinstance(queues, dict):
        raise ConfigError(f"queues must be a dict of name -> limit, got {type(queues).__name__}")
    checked: dict[str, int] = {}
    for name, limit in queues.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"queue names must be non-blank strings, got {name!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"queue {name!r} needs a limit of at least 1 (jobs run at once), got {limit!r}"
            )
        checked[name] = limit
    return checked


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration option: a number of seconds, > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        )
    return float(value)


def check_testing(testing: object) -> str | None:
    if testing is not None and testing not in TESTING_MODES:
        raise ConfigError(f"testing must be one of {TESTING_MODES} or None, got {testing!r}")
    return testing


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return str(backend)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    return name


def check_prune(prune: object) -> float | None:
    """``prune``: seconds finished jobs are kept (default 60); False or None keeps all."""
    if prune is None or prune is False:
        return None
    if prune is True:
        return PRUNE_MAX_AGE
    return check_seconds("prune (seconds finished jobs are kept; False keeps all)", prune)


def check_count(name: str, value: object) -> int:
    """A positive whole number option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


def runtime_config(
    *,
    queues: dict[str, int],
    node: str,
    name: str = "oban",
    testing: str | None,
    poll_interval: object,
    stage_interval: object,
    shutdown_grace: object,
    cancel_check_interval: object,
    leader_lease: object = LEADER_LEASE,
    rescue_after: object = RESCUE_AFTER,
    prune: object = PRUNE_MAX_AGE,
    prune_limit: object = PRUNE_LIMIT,
    prune_interval: object = PRUNE_INTERVAL,
    cron: tuple[Any, ...] = (),
    timezone: ZoneInfo | None = None,
    cron_catch_up: object = None,
) -> RuntimeConfig:
    """Check the runtime's options; a testing mode runs no queue and no cluster work.

    The heartbeat follows ``rescue_after``: at least three heartbeats fit in
    it, so one slow write never makes a live node look dead.
    """
    rescue = check_seconds("rescue_after", rescue_after)
    return RuntimeConfig(
        queues={} if testing else dict(queues),
        node=node,
        name=name,
        cluster=not testing,
        poll_interval=check_seconds("poll_interval", poll_interval),
        stage_interval=check_seconds("stage_interval", stage_interval),
        shutdown_grace=check_seconds("shutdown_grace", shutdown_grace, allow_zero=True),
        cancel_check_interval=check_seconds("cancel_check_interval", cancel_check_interval),
        leader_lease=check_seconds("leader_lease", leader_lease),
        rescue_after=rescue,
        heartbeat_interval=min(HEARTBEAT_INTERVAL, rescue / 3),
        prune_max_age=check_prune(prune),
        prune_limit=check_count("prune_limit", prune_limit),
        prune_interval=check_seconds("prune_interval", prune_interval),
        cron=tuple(cron),
        timezone=timezone or ZoneInfo("UTC"),
        cron_catch_up=None
        if cron_catch_up is None
        else check_seconds("cron_catch_up", cron_catch_up),
    )
