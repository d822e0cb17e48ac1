"""The one loop every repeating task of the runtime runs on.

Fetching, acking, staging, the cancel check and the notifier all do the same
thing: wait for a nudge or an interval, do one step, and on an error log it,
back off with jitter and go on. Written once here, so every loop survives a
database that goes away in the same way, and a new task (pruner, lifeline,
cron, ...) is one ``tick`` function on this helper, never a loop of its own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import anyio

from .. import telemetry
from ..backoff import error_pause
from ..errors import DatabaseError
from ..job_events import error_data
from .outage import Outage

__all__ = ["Loop"]

logger = logging.getLogger("oban")

Tick = Callable[[], Awaitable[None]]
OnError = Callable[[Exception, float], None]


class Loop:
    """Runs ``tick()`` over and over until stopped or cancelled.

    Between ticks it waits for :meth:`wake` or ``interval`` seconds, whichever
    comes first (``interval`` may be a callable, asked before each wait);
    ``interval=None`` waits for a wake only, ``0`` runs the ticks
    back to back (for a tick that itself blocks, such as a LISTEN). With
    ``jitter`` (0.1 = ±10 %) each wait is spread so that nodes started
    together do not tick in step. ``immediate`` ticks once before the first
    wait.

    A tick that raises is reported (``on_error(exc, pause)``; by default the
    first failure of a run of them is an error record on the ``oban`` logger
    with the traceback, later ones are debug records, and the first success
    after them says it recovered: an outage is two lines in the log, not one
    per retry; loops sharing an :class:`~oban.runtime.outage.Outage` report
    database errors there instead, so an outage of the whole node is two
    lines), then the loop pauses (``error_backoff``: first and longest pause, growing with each
    failure in a row, jittered) and ticks again at once, without waiting for a
    wake: a step that failed is retried, not skipped.

    ``leader_only`` loops skip their tick while ``is_leader()`` says this node
    does not lead (the work of one node for the whole cluster: staging,
    pruning, rescue, cron).
    """

    def __init__(
        self,
        name: str,
        tick: Tick,
        *,
        interval: float | Callable[[], float | None] | None,
        jitter: float = 0.0,
        immediate: bool = False,
        error_backoff: tuple[float, float] = (0.1, 5.0),
        leader_only: bool = False,
        is_leader: Callable[[], bool] = lambda: True,
        on_error: OnError | None = None,
        outage: Outage | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval
        self.jitter = jitter
        self.immediate = immediate
        self.error_backoff = error_backoff
        self.leader_only = leader_only
        self._is_leader = is_leader
        self._on_error = on_error or self._log_error
        self._outage = outage
        self._rand = rand
        self._wakeup = anyio.Event()
        self._stopped = False
        self.ticks = 0
        """How many ticks ran to the end without an error (for tests and metrics)."""
        self.failures = 0
        """How many ticks in a row have failed; 0 after a success."""

    def _log_error(self, exc: Exception, pause: float) -> None:
        if self.failures == 1:
            logger.error(
                "%s failed; retrying in %.2fs (further failures are logged at debug "
                "level until it recovers)",
                self.name,
                pause,
                exc_info=exc,
            )
        else:
            logger.debug("%s failed again (%d in a row): %s", self.name, self.failures, exc)

    def wake(self) -> None:
        """Tick now rather than at the end of the current wait."""
        self._wakeup.set()

    def stop(self) -> None:
        """Let :meth:`run` return after the tick in progress (if any)."""
        self._stopped = True
        self._wakeup.set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def interval(self) -> float | None:
        """Seconds of the next wait; a callable ``interval`` is asked each time (a
        leader bidding for the lease waits until the current one ends)."""
        interval = self._interval
        return interval() if callable(interval) else interval

    def next_wait(self) -> float | None:
        """The seconds of the next wait between ticks: ``interval`` with its jitter."""
        interval = self.interval
        if interval is None or not self.jitter:
            return interval
        return max(0.0, interval * (1 + self.jitter * (2 * self._rand() - 1)))

    async def _wait(self) -> None:
        with anyio.move_on_after(self.next_wait()):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def run(self) -> None:
        """Tick until :meth:`stop` (returns) or cancellation (raises it)."""
        pending = self.immediate
        while True:
            if not pending:
                await self._wait()
            if self._stopped:  # stop() also ends the wait
                return
            pending = False
            if self.leader_only and not self._is_leader():
                # Not leading, this loop has no work: it is not failing either. A
                # leader cut off by an outage loses the lease, and its leader-only
                # loops must not keep the outage open for ever (its end unlogged,
                # the next outage's first error logged at debug only).
                self._recovered()
                continue
            try:
                await self._tick()
            except Exception as exc:  # every loop survives errors: log, back off, go on
                self.failures += 1
                pause = error_pause(self.failures, self.error_backoff)
                if telemetry.active and isinstance(exc, DatabaseError):
                    telemetry.emit(
                        "db.error",
                        {"loop": self.name, "error": error_data(exc), "failures": self.failures},
                    )
                if self._outage is not None and isinstance(exc, DatabaseError):
                    self._outage.failed(self.name, exc, pause)
                else:
                    self._on_error(exc, pause)
                await anyio.sleep(pause)
                pending = True
                continue
            self._recovered()
            self.ticks += 1

    def _recovered(self) -> None:
        """The loop works (or has nothing to do) again: end its part of a failure."""
        if self.failures:
            if self._outage is not None and self._outage.ongoing:
                self._outage.recovered(self.name)
            else:
                logger.warning("%s recovered after %d failure(s)", self.name, self.failures)
        self.failures = 0
