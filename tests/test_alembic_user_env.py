"""Oban's revisions inside an application's own Alembic environment (the README recipe).

The app keeps its own ``alembic.ini``, ``env.py`` and revisions; it adds
``oban.migrations.version_location()`` to ``version_locations`` and
``oban.migrations.include_object`` to ``context.configure``. Then
``alembic upgrade heads`` makes its tables and Oban's, ``alembic downgrade
oban@base`` removes only Oban's, and ``alembic revision --autogenerate``
proposes nothing about Oban's tables. Run through the real ``alembic``
command, on SQLite and on PostgreSQL (in a schema of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from oban.migrations import version_location
from tests.readme_snippets import snippet

PLACEHOLDER = "/path/to/site-packages/oban/_alembic/versions"
"""What the README's alembic.ini shows where ``version_location()``'s path goes."""

ENV_PY = (
    """
from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

metadata = sa.MetaData()
sa.Table("accounts", metadata, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("email", sa.Text, nullable=False))
sa.Table("invoices", metadata, sa.Column("id", sa.Integer, primary_key=True))

engine = sa.create_engine(os.environ["APP_DATABASE_URL"])
connection = engine.connect()
"""
    + snippet("alembic-env")  # the README's lines, as a reader pastes them
    + """
with context.begin_transaction():
    context.run_migrations()
connection.close()
engine.dispose()
"""
)

ACCOUNTS = '''
"""accounts"""
import sqlalchemy as sa
from alembic import op

revision = "app_0001"
down_revision = None
branch_labels = ("app",)
depends_on = None


def upgrade() -> None:
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("email", sa.Text, nullable=False))


def downgrade() -> None:
    op.drop_table("accounts")
'''


TEMPLATE = '''"""${message}"""
import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


@dataclass
class App:
    """An application directory with its own Alembic environment, on one database."""

    root: Path
    url: str
    bind: sa.Engine

    def alembic(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(self.root / "alembic.ini"), *args],
            cwd=self.root,
            env={**os.environ, "APP_DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    def tables(self) -> set[str]:
        return set(sa.inspect(self.bind).get_table_names())


def _write_app(root: Path) -> None:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "versions" / "app_0001_accounts.py").write_text(ACCOUNTS)
    (root / "migrations" / "script.py.mako").write_text(TEMPLATE)
    # The recipe, from the README: the app's revisions and Oban's, side by side.
    ini = snippet("alembic-ini")
    assert PLACEHOLDER in ini
    (root / "alembic.ini").write_text(ini.replace(PLACEHOLDER, version_location()))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    _write_app(tmp_path)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        bind = sa.create_engine(url)
        yield App(tmp_path, url, bind)
        bind.dispose()
        return
    base = sa.make_url(request.getfixturevalue("postgres_url"))
    schema = f"oban_app_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    # Everything the app makes lands in its own schema (first on the search path).
    in_schema = base.update_query_dict({"options": f"-csearch_path={schema}"})
    bind = sa.create_engine(in_schema)
    try:
        yield App(tmp_path, in_schema.render_as_string(hide_password=False), bind)
    finally:
        bind.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
        admin.dispose()


def test_upgrade_heads_makes_the_apps_tables_and_obans(app: App) -> None:
    app.alembic("upgrade", "heads")
    assert {"accounts", "oban_jobs", "alembic_version"} <= app.tables()
    with app.bind.connect() as conn:
        heads = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    assert heads == {"app_0001", "oban_0002"}


def test_downgrade_oban_to_base_removes_only_obans_tables(app: App) -> None:
    app.alembic("upgrade", "heads")
    app.alembic("downgrade", "oban@base")
    tables = app.tables()
    assert "oban_jobs" not in tables
    assert "accounts" in tables
    with app.bind.connect() as conn:
        heads = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    assert heads == {"app_0001"}


def test_autogenerate_proposes_nothing_about_obans_tables(app: App) -> None:
    app.alembic("upgrade", "heads")
    app.alembic(
        "revision", "--autogenerate", "-m", "invoices", "--head", "app@head", "--rev-id", "a2"
    )
    (revision,) = (app.root / "migrations" / "versions").glob("a2_*.py")
    text = revision.read_text()
    assert "create_table('invoices'" in text or 'create_table("invoices"' in text
    assert "oban" not in text.lower()
