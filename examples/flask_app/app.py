"""Signups with Flask and Flask-SQLAlchemy: the user row and its welcome job commit together.

Run it from the repository root (SQLite file ``signup.db`` in the current directory)::

    flask --app examples.flask_app.app run

``DATABASE_URL`` picks the database: ``sqlite:///signup.db`` (default, a path
relative to the current directory) or ``postgresql+psycopg://user@host/db``.
Oban uses Flask-SQLAlchemy's own engine (``Oban(db.engine)``), so the jobs are
in the same database as the app's rows by construction, on one pool.

``POST /signup {"email": ...}`` writes a user and enqueues ``SendWelcome`` in
``db.session``'s transaction; ``POST /signup-then-fail`` does the same and then
fails, and the rollback leaves neither the user nor the job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, abort, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from oban import Job, Oban, Worker, worker
from oban.integrations.flask import FlaskOban, get_oban

log = logging.getLogger(__name__)

# ``conn=db.session``: Oban joins the session of the current app context.


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model):  # type: ignore[name-defined,misc] # db.Model is built at run time
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)


@worker(queue="mailers", max_attempts=5)
class SendWelcome(Worker):
    """Sends the welcome mail (here: logs it). Runs only if the signup committed."""

    def process(self, job: Job) -> None:
        log.info("welcome mail to user %s <%s>", job.args["user_id"], job.args["email"])


def default_database_url() -> str:
    # Absolute: Flask-SQLAlchemy would put a relative SQLite path in the
    # instance folder, so spell out the file meant.
    return os.environ.get("DATABASE_URL") or f"sqlite:///{Path.cwd() / 'signup.db'}"


def create_app(
    config: Mapping[str, Any] | None = None, *, oban_options: Mapping[str, Any] | None = None
) -> Flask:
    """The app; ``config`` overrides Flask settings, ``oban_options`` go to ``Oban(...)``.

    ``OBAN_RUN_QUEUES = False`` in ``config`` only enqueues here, for when a
    separate worker process runs the queues.
    """
    app = Flask(__name__)
    app.config.from_mapping(SQLALCHEMY_DATABASE_URI=default_database_url(), OBAN_RUN_QUEUES=True)
    app.config.from_mapping(config or {})
    db.init_app(app)
    with app.app_context():
        db.create_all()
        oban = Oban(db.engine, **{"queues": {"default": 10, "mailers": 5}, **(oban_options or {})})
        oban.migrate()
    FlaskOban(oban, app, run_queues=app.config["OBAN_RUN_QUEUES"])

    @app.post("/signup")
    def signup() -> tuple[dict[str, int | None], int]:
        email = str(request.get_json()["email"])
        user = User(email=email)
        db.session.add(user)
        db.session.flush()  # the user's id, for the job's args
        welcome = SendWelcome.new({"user_id": user.id, "email": email})
        job = get_oban().enqueue(welcome, conn=db.session)
        db.session.commit()  # the user and the job, together
        return {"user_id": user.id, "job_id": job.id}, 201

    @app.post("/signup-then-fail")
    def signup_then_fail() -> dict[str, Any]:
        email = str(request.get_json()["email"])
        user = User(email=email)
        db.session.add(user)
        db.session.flush()
        welcome = SendWelcome.new({"user_id": user.id, "email": email})
        get_oban().enqueue(welcome, conn=db.session)
        # Failing before the commit: Flask-SQLAlchemy removes the session at
        # the end of the request, which rolls back the user and the job.
        abort(503, "payment provider unavailable")

    return app
