"""What a worker's ``process`` may return besides a plain value.

Elixir's worker returns tuples; here a worker returns ``None`` or any value
(completed), one of these objects, or raises (retry)::

    {:snooze, s}  -> Snooze(s)      {:cancel, r} / {:discard, r} -> Cancel(r)
    {:ok, v}      -> Record(v) to keep v, or just return v to drop it
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import JobValidationError

__all__ = ["RECORDED_LIMIT", "Cancel", "Record", "Snooze"]

RECORDED_LIMIT = 64 * 1024 * 1024
"""Default largest encoded size of a recorded value, in bytes (64 MiB)."""


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run the job again ``seconds`` from now without using up an attempt.

    The job goes back to ``scheduled``, its ``max_attempts`` grows by one and
    ``meta["snoozed"]`` counts the snoozes.
    """

    seconds: int | float

    def __post_init__(self) -> None:
        check_snooze(self.seconds)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the job for good: it becomes ``cancelled`` with ``reason`` in its errors."""

    reason: str = "cancelled by worker"


@dataclass(frozen=True, slots=True)
class Record:
    """Complete the job and keep ``value`` in ``meta["return"]``.

    ``value`` must be JSON-encodable and at most ``limit`` bytes once encoded;
    otherwise the job fails with an error saying so (it is never truncated).
    """

    value: Any
    limit: int = RECORDED_LIMIT
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            encoded = orjson.dumps(self.value)
        except TypeError as exc:
            raise JobValidationError(f"recorded value must be JSON-encodable: {exc}") from exc
        if len(encoded) > self.limit:
            raise JobValidationError(
                f"recorded value is {len(encoded)} bytes, over the limit of "
                f"{self.limit}; record less, or pass Record(value, limit=...)"
            )
        object.__setattr__(self, "encoded", encoded)


def check_snooze(seconds: object) -> None:
    """Reject a snooze that is not a non-negative number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise JobValidationError(
            f"Snooze(seconds) needs a number of seconds, got {type(seconds).__name__}: {seconds!r}"
        )
    if not math.isfinite(seconds):
        raise JobValidationError(f"Snooze(seconds) needs a finite number of seconds, got {seconds}")
    if seconds < 0:
        raise JobValidationError(f"Snooze(seconds) must not be negative, got {seconds}")
