"""Signups with FastAPI: the user row and its welcome job commit together, or neither does.

Run it from the repository root (SQLite file ``signup.db`` in the current directory)::

    uvicorn examples.fastapi_app.app:create_app --factory

Two URLs name the same database, because the app and Oban use different drivers:

* ``APP_DATABASE_URL``, for the app's ``create_async_engine`` / ``AsyncSession``:
  ``sqlite+aiosqlite:///signup.db`` (default) or ``postgresql+psycopg://user@host/db``;
* ``OBAN_DATABASE_URL``, for ``Oban(...)``, which takes a *sync* URL:
  ``sqlite:///signup.db`` (default) or ``postgresql+psycopg://user@host/db``
  (psycopg 3 speaks both, so on PostgreSQL the two URLs are the same).

``POST /signup {"email": ...}`` writes a user and enqueues ``SendWelcome`` in one
transaction; ``POST /signup-then-fail`` does the same, then fails, and the
rollback leaves neither the user nor the job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from oban import Job, Oban, Worker, worker
from oban.integrations.fastapi import ObanDep, oban_lifespan

log = logging.getLogger(__name__)

APP_DATABASE_URL = "sqlite+aiosqlite:///signup.db"
OBAN_DATABASE_URL = "sqlite:///signup.db"

metadata = sa.MetaData()
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
)


@worker(queue="mailers", max_attempts=5)
class SendWelcome(Worker):
    """Sends the welcome mail (here: logs it). Runs only if the signup committed."""

    def process(self, job: Job) -> None:
        log.info("welcome mail to user %s <%s>", job.args["user_id"], job.args["email"])


class Signup(BaseModel):
    email: str


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One AsyncSession per request; the route opens (and commits) its transaction.

    The commit is in the route, not after this ``yield``: FastAPI versions
    differ on whether a dependency's exit code runs before or after the
    response is sent, and a client told "created" must find the row.
    """
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def _insert_user(session: AsyncSession, email: str) -> int:
    inserted = sa.insert(users).values(email=email).returning(users.c.id)
    return int((await session.execute(inserted)).scalar_one())


def create_app(
    app_url: str | None = None,
    *,
    oban: Oban | None = None,
    engine_options: dict[str, Any] | None = None,
) -> FastAPI:
    """The app on ``app_url`` (async driver), with ``oban`` on the same database.

    Defaults come from the environment (see the module docstring). Tests pass
    their own ``oban`` and ``engine_options`` (a PostgreSQL ``search_path``).
    """
    url = app_url or os.environ.get("APP_DATABASE_URL", APP_DATABASE_URL)
    if oban is None:
        oban_url = os.environ.get("OBAN_DATABASE_URL", OBAN_DATABASE_URL)
        oban = Oban(oban_url, queues={"default": 10, "mailers": 5})
    instance = oban

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The app's own resources: they live longer than any job (Oban runs inside)."""
        bind = create_async_engine(url, **(engine_options or {}))
        async with bind.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await anyio.to_thread.run_sync(instance.migrate)  # Oban's tables, idempotent
        app.state.sessions = async_sessionmaker(bind, expire_on_commit=False)
        try:
            yield
        finally:
            await bind.dispose()

    app = FastAPI(lifespan=oban_lifespan(instance, lifespan=lifespan))

    @app.post("/signup", status_code=201)
    async def signup(body: Signup, session: SessionDep, oban: ObanDep) -> dict[str, int | None]:
        async with session.begin():  # commits when the block ends, rolls back on an error
            user_id = await _insert_user(session, body.email)
            job = SendWelcome.new({"user_id": user_id, "email": body.email})
            saved = await oban.enqueue_async(job, conn=session)
        return {"user_id": user_id, "job_id": saved.id}

    @app.post("/signup-then-fail")
    async def signup_then_fail(body: Signup, session: SessionDep, oban: ObanDep) -> None:
        async with session.begin():
            user_id = await _insert_user(session, body.email)
            await oban.enqueue_async(
                SendWelcome.new({"user_id": user_id, "email": body.email}), conn=session
            )
            # Anything failing before the commit (here on purpose) rolls back both rows.
            raise HTTPException(status_code=503, detail="payment provider unavailable")

    return app
