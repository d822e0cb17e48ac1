"""Create oban_jobs (adopting one Elixir Oban or oban-py already made).

Revision ID: oban_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision = "oban_0001"
down_revision = None
branch_labels = ("oban",)
depends_on = None

STATES = (
    "available",
    "scheduled",
    "suspended",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)


def _json() -> sa.types.TypeEngine[object]:
    return postgresql.JSONB().with_variant(sa.Text(), "sqlite")


def _text_array() -> sa.types.TypeEngine[object]:
    return postgresql.ARRAY(sa.Text()).with_variant(sa.Text(), "sqlite")


def _add_suspended_state(bind: sa.Connection, prefix: str | None) -> None:
    """Give an adopted ``oban_job_state`` the ``suspended`` label it may lack.

    Elixir Oban added it in its migration v14 (``BEFORE 'scheduled'``) the same
    way, so a table shared with an older Elixir Oban is changed only as its
    own next migration would change it.
    """
    missing = bind.execute(
        sa.text(
            "SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.typname = 'oban_job_state' "
            "AND n.nspname = COALESCE(:schema, current_schema()) "
            "AND NOT EXISTS (SELECT 1 FROM pg_enum e WHERE e.enumtypid = t.oid "
            "AND e.enumlabel = 'suspended')"
        ),
        {"schema": prefix},
    ).first()
    if missing is None:
        return
    preparer = bind.dialect.identifier_preparer
    schema = preparer.quote_schema(prefix) + "." if prefix else ""
    op.execute(
        f"ALTER TYPE {schema}oban_job_state ADD VALUE IF NOT EXISTS 'suspended' BEFORE 'scheduled'"
    )


def upgrade(prefix: str | None = None) -> None:
    bind = op.get_bind()
    # Offline (``oban migrate --sql``) there is no database to look at: the
    # SQL written is the install on an empty database, with no adoption.
    offline = context.is_offline_mode()
    if not offline and sa.inspect(bind).has_table("oban_jobs", schema=prefix):
        # Made by Elixir Oban, oban-py or an earlier install: adopt it as it is.
        # Its column types stay the peer's (the Basic engine adapts to them);
        # converting them would break the peer that shares the table.
        if bind.dialect.name == "postgresql":
            _add_suspended_state(bind, prefix)
        return
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        if prefix:
            op.execute(sa.schema.CreateSchema(prefix, if_not_exists=True))
        postgresql.ENUM(*STATES, name="oban_job_state", schema=prefix).create(
            bind, checkfirst=not offline
        )
        state_type: sa.types.TypeEngine[object] = postgresql.ENUM(
            *STATES, name="oban_job_state", schema=prefix, create_type=False
        )
        now = sa.text("timezone('UTC', now())")
        empty_array = sa.text("ARRAY[]::text[]")
    else:
        state_type = sa.Text()
        now = sa.text("(strftime('%Y-%m-%d %H:%M:%f', 'now'))")
        empty_array = sa.text("'[]'")
    op.create_table(
        "oban_jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            *([sa.Identity(always=False)] if postgres else []),
            primary_key=True,
        ),
        sa.Column("state", state_type, nullable=False, server_default="available"),
        sa.Column("queue", sa.Text(), nullable=False, server_default="default"),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("attempt", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False, server_default="20"),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("args", _json(), nullable=False, server_default="{}"),
        sa.Column("meta", _json(), nullable=False, server_default="{}"),
        sa.Column("tags", _text_array(), nullable=False, server_default=empty_array),
        sa.Column("errors", _json(), nullable=False, server_default="[]"),
        sa.Column("attempted_by", _text_array(), nullable=False, server_default=empty_array),
        sa.Column("inserted_at", sa.DateTime(timezone=False), nullable=False, server_default=now),
        sa.Column("scheduled_at", sa.DateTime(timezone=False), nullable=False, server_default=now),
        sa.Column("attempted_at", sa.DateTime(timezone=False)),
        sa.Column("cancelled_at", sa.DateTime(timezone=False)),
        sa.Column("completed_at", sa.DateTime(timezone=False)),
        sa.Column("discarded_at", sa.DateTime(timezone=False)),
        sa.CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempt_range"),
        sa.CheckConstraint(
            "char_length(queue) > 0" if postgres else "length(queue) > 0", name="queue_length"
        ),
        sa.CheckConstraint(
            "char_length(worker) > 0" if postgres else "length(worker) > 0", name="worker_length"
        ),
        sa.CheckConstraint("max_attempts > 0", name="positive_max_attempts"),
        sa.CheckConstraint("priority >= 0", name="non_negative_priority"),
        schema=prefix,
    )
    op.create_index(
        "oban_jobs_state_queue_priority_scheduled_at_id_index",
        "oban_jobs",
        ["state", "queue", "priority", "scheduled_at", "id"],
        schema=prefix,
    )
    live = sa.text("state IN ('scheduled', 'retryable')")
    op.create_index(
        "oban_jobs_staging_index",
        "oban_jobs",
        ["scheduled_at", "id"],
        schema=prefix,
        postgresql_where=live,
        sqlite_where=live,
    )
    for state, column in (
        ("completed", "completed_at"),
        ("cancelled", "cancelled_at"),
        ("discarded", "discarded_at"),
    ):
        where = sa.text(f"state = '{state}'")
        op.create_index(
            f"oban_jobs_{column}_index",
            "oban_jobs",
            [column],
            schema=prefix,
            postgresql_where=where,
            sqlite_where=where,
        )
    if postgres:
        op.create_index(
            "oban_jobs_args_index", "oban_jobs", ["args"], schema=prefix, postgresql_using="gin"
        )
        op.create_index(
            "oban_jobs_meta_index", "oban_jobs", ["meta"], schema=prefix, postgresql_using="gin"
        )


def downgrade(prefix: str | None = None) -> None:
    op.drop_table("oban_jobs", schema=prefix)
    if op.get_bind().dialect.name == "postgresql":
        postgresql.ENUM(name="oban_job_state", schema=prefix).drop(
            op.get_bind(), checkfirst=not context.is_offline_mode()
        )
