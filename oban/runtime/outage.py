"""One record of a database outage, whichever loops run into it.

A node has a dozen loops (producers, the acker, the plugins); when the
database goes away every one of them fails and retries. Logged per loop
that is a dozen tracebacks at the start and a dozen "recovered" lines at the
end. The loops report here instead: the first failure of an outage is one
error record (with the traceback), the first time every failing loop works
again is one warning saying how long it lasted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Outage"]

logger = logging.getLogger("oban")


class Outage:
    """Tracks which loops are failing on database errors right now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failing: set[str] = set()
        self._started: float | None = None
        self._errors = 0
        self.outages = 0
        """How many outages began (for tests and metrics)."""

    @property
    def ongoing(self) -> bool:
        return self._started is not None

    def failed(self, loop: str, exc: BaseException, pause: float) -> None:
        """``loop`` failed on a database error and retries after ``pause`` seconds."""
        self._failing.add(loop)
        self._errors += 1
        if self._started is None:
            self._started = self._clock()
            self.outages += 1
            logger.error(
                "database unavailable (%s failed: %s); every part of this node retries "
                "with backoff, nothing is lost, and the end of the outage is logged",
                loop,
                exc,
                exc_info=exc,
            )
        else:
            logger.debug("%s failed again, retrying in %.2fs: %s", loop, pause, exc)

    def recovered(self, loop: str) -> None:
        """``loop`` worked again after failing."""
        self._failing.discard(loop)
        if self._failing or self._started is None:
            return
        lasted = self._clock() - self._started
        logger.warning(
            "database available again after %.1fs (%d failed attempt(s) retried)",
            lasted,
            self._errors,
        )
        self._started = None
        self._errors = 0
