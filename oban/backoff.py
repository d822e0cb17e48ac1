"""Default retry backoff: ``15 + 2**attempt`` seconds plus up to 10 % jitter.

Pure functions: randomness is injected, so tests pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["CLAMPED_ATTEMPT", "default_backoff", "error_pause", "exponential", "jitter"]

CLAMPED_ATTEMPT = 20
"""Attempts are scaled into 0..20 so a worker with max_attempts=1000 still gets
delays of days, not of ages of the universe (and no float overflow)."""


def exponential(attempt: int, *, padding: int = 15) -> int:
    """``padding + 2**attempt``, with ``attempt`` first clamped to 0..100."""
    exponent: int = max(0, min(attempt, 100))
    return padding + (1 << exponent)


def jitter(seconds: int, *, rand: Callable[[], float] = random.random, mult: float = 0.1) -> int:
    """Add up to ``mult`` (10 %) of ``seconds``, never subtract."""
    return seconds + int(rand() * mult * seconds)


def clamp_attempt(attempt: int, max_attempts: int) -> int:
    """Scale ``attempt`` into ``0..CLAMPED_ATTEMPT`` when max_attempts is larger."""
    if max_attempts <= CLAMPED_ATTEMPT:
        return attempt
    return round(attempt / max_attempts * CLAMPED_ATTEMPT)


def default_backoff(
    attempt: int, max_attempts: int, *, rand: Callable[[], float] = random.random
) -> int:
    """Seconds to wait before the next attempt after ``attempt`` failed."""
    return jitter(exponential(clamp_attempt(attempt, max_attempts)), rand=rand)


def error_pause(
    failures: int, bounds: tuple[float, float], *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds a loop waits after its ``failures``-th error in a row (1, 2, ...).

    Doubles from ``bounds[0]`` up to ``bounds[1]``, then keeps a random 50-100 %
    of that, so nodes that lost the database together do not return in lockstep.
    """
    low, high = bounds
    pause = min(high, low * float(1 << min(max(failures, 1) - 1, 16)))
    return pause * (0.5 + rand() / 2)
