"""Oban's Alembic environment.

Used by ``oban.migrate()`` (which hands over a connection, or, for
``sql=True``, a URL to write SQL for in Alembic's offline mode), and by
``alembic -c alembic.ini upgrade oban@head`` with ``OBAN_DATABASE_URL`` set.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

config = context.config


def run(connection: sa.Connection) -> None:
    prefix = config.attributes.get("prefix")
    version_table = config.attributes.get("version_table", "oban_alembic_version")
    if prefix and connection.dialect.name == "postgresql":
        # The version table lives in the prefix schema, so the schema must exist
        # before Alembic creates that table (before any revision runs).
        connection.execute(sa.schema.CreateSchema(prefix, if_not_exists=True))
    context.configure(
        connection=connection,
        version_table=version_table,
        version_table_schema=prefix,
        target_metadata=None,
    )
    with context.begin_transaction():
        context.run_migrations(prefix=prefix)


def run_offline(url: sa.URL) -> None:
    """Write the SQL instead of running it: no connection, literal values inline."""
    prefix = config.attributes.get("prefix")
    context.configure(
        url=url,
        version_table=config.attributes.get("version_table", "oban_alembic_version"),
        version_table_schema=prefix,
        target_metadata=None,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        if prefix and url.get_backend_name() == "postgresql":
            # As in run(): the version table, written first, lives in the schema.
            context.execute(sa.schema.CreateSchema(prefix, if_not_exists=True))
        context.run_migrations(prefix=prefix)


connection = config.attributes.get("connection")
if context.is_offline_mode():
    offline_url = config.attributes.get("url") or os.environ.get("OBAN_DATABASE_URL")
    if not offline_url:
        raise SystemExit("set OBAN_DATABASE_URL to the database to write SQL for")
    run_offline(sa.make_url(offline_url))
elif connection is not None:
    run(connection)
else:
    url = os.environ.get("OBAN_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set OBAN_DATABASE_URL to the database to migrate")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
