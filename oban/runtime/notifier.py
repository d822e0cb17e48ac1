"""LISTEN/NOTIFY on PostgreSQL: inserts and signals reach every node at once.

Without it a producer only learns of new jobs at its next poll. The notifier
drives the engine's :class:`~oban.engines.listener.Listener` (a dedicated
connection) from a worker thread, a short wait at a time, so that cancelling
the runtime, under asyncio or trio, never waits longer than that timeout; it
decodes each notice (:mod:`oban.engines.signals`) and calls the subscribers
on the event loop.

When the connection drops (server restart, ``pg_terminate_backend``, network)
the notifier logs it, backs off with jitter and reconnects; meanwhile the
producers keep polling, so nothing stops, it only gets slower. After every
(re)connection the ``on_connect`` callbacks run, which the runtime uses to
wake all its producers once: notifications sent while nobody listened are lost.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from .. import telemetry
from ..engines.base import Capability, Engine
from ..engines.listener import Listener
from ..engines.signals import INSERT, LEADER, SIGNAL, channel_name, decode
from .loops import Loop

__all__ = ["Notifier", "notifier_for"]

logger = logging.getLogger("oban.notifier")

Callback = Callable[[dict[str, Any]], None]


class Notifier:
    """Listens on the Oban channels of one prefix and calls back on the event loop.

    Args:
        listener: the engine's blocking LISTEN connection.
        prefix: PostgreSQL schema of the Oban tables (channel names follow it).
        timeout: seconds one wait in the worker thread lasts; bounds how long
            stopping the runtime waits for the notifier.
        backoff: (first, longest) pause in seconds between reconnection attempts.
    """

    def __init__(
        self,
        listener: Listener,
        *,
        prefix: str | None = None,
        timeout: float = 0.1,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._listener = listener
        self.prefix = prefix
        self.timeout = timeout
        self._subscribers: dict[str, list[Callback]] = defaultdict(list)
        self._on_connect: list[Callable[[], None]] = []
        # One thread of our own: a long wait must never take a database thread.
        self._limiter = anyio.CapacityLimiter(1)
        self._loop = Loop(
            "the notifier", self._step, interval=0, error_backoff=backoff, on_error=self._failed
        )
        self.connections = 0
        """How many times a connection was made and LISTEN issued (1 + reconnections)."""
        self._connected = False

    # -- set-up ---------------------------------------------------------------------

    def subscribe(self, name: str, callback: Callback) -> None:
        """Call ``callback(payload)`` on the event loop for every notice on ``name``."""
        self._subscribers[channel_name(self.prefix, name)].append(callback)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the event loop after each (re)connection."""
        self._on_connect.append(callback)

    @property
    def application_name(self) -> str:
        return self._listener.application_name

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the current connection, None while disconnected."""
        return self._listener.backend_pid

    @property
    def listening(self) -> bool:
        """Whether LISTEN is in effect on a live connection right now."""
        return self._listener.connected

    # -- the task -------------------------------------------------------------------

    async def run(self) -> None:
        """Listen until cancelled; reconnect with back-off when the connection drops."""
        try:
            await self._loop.run()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._listener.close, limiter=self._limiter)
            if self._connected:
                self._connected = False
                if telemetry.active:
                    telemetry.emit("notifier.disconnected", {**self._event_data(), "error": None})

    async def _step(self) -> None:
        if not self._listener.connected:
            await anyio.to_thread.run_sync(self._listener.connect, limiter=self._limiter)
            self.connections += 1
            self._connected = True
            if telemetry.active:
                telemetry.emit("notifier.connected", self._event_data())
            for callback in self._on_connect:
                callback()
        notices = await anyio.to_thread.run_sync(
            self._listener.receive, self.timeout, limiter=self._limiter
        )
        for channel, text in notices:
            self._dispatch(channel, text)

    def _failed(self, exc: Exception, pause: float) -> None:
        level = logging.WARNING if self._loop.failures == 1 else logging.DEBUG
        logger.log(
            level,
            "notifier connection failed (%s); reconnecting in %.2fs, producers keep polling",
            exc,
            pause,
        )
        self._listener.close()
        if self._connected:
            self._connected = False
            if telemetry.active:
                telemetry.emit("notifier.disconnected", {**self._event_data(), "error": str(exc)})

    def _event_data(self) -> dict[str, Any]:
        return {"application_name": self.application_name, "connections": self.connections}

    # -- on the loop ------------------------------------------------------------------

    def _dispatch(self, channel: str, text: str) -> None:
        payload = decode(text)
        if payload is None:
            logger.debug("ignoring a notice on %s that is not a JSON object: %.100r", channel, text)
            return
        for callback in self._subscribers.get(channel, ()):
            _call(callback, payload, channel)


def _call(callback: Callback, payload: dict[str, Any], channel: str) -> None:
    """One callback; its failure is logged and must not stop the others or the listener."""
    try:
        callback(payload)
    except Exception:
        logger.exception("a notifier callback for %s failed", channel)


def notifier_for(engine: Engine, *, application_name: str) -> Notifier | None:
    """A notifier for an engine that declares ``NOTIFY`` (Basic), else None.

    Such an engine offers ``listener(names, application_name=...)``, a
    blocking LISTEN connection on its channels for ``insert``, ``signal`` and ``leader``.
    """
    if Capability.NOTIFY not in engine.capabilities:
        return None
    make = getattr(engine, "listener", None)
    if not callable(make):
        return None
    listener: Listener = make([INSERT, SIGNAL, LEADER], application_name=application_name)
    return Notifier(listener, prefix=getattr(engine, "prefix", None))
