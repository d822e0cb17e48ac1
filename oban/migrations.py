"""Programmatic Alembic: install, upgrade or roll back the Oban schema from code.

The revisions live in the top-level ``alembic/`` directory of the source tree
and ship inside the wheel as ``oban/_alembic``. They carry the branch label
``oban``, so an application's own Alembic environment can include them
(``version_locations = ... %(oban)s``, see :func:`version_location`) and run
``alembic upgrade oban@head``. Standalone, :func:`migrate` keeps its own
version table, ``oban_alembic_version``, so it never collides with an
application's ``alembic_version``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import sqlalchemy as sa

from .errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "OBAN_TABLES",
    "VERSION_TABLE",
    "current_revision",
    "include_object",
    "migrate",
    "rollback",
    "script_location",
    "version_location",
]

VERSION_TABLE = "oban_alembic_version"

HEAD = "oban@head"
"""The newest Oban revision, named through the branch so other branches never count."""
PREVIOUS = "oban@-1"
"""One Oban revision down from the installed one."""


def script_location() -> str:
    """Directory of Oban's Alembic environment (``env.py`` and ``versions/``)."""
    packaged = Path(__file__).parent / "_alembic"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).parent.parent / "alembic")


def version_location() -> str:
    """Directory of Oban's revisions, for an application's ``version_locations``."""
    return str(Path(script_location()) / "versions")


def _config(prefix: str | None, output: io.StringIO | None = None) -> Config:
    from alembic.config import Config

    config = Config(output_buffer=output)
    config.set_main_option("script_location", script_location())
    config.attributes["prefix"] = prefix
    config.attributes["version_table"] = VERSION_TABLE
    return config


@contextmanager
def _engine(bind: sa.Engine | str) -> Iterator[sa.Engine]:
    """``bind`` as an Engine; one made here from a URL is disposed of afterwards."""
    engine = sa.create_engine(bind) if isinstance(bind, str) else bind
    try:
        yield engine
    finally:
        if isinstance(bind, str):
            engine.dispose()


def _run(bind: sa.Engine | str, config: Config, step: Callable[[], None], what: str) -> None:
    """Run one Alembic command in a transaction of ``bind``, errors translated.

    A revision Alembic cannot find or reach is a :class:`~oban.ConfigError`
    (the caller asked for it); a failing database is a
    :class:`~oban.DatabaseError` with the driver's error attached.
    """
    from alembic.util import CommandError

    with _engine(bind) as engine:
        try:
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                step()
        except CommandError as exc:
            raise ConfigError(f"{what} failed: {exc}") from exc
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"{what} failed: {exc.orig}") from exc


@overload
def migrate(
    bind: sa.Engine | str,
    *,
    prefix: str | None = None,
    revision: str = HEAD,
    sql: Literal[False] = False,
) -> None: ...


@overload
def migrate(
    bind: sa.Engine | str, *, prefix: str | None = None, revision: str = HEAD, sql: Literal[True]
) -> str: ...


def migrate(
    bind: sa.Engine | str, *, prefix: str | None = None, revision: str = HEAD, sql: bool = False
) -> str | None:
    """Upgrade the Oban tables in ``bind``'s database to ``revision``.

    Safe to run on every start: an up-to-date database is left alone, and a
    database where Elixir Oban or oban-py already created ``oban_jobs`` is
    adopted, not recreated.

    With ``sql=True`` nothing is run and nothing connects: the SQL that would
    install the schema from scratch up to ``revision`` is returned instead
    (Alembic's offline mode), for a DBA to review or apply. Offline mode
    cannot look at the database, so that SQL always creates the tables.
    """
    from alembic import command

    if sql:
        return _offline_sql(bind, prefix, revision)
    config = _config(prefix)
    _run(bind, config, lambda: command.upgrade(config, revision), "migrating the Oban schema")
    return None


def _offline_sql(bind: sa.Engine | str, prefix: str | None, revision: str) -> str:
    from alembic.util import CommandError

    from alembic import command

    output = io.StringIO()
    config = _config(prefix, output)
    config.attributes["url"] = bind.url if isinstance(bind, sa.Engine) else sa.make_url(bind)
    try:
        command.upgrade(config, revision, sql=True)
    except CommandError as exc:
        raise ConfigError(f"writing the Oban schema's SQL failed: {exc}") from exc
    return output.getvalue()


def rollback(bind: sa.Engine | str, *, prefix: str | None = None, revision: str = PREVIOUS) -> None:
    """Downgrade the Oban tables to ``revision``: one revision down by default.

    ``revision="base"`` removes everything Oban installed, **the jobs table
    and every job in it included**; there is no undo.
    """
    from alembic import command

    config = _config(prefix)
    _run(
        bind,
        config,
        lambda: command.downgrade(config, revision),
        "rolling back the Oban schema",
    )


def current_revision(bind: sa.Engine | str, *, prefix: str | None = None) -> str | None:
    """The Oban revision installed in ``bind``'s database, None when there is none.

    Read from Oban's own version table, so what an application's Alembic
    installed for itself never shows here.
    """
    from alembic.runtime.migration import MigrationContext

    with _engine(bind) as engine:
        try:
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE, "version_table_schema": prefix}
                )
                return context.get_current_revision()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"reading the Oban schema's version failed: {exc.orig}") from exc


OBAN_TABLES = frozenset(
    {
        "oban_jobs",
        "oban_peers",
        "oban_producers",
        "oban_cron_slots",
        "oban_queue_states",
        VERSION_TABLE,
    }
)
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
