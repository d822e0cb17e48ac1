"""``Oban(...)``'s options: their defaults, their checks, and what the runtime gets.

Pure functions: each check takes what the caller passed and returns the value
to use or raises :class:`~oban.ConfigError` naming the option and what it
accepts. The defaults are defined once here; ``Oban.__init__`` and
:class:`RuntimeConfig` both read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    "check_name",
    "check_not_yet_supported",
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
ERROR_BACKOFF = (0.1, 5.0)
"""(first, longest) pause in seconds of a loop after a database error."""

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
    error_backoff: tuple[float, float] = ERROR_BACKOFF
    cancel_check_interval: float = CANCEL_CHECK_INTERVAL
    """Seconds between checks whether jobs running here were cancelled elsewhere
    (another process on the SQLite file, a lost notification)."""


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


def check_not_yet_supported(*, cron: object, timezone: object) -> None:
    """``cron=`` and ``timezone=`` are part of the API but do nothing yet: say so.

    Accepting them silently would let a user believe their periodic jobs are
    scheduled. An empty ``cron`` and the default ``"UTC"`` are fine.
    """
    if cron is not None and cron != [] and cron != {} and cron != ():
        raise ConfigError(
            "cron= is not supported yet: periodic jobs arrive with leader election "
            "(many nodes). Until then, enqueue them from your own scheduler, or leave cron unset"
        )
    if timezone != "UTC":
        raise ConfigError(
            f"timezone= only applies to cron, which is not supported yet; got {timezone!r}. "
            "Leave it unset (UTC)"
        )


def runtime_config(
    *,
    queues: dict[str, int],
    node: str,
    testing: str | None,
    poll_interval: object,
    stage_interval: object,
    shutdown_grace: object,
    cancel_check_interval: object,
) -> RuntimeConfig:
    """Check the runtime's options; a testing mode runs no queue."""
    return RuntimeConfig(
        queues={} if testing else dict(queues),
        node=node,
        poll_interval=check_seconds("poll_interval", poll_interval),
        stage_interval=check_seconds("stage_interval", stage_interval),
        shutdown_grace=check_seconds("shutdown_grace", shutdown_grace, allow_zero=True),
        cancel_check_interval=check_seconds("cancel_check_interval", cancel_check_interval),
    )
