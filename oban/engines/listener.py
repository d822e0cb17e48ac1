"""A blocking LISTEN connection to PostgreSQL: what the runtime's notifier drives.

One dedicated psycopg connection, never one of the SQLAlchemy pool's (a pooled
connection would be reset and recycled under our LISTEN). Every method
blocks and is meant for a worker thread: :meth:`receive` waits at most
``timeout`` seconds, so the thread that calls it can be given up promptly.
Reconnecting, backing off and calling back on the event loop are the
runtime's (``oban/runtime/notifier.py``); this module only speaks SQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["Listener"]

logger = logging.getLogger("oban.notifier")

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


class Listener:
    """LISTEN on ``channels`` over a connection of its own.

    Args:
        connect_params: keyword arguments for ``psycopg.connect`` (host,
            dbname, user, ...), as SQLAlchemy's dialect derives them from the URL.
        channels: the full channel names to LISTEN on.
        application_name: shown in ``pg_stat_activity``, so operators (and
            tests) can tell the listener's connection apart.
        beat_interval: seconds of silence after which the connection is
            checked with ``SELECT 1``, so a half-open TCP connection is found.
    """

    def __init__(
        self,
        connect_params: Mapping[str, Any],
        channels: Iterable[str],
        *,
        application_name: str = "oban_notifier",
        beat_interval: float = 15.0,
    ) -> None:
        self._connect_params = dict(connect_params)
        self.channels = tuple(dict.fromkeys(channels))
        self.application_name = application_name[:63]  # PostgreSQL truncates at NAMEDATALEN - 1
        self.beat_interval = beat_interval
        self._conn: psycopg.Connection[Any] | None = None
        self._last_beat = 0.0
        self.backend_pid: int | None = None
        """The server process id of the current connection, None while disconnected."""

    @property
    def connected(self) -> bool:
        """Whether LISTEN is in effect on a live connection right now."""
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        """Open the connection and LISTEN on every channel (a no-op when connected)."""
        if self._conn is not None:
            return
        import psycopg
        from psycopg import sql

        # The listener's own name wins over one in the URL (``?application_name=``,
        # which names the pool's connections): passing both made connect() fail.
        params = {**_LIVENESS, **self._connect_params, "application_name": self.application_name}
        conn = psycopg.connect(**params, autocommit=True)
        try:
            for channel in self.channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._last_beat = time.monotonic()
        self.backend_pid = conn.info.backend_pid

    def receive(self, timeout: float) -> list[tuple[str, str]]:
        """Notices that arrive within ``timeout`` seconds, as (channel, payload text).

        Returns as soon as something arrived (with whatever came along in
        the same read) instead of sitting out the whole timeout. Raises when
        the connection is broken; :meth:`close` it and :meth:`connect` again.
        """
        conn = self._conn
        if conn is None:
            return []
        if time.monotonic() - self._last_beat > self.beat_interval:
            conn.execute("SELECT 1")
            self._last_beat = time.monotonic()
        notices = [(n.channel, n.payload) for n in conn.notifies(timeout=timeout, stop_after=1)]
        if notices:
            self._last_beat = time.monotonic()
        return notices

    def close(self) -> None:
        """Drop the connection (broken or not); never raises."""
        conn, self._conn = self._conn, None
        self.backend_pid = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the listener connection failed", exc_info=True)
