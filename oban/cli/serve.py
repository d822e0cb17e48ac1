"""``oban start``: run the queues in the foreground until SIGTERM or SIGINT.

The first signal stops gracefully: no more fetching, running jobs get the
grace period, the rest go back ``available``. A second signal while that
runs cuts the grace short. The stop runs in a helper thread so that the main
thread, where Python delivers signals, stays free to hear the second one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from ..errors import NotRunningError
from ..oban import Oban

__all__ = ["Signals", "serve", "stop_now"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WAKE_EVERY = 0.5
"""Seconds between looks at the events: waits stay interruptible on every platform."""


class Signals:
    """Counts SIGINT/SIGTERM: the first asks for a stop, the second for a stop now."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.now = threading.Event()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.now.set()
        self.stop.set()

    @contextmanager
    def installed(self) -> Iterator[Signals]:
        """Handle the stop signals inside the block; the previous handlers after it."""
        previous = {number: signal.signal(number, self.handle) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def stop_now(oban: Oban) -> None:
    """Cut the grace period of the stop under way: the running jobs are cancelled
    now and go back ``available`` (``Oban.stop`` called again does exactly that)."""
    with suppress(NotRunningError):  # the first stop just finished
        oban.stop(grace=0)


def _wait(event: threading.Event, oban: Oban) -> None:
    """Until ``event`` is set, or the runtime ended on its own (then stopping it
    raises why, and ``oban start`` exits with that error instead of idling)."""
    while not event.wait(WAKE_EVERY):
        if not oban.is_running:
            return


def serve(
    oban: Oban,
    grace: float | None,
    *,
    on_started: Callable[[], None],
    on_stopping: Callable[[], None],
    on_hurry: Callable[[], None],
) -> None:
    """Start ``oban``, wait for a signal, stop it; a second signal stops at once."""
    signals = Signals()
    with signals.installed():
        oban.start()
        on_started()
        _wait(signals.stop, oban)
        on_stopping()
        failure: list[BaseException] = []
        stopper = threading.Thread(
            target=_stop, args=(oban, grace, failure), name="oban-cli-stop", daemon=True
        )
        stopper.start()
        hurried = False
        while stopper.is_alive():
            stopper.join(WAKE_EVERY)
            if signals.now.is_set() and not hurried:
                hurried = True
                on_hurry()
                stop_now(oban)
        if failure:
            raise failure[0]


def _stop(oban: Oban, grace: float | None, failure: list[BaseException]) -> None:
    try:
        oban.stop(grace)
    except BaseException as exc:  # handed to the main thread, which raises it
        failure.append(exc)
