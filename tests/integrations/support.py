"""What the integration tests share: where an example app's rows are, and counting them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import SqlDatabase


def users_table(database: SqlDatabase) -> str:
    """The examples' business table, quoted for the test's own SQL (in the test's schema)."""
    return "users" if database.prefix is None else f'"{database.prefix}".users'


def count(database: SqlDatabase, table: str) -> int:
    """Rows in ``table`` (a name the test built, not user input)."""
    with database.bind.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def sync_url(database: SqlDatabase) -> str:
    """The test database's URL, password included, for an app's own engine."""
    return database.bind.url.render_as_string(hide_password=False)


def search_path_options(database: SqlDatabase) -> dict[str, Any]:
    """Engine options putting the app's tables in the test's schema (PostgreSQL), or none.

    The examples' tables have no schema of their own; on PostgreSQL the
    ``search_path`` of the app's connections puts them in the fresh schema the
    ``database`` fixture drops after the test, next to the Oban tables.
    """
    if database.prefix is None:
        return {}
    return {"connect_args": {"options": f"-csearch_path={database.prefix}"}}
