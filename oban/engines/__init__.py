"""Storage engines: Lite (SQLite), Inline (no storage) and, on PostgreSQL, Basic."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import ConfigError
from .base import Capability, Engine
from .inline import Inline
from .lite import Lite

__all__ = [
    "PGBOUNCER_CONNECT_ARGS",
    "Capability",
    "Engine",
    "Inline",
    "Lite",
    "create_bind",
    "engine_for",
]

PGBOUNCER_CONNECT_ARGS: dict[str, Any] = {"prepare_threshold": None}
"""The psycopg 3 ``connect_args`` a database reached through PgBouncer in
transaction (or statement) pooling mode needs: ``create_bind(url,
connect_args=PGBOUNCER_CONNECT_ARGS)`` (or ``sa.create_engine``), passed to
``Oban(bind)``. psycopg prepares a statement on the server after its 5th run;
behind transaction pooling the next transaction may get a server connection
without it (``prepared statement "_pg3_0" does not exist`` / ``bind message
supplies 14 parameters, but prepared statement "_pg3_0" requires 5``).
``None`` turns server-side preparing off. PgBouncer 1.21+ with
``max_prepared_statements`` set does not need it. Notifications do not pass
through transaction pooling either: jobs are then picked up by the poll,
within ``poll_interval`` of their insert."""


SYNC_DRIVERS = {
    # A bare PostgreSQL URL means psycopg 3 here (the Basic engine's driver),
    # not SQLAlchemy's default psycopg2.
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    # Async drivers, as FastAPI apps keep in their settings: Oban's engines
    # run sync SQLAlchemy in worker threads, so the same database is reached
    # through the matching sync driver.
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "sqlite+aiosqlite": "sqlite",
    "sqlite+pysqlite_async": "sqlite",
}
"""URL drivers Oban replaces by the sync driver its engines use."""


def create_bind(url: str | sa.URL, **options: Any) -> sa.Engine:
    """A SQLAlchemy engine for ``url`` with the settings Oban's engines want.

    An async driver's URL (``postgresql+asyncpg://``, ``sqlite+aiosqlite://``)
    is mapped to the sync driver of the same database (see :data:`SYNC_DRIVERS`).
    Behind PgBouncer's transaction pooling pass
    ``connect_args=PGBOUNCER_CONNECT_ARGS`` (see :data:`PGBOUNCER_CONNECT_ARGS`).
    """
    parsed = sa.make_url(url)
    if parsed.drivername in SYNC_DRIVERS:
        parsed = parsed.set(drivername=SYNC_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() == "sqlite":
        options.setdefault("connect_args", {"timeout": 30})
    return sa.create_engine(parsed, **options)


def engine_for(bind: sa.Engine, *, prefix: str | None = None, owns_bind: bool = False) -> Engine:
    """The engine that fits ``bind``'s dialect."""
    dialect = bind.dialect.name
    if dialect == "sqlite":
        return Lite(bind, prefix=prefix, owns_bind=owns_bind)
    if dialect == "postgresql":
        from .basic import Basic

        return Basic(bind, prefix=prefix, owns_bind=owns_bind)
    raise ConfigError(
        f"no Oban engine for the {dialect!r} dialect: use a sqlite:/// URL (Lite) or "
        "a postgresql+psycopg:// URL (Basic), or pass engine=..."
    )
