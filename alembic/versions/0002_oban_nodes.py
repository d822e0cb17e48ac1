"""Tables for running many nodes: leadership, producer heartbeats, cron slots, queue state.

* ``oban_peers``: the leader lease, in Elixir Oban's shape (name, node,
  started_at, expires_at), so a database shared with Elixir Oban keeps one
  leader per name across both.
* ``oban_producers``: one heartbeat row per running queue per node, in the
  shape oban-py and Oban Pro use (uuid, name, node, queue, meta, started_at,
  updated_at), so an oban-py lifeline sharing the database sees our live
  producers and never rescues our running jobs.
* ``oban_cron_slots``: one row per cron entry and slot time; its primary key
  is what makes each slot's job inserted once, whichever node leads.
* ``oban_queue_states``: cluster-wide pause and limit of a queue, so a node
  that starts later learns them (a pause is state, not only a message).

A table a peer already created is adopted as it is. ``downgrade`` removes
the tables this revision created.

Revision ID: oban_0002
Revises: oban_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision = "oban_0002"
down_revision = "oban_0001"
branch_labels = None
depends_on = None

TABLES = ("oban_peers", "oban_producers", "oban_cron_slots", "oban_queue_states")


def _exists(name: str, prefix: str | None) -> bool:
    if context.is_offline_mode():
        return False
    return bool(sa.inspect(op.get_bind()).has_table(name, schema=prefix))


def upgrade(prefix: str | None = None) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    now = sa.text(
        "timezone('UTC', now())" if postgres else "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"
    )
    json = postgresql.JSONB().with_variant(sa.Text(), "sqlite")
    stamp = sa.DateTime(timezone=False)
    # Leases and heartbeats are rewritten every few seconds and worthless after
    # a crash of the server: unlogged on PostgreSQL, as Elixir Oban does.
    unlogged: dict[str, Any] = {"prefixes": ["UNLOGGED"]} if postgres else {}
    if not _exists("oban_peers", prefix):
        op.create_table(
            "oban_peers",
            sa.Column("name", sa.Text(), primary_key=True),
            sa.Column("node", sa.Text(), nullable=False),
            sa.Column("started_at", stamp, nullable=False),
            sa.Column("expires_at", stamp, nullable=False),
            schema=prefix,
            **unlogged,
        )
    if not _exists("oban_producers", prefix):
        op.create_table(
            "oban_producers",
            sa.Column(
                "uuid", postgresql.UUID().with_variant(sa.Text(), "sqlite"), primary_key=True
            ),
            sa.Column("name", sa.Text(), nullable=False, server_default="oban"),
            sa.Column("node", sa.Text(), nullable=False),
            sa.Column("queue", sa.Text(), nullable=False),
            sa.Column("meta", json, nullable=False, server_default="{}"),
            sa.Column("started_at", stamp, nullable=False, server_default=now),
            sa.Column("updated_at", stamp, nullable=False, server_default=now),
            schema=prefix,
            **unlogged,
        )
    if not _exists("oban_cron_slots", prefix):
        op.create_table(
            "oban_cron_slots",
            sa.Column("name", sa.Text(), primary_key=True),
            sa.Column("entry", sa.Text(), primary_key=True),
            sa.Column("slot_at", stamp, primary_key=True),
            sa.Column("job_id", sa.BigInteger()),
            sa.Column("inserted_at", stamp, nullable=False, server_default=now),
            schema=prefix,
        )
    if not _exists("oban_queue_states", prefix):
        op.create_table(
            "oban_queue_states",
            sa.Column("name", sa.Text(), primary_key=True),
            sa.Column("queue", sa.Text(), primary_key=True),
            sa.Column("paused", sa.Boolean()),
            sa.Column("local_limit", sa.Integer()),
            sa.Column("active", sa.Boolean()),
            sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
            sa.Column("updated_at", stamp, nullable=False, server_default=now),
            schema=prefix,
        )


def downgrade(prefix: str | None = None) -> None:
    for name in reversed(TABLES):
        op.drop_table(name, schema=prefix)
