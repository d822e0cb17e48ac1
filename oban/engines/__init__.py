"""Storage engines: Lite (SQLite), Inline (no storage) and, on PostgreSQL, Basic."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import ConfigError
from .base import Capability, Engine
from .inline import Inline
from .lite import Lite

__all__ = ["Capability", "Engine", "Inline", "Lite", "create_bind", "engine_for"]


def create_bind(url: str | sa.URL, **options: Any) -> sa.Engine:
    """A SQLAlchemy engine for ``url`` with the settings Oban's engines want."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # A bare PostgreSQL URL means psycopg 3 here (the Basic engine's driver),
        # not SQLAlchemy's default psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
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
