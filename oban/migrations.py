"""Programmatic Alembic: install or upgrade the Oban schema from code.

The revisions live in the top-level ``alembic/`` directory of the source tree
and ship inside the wheel as ``oban/_alembic``. They carry the branch label
``oban``, so an application's own Alembic environment can include them
(``version_locations = ... %(oban)s``, see :func:`version_location`) and run
``alembic upgrade oban@head``. Standalone, :func:`migrate` keeps its own
version table, ``oban_alembic_version``, so it never collides with an
application's ``alembic_version``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .errors import DatabaseError

__all__ = [
    "OBAN_TABLES",
    "VERSION_TABLE",
    "include_object",
    "migrate",
    "script_location",
    "version_location",
]

VERSION_TABLE = "oban_alembic_version"


def script_location() -> str:
    """Directory of Oban's Alembic environment (``env.py`` and ``versions/``)."""
    packaged = Path(__file__).parent / "_alembic"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).parent.parent / "alembic")


def version_location() -> str:
    """Directory of Oban's revisions, for an application's ``version_locations``."""
    return str(Path(script_location()) / "versions")


def migrate(
    bind: sa.Engine | str, *, prefix: str | None = None, revision: str = "oban@head"
) -> None:
    """Upgrade the Oban tables in ``bind``'s database to ``revision``.

    Safe to run on every start: an up-to-date database is left alone, and a
    database where Elixir Oban or oban-py already created ``oban_jobs`` is
    adopted, not recreated.
    """
    from alembic.config import Config

    from alembic import command

    engine = sa.create_engine(bind) if isinstance(bind, str) else bind
    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["prefix"] = prefix
    config.attributes["version_table"] = VERSION_TABLE
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"migrating the Oban schema failed: {exc.orig}") from exc
    finally:
        if isinstance(bind, str):
            engine.dispose()


OBAN_TABLES = frozenset({"oban_jobs", VERSION_TABLE})
"""The tables Oban's revisions own; an application's autogenerate must leave them alone."""


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """An ``include_object`` hook for an application's Alembic ``env.py``.

    With Oban's revisions in the application's ``version_locations``, the
    Oban tables are in the database but not in the application's metadata,
    so ``alembic revision --autogenerate`` would propose dropping them. Pass
    this to ``context.configure(include_object=...)`` (or call it from your
    own hook) and autogenerate proposes nothing about Oban's tables, their
    columns or their indexes.
    """
    if type_ == "table":
        return name not in OBAN_TABLES
    table = getattr(obj, "table", None)
    return getattr(table, "name", None) not in OBAN_TABLES
