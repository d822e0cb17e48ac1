"""SQLAlchemy Core tables, with types that speak each dialect.

On PostgreSQL ``oban_jobs`` has the column types Elixir Oban and oban-py use
(``oban_job_state`` enum, ``jsonb``, ``text[]``, ``timestamp without time
zone`` holding UTC). On SQLite the same columns hold JSON as TEXT and
timestamps as ISO text, which sorts correctly. Python code always sees aware
UTC datetimes, dicts and lists, whatever the dialect.

A JSON column whose stored text is not JSON (written by hand or by another
program) reads as an :class:`Undecodable` instead of raising: a decode error
raised inside SQLAlchemy's result processing would abort the whole statement
half way through its rows, so one bad row would fail every read (and every
fetch) that meets it. The engines turn the marker into a per-row decision.

Tables are defined without a schema; a ``prefix`` is applied per connection
with SQLAlchemy's ``schema_translate_map``, so one definition serves every
prefix.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from .job import JobState

__all__ = [
    "JOB_STATE",
    "Json",
    "TextArray",
    "Undecodable",
    "UtcDateTime",
    "Uuid",
    "metadata",
    "oban_cron_slots",
    "oban_jobs",
    "oban_peers",
    "oban_producers",
    "oban_queue_states",
]


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC ``timestamp`` in the database."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Undecodable:
    """What a JSON column read as when its stored text is not JSON: the text and why.

    Never equal to a dict or a list, so a shape check on the decoded row
    catches it along with JSON of the wrong kind.
    """

    __slots__ = ("reason", "stored")

    def __init__(self, stored: str | bytes, reason: str) -> None:
        self.stored = stored
        self.reason = reason

    def __repr__(self) -> str:
        return f"Undecodable({self.stored!r}, {self.reason!r})"


class Json(sa.TypeDecorator[Any]):
    """``jsonb`` on PostgreSQL, orjson-encoded TEXT elsewhere.

    The TEXT form has its object keys sorted, so equal documents are equal
    strings: unique jobs compare args/meta on SQLite with a plain ``=``.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql" or value is None:
            return value
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, (str, bytes)) and dialect.name != "postgresql":
            # The try is free on the common path; this runs for every value read.
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                return Undecodable(value, f"not JSON ({exc})")
        return value


class TextArray(sa.TypeDecorator[list[str]]):
    """``text[]`` on PostgreSQL, a JSON array as TEXT elsewhere.

    Reads give what is stored, decoded: a list unless the row was written by
    something else (an :class:`Undecodable`, or JSON of another kind, which
    the engines check for before building a job).
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Text()))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if dialect.name == "postgresql" or value is None:
            return value
        return orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, (str, bytes)):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                return Undecodable(value, f"not JSON ({exc})")
        return value


class Uuid(sa.TypeDecorator[str]):
    """A UUID as text in Python; ``uuid`` on PostgreSQL, TEXT elsewhere."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        return dialect.type_descriptor(sa.Text())

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


JOB_STATE = sa.Enum(
    JobState,
    name="oban_job_state",
    values_callable=lambda states: [state.value for state in states],
    create_constraint=False,
    validate_strings=True,
)

metadata = sa.MetaData()

_utc_now = sa.text("CURRENT_TIMESTAMP")

oban_jobs = sa.Table(
    "oban_jobs",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.Identity(always=False),
        primary_key=True,
    ),
    sa.Column("state", JOB_STATE, nullable=False, server_default="available"),
    sa.Column("queue", sa.Text, nullable=False, server_default="default"),
    sa.Column("worker", sa.Text, nullable=False),
    sa.Column("attempt", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.SmallInteger, nullable=False, server_default="20"),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("args", Json, nullable=False, server_default="{}"),
    sa.Column("meta", Json, nullable=False, server_default="{}"),
    sa.Column("tags", TextArray, nullable=False, server_default="[]"),
    sa.Column("errors", Json, nullable=False, server_default="[]"),
    sa.Column("attempted_by", TextArray, nullable=False, server_default="[]"),
    sa.Column("inserted_at", UtcDateTime, nullable=False, server_default=_utc_now),
    sa.Column("scheduled_at", UtcDateTime, nullable=False, server_default=_utc_now),
    sa.Column("attempted_at", UtcDateTime),
    sa.Column("cancelled_at", UtcDateTime),
    sa.Column("completed_at", UtcDateTime),
    sa.Column("discarded_at", UtcDateTime),
    sa.CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempt_range"),
    sa.CheckConstraint("length(queue) > 0", name="queue_length"),
    sa.CheckConstraint("length(worker) > 0", name="worker_length"),
    sa.CheckConstraint("max_attempts > 0", name="positive_max_attempts"),
    sa.CheckConstraint("priority >= 0", name="non_negative_priority"),
    sa.Index(
        "oban_jobs_state_queue_priority_scheduled_at_id_index",
        "state",
        "queue",
        "priority",
        "scheduled_at",
        "id",
    ),
    sa.Index(
        "oban_jobs_staging_index",
        "scheduled_at",
        "id",
        sqlite_where=sa.text("state IN ('scheduled', 'retryable')"),
        postgresql_where=sa.text("state IN ('scheduled', 'retryable')"),
    ),
)
"""The jobs table. The Alembic revisions create it; this describes it to queries."""

oban_peers = sa.Table(
    "oban_peers",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)
"""The leader lease, one row per Oban name (Elixir Oban's shape)."""

oban_producers = sa.Table(
    "oban_producers",
    metadata,
    sa.Column("uuid", Uuid, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("meta", Json, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
"""Heartbeats: one row per running queue per node (oban-py's and Oban Pro's shape).

``uuid`` is the producer's id, the second entry of ``attempted_by`` of the
jobs it runs; ``meta`` holds ``local_limit``, ``paused``, ``running`` (job
ids) and ``instance`` (the id of this start of the Oban instance).
"""

oban_cron_slots = sa.Table(
    "oban_cron_slots",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("entry", sa.Text, primary_key=True),
    sa.Column("slot_at", UtcDateTime, primary_key=True),
    sa.Column("job_id", sa.BigInteger),
    sa.Column("inserted_at", UtcDateTime, nullable=False),
)
"""One row per cron entry and slot: the key that makes each slot's job inserted once."""

oban_queue_states = sa.Table(
    "oban_queue_states",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("queue", sa.Text, primary_key=True),
    sa.Column("paused", sa.Boolean),
    sa.Column("local_limit", sa.Integer),
    sa.Column("active", sa.Boolean),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
"""Cluster-wide pause and limit of a queue, read by every node (also those started
later), and its last cluster-wide start or stop (``active``), which only nodes
running at the time act on."""
