"""LISTEN/NOTIFY on PostgreSQL: inserts and signals reach every node at once.

Without it a producer only learns of new jobs at its next poll. The notifier
holds one dedicated psycopg connection (never one of the SQLAlchemy pool's: a
pooled connection would be reset and recycled under our LISTEN) and waits on
it in a worker thread, a short while at a time, so that cancelling the
runtime — under asyncio or trio — never waits longer than that timeout.

Wire format, shared with Elixir Oban and oban-py so that the three wake each
other when they share a database:

* channel ``"{prefix}.oban_{name}"``, the prefix being the PostgreSQL schema of
  ``oban_jobs`` (``"public"`` when none is set): ``public.oban_insert``,
  ``public.oban_signal``, ``myschema.oban_insert``;
* payload: a JSON object as text. Inserts send ``{"queue": "mailers"}``.
  Signals ride ``oban_signal`` with ``{"action": ..., ...}`` as Elixir Oban
  does: cancelling an executing job sends ``{"action": "pkill", "job_id": 42}``
  in the cancelling transaction (see :func:`pkill`); pause/resume/scale are a
  later feature. Peers may send base64-encoded gzip of the JSON instead;
  :func:`decode` reads both.

When the connection drops (server restart, ``pg_terminate_backend``, network)
the notifier logs it, backs off with jitter and reconnects; meanwhile the
producers keep polling, so nothing stops, it only gets slower. After every
(re)connection the ``on_connect`` callback runs, which the runtime uses to wake
all its producers once: notifications sent while nobody listened are lost.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import orjson

from ..backoff import error_pause
from ..engines.base import Capability, Engine

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "Notifier",
    "channel_name",
    "decode",
    "encode",
    "notifier_for",
    "pkill",
    "pkill_job_id",
]

logger = logging.getLogger("oban.notifier")

Callback = Callable[[dict[str, Any]], None]

# libpq settings (a URL's own win): a connection attempt gives up after a few
# seconds, and TCP keepalives find a dead peer in about half a minute, so
# neither a reconnect nor the heartbeat's SELECT 1 can hang for minutes (and
# hold up shutdown, which waits for the notifier's thread).
_LIVENESS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

INSERT = "insert"
SIGNAL = "signal"

PKILL = "pkill"
"""The signal action that stops an executing job wherever it runs (Elixir Oban's name)."""


def pkill(job_id: int) -> dict[str, Any]:
    """The ``oban_signal`` payload that stops job ``job_id`` on the node running it.

    The same object Elixir Oban sends after cancelling an executing job, so
    a cancel from any of the peers reaches the others' nodes as well.
    """
    return {"action": PKILL, "job_id": job_id}


def pkill_job_id(payload: Mapping[str, Any]) -> int | None:
    """The job id of a ``pkill`` signal; None for any other (or malformed) payload."""
    if payload.get("action") != PKILL:
        return None
    job_id = payload.get("job_id")
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        return None
    return job_id


def channel_name(prefix: str | None, name: str) -> str:
    """The PostgreSQL channel for ``name`` (``insert``, ``signal``) under ``prefix``."""
    return f"{prefix or 'public'}.oban_{name}"


def encode(payload: Mapping[str, Any]) -> str:
    """A payload as compact JSON text (what every peer can read)."""
    return orjson.dumps(payload).decode()


def decode(text: str) -> dict[str, Any] | None:
    """Read a payload: plain JSON, or the base64 gzip that peers may send.

    Returns ``None`` for anything that is not a JSON object: a stray NOTIFY
    on our channel from some other program must not break the listener.
    """
    try:
        if not text.lstrip().startswith("{"):
            text = gzip.decompress(base64.b64decode(text, validate=True)).decode()
        value = orjson.loads(text)
    except (ValueError, binascii.Error, OSError, EOFError):
        return None
    return value if isinstance(value, dict) else None


class Notifier:
    """Listens on the Oban channels of one prefix and calls back on the event loop.

    Args:
        connect_params: keyword arguments for ``psycopg.connect`` (host,
            dbname, user, ...), as SQLAlchemy's dialect derives them from the URL.
        prefix: PostgreSQL schema of the Oban tables (channel names follow it).
        application_name: shown in ``pg_stat_activity``, so operators (and
            tests) can tell the notifier's connection apart.
        timeout: seconds one wait in the worker thread lasts; bounds how long
            stopping the runtime waits for the notifier.
        backoff: (first, longest) pause in seconds between reconnection attempts.
        beat_interval: seconds of silence after which the connection is
            checked with ``SELECT 1``, so a half-open TCP connection is found.
    """

    def __init__(
        self,
        connect_params: Mapping[str, Any],
        *,
        prefix: str | None = None,
        application_name: str = "oban_notifier",
        timeout: float = 0.1,
        backoff: tuple[float, float] = (0.1, 5.0),
        beat_interval: float = 15.0,
    ) -> None:
        self._connect_params = dict(connect_params)
        self.prefix = prefix
        self.application_name = application_name[:63]  # PostgreSQL truncates at NAMEDATALEN - 1
        self.timeout = timeout
        self.backoff = backoff
        self.beat_interval = beat_interval
        self._subscribers: dict[str, list[Callback]] = defaultdict(list)
        self._on_connect: list[Callable[[], None]] = []
        self._conn: psycopg.Connection[Any] | None = None
        self._last_beat = 0.0
        # One thread of our own: a long wait must never take a database thread.
        self._limiter = anyio.CapacityLimiter(1)
        self.connections = 0
        """How many times a connection was made and LISTEN issued (1 + reconnections)."""
        self.backend_pid: int | None = None
        """The server process id of the current connection, None while disconnected."""

    # -- set-up ---------------------------------------------------------------------

    def subscribe(self, name: str, callback: Callback) -> None:
        """Call ``callback(payload)`` on the event loop for every notice on ``name``."""
        self._subscribers[channel_name(self.prefix, name)].append(callback)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the event loop after each (re)connection."""
        self._on_connect.append(callback)

    @property
    def listening(self) -> bool:
        """Whether LISTEN is in effect on a live connection right now."""
        return self._conn is not None and not self._conn.closed

    # -- the task -------------------------------------------------------------------

    async def run(self) -> None:
        """Listen until cancelled; reconnect with back-off when the connection drops."""
        failures = 0
        try:
            while True:
                try:
                    if self._conn is None:
                        await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
                        if failures:
                            logger.info("notifier reconnected after %d failed attempt(s)", failures)
                        failures = 0
                        for callback in self._on_connect:
                            callback()
                    notices = await anyio.to_thread.run_sync(self._receive, limiter=self._limiter)
                except Exception as exc:
                    failures += 1
                    pause = error_pause(failures, self.backoff)
                    logger.warning(
                        "notifier connection failed (%s); reconnecting in %.2fs, "
                        "producers keep polling",
                        exc,
                        pause,
                    )
                    self._discard()
                    await anyio.sleep(pause)
                    continue
                for channel, payload in notices:
                    self._dispatch(channel, payload)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._discard, limiter=self._limiter)

    # -- in the worker thread ---------------------------------------------------------

    def _connect(self) -> None:
        import psycopg
        from psycopg import sql

        params = {**_LIVENESS, **self._connect_params}
        conn = psycopg.connect(**params, autocommit=True, application_name=self.application_name)
        try:
            for channel in self._subscribers:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._last_beat = time.monotonic()
        self.backend_pid = conn.info.backend_pid
        self.connections += 1

    def _receive(self) -> list[tuple[str, str]]:
        conn = self._conn
        if conn is None:
            return []
        if time.monotonic() - self._last_beat > self.beat_interval:
            conn.execute("SELECT 1")
            self._last_beat = time.monotonic()
        # stop_after=1: return as soon as something arrived (with whatever came
        # along in the same read) instead of sitting out the whole timeout.
        notices = [
            (n.channel, n.payload) for n in conn.notifies(timeout=self.timeout, stop_after=1)
        ]
        if notices:
            self._last_beat = time.monotonic()
        return notices

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        self.backend_pid = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the notifier connection failed", exc_info=True)

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
    """The notifier of an engine that declares ``NOTIFY`` (Basic), else None."""
    if Capability.NOTIFY not in engine.capabilities:
        return None
    make = getattr(engine, "notifier", None)
    if not callable(make):
        return None
    notifier = make(application_name=application_name)
    return notifier if isinstance(notifier, Notifier) else None
