"""``oban.integrations.fastapi`` and ``examples/fastapi_app``, driven over HTTP.

The example app's routes use an ``AsyncSession``: SQLAlchemy's asyncio
extension runs on asyncio only, so those requests go through Starlette's
``TestClient`` on asyncio (its default). The lifespan itself (start and stop
in the app's loop, composition with the app's own lifespan) is run under
asyncio and trio.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from examples.fastapi_app.app import create_app
from oban import JobState, Oban
from oban.integrations.fastapi import ObanDep, get_oban, oban_lifespan
from tests.conftest import SqlDatabase, wait_for
from tests.integrations.support import count, search_path_options, users_table
from tests.postgres.workers import SEEN, Note

QUEUES = {"default": 5, "mailers": 5}


def async_url(database: SqlDatabase) -> str:
    """The same database through an async driver: aiosqlite, or psycopg 3 (both modes)."""
    url = database.bind.url
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def example(database: SqlDatabase) -> Iterator[tuple[TestClient, Oban]]:
    """The example app on the test's database, its lifespan running (Oban started)."""
    instance = database.make_oban(queues=QUEUES, poll_interval=0.1)
    app = create_app(
        async_url(database), oban=instance, engine_options=search_path_options(database)
    )
    with TestClient(app) as client:
        yield client, instance
    assert not instance.is_running  # the lifespan stopped it


def completed(instance: Oban, job_id: int) -> bool:
    job = instance.get_job(job_id)
    return job is not None and job.state is JobState.COMPLETED


def test_a_committed_signup_runs_its_job(
    example: tuple[TestClient, Oban], database: SqlDatabase
) -> None:
    client, instance = example
    assert instance.is_running
    response = client.post("/signup", json={"email": "ada@example.com"})
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    wait_for(lambda: completed(instance, job_id), message=f"job {job_id} completed")
    assert count(database, users_table(database)) == 1


def test_a_failed_signup_leaves_no_user_and_no_job(
    example: tuple[TestClient, Oban], database: SqlDatabase
) -> None:
    client, _ = example
    response = client.post("/signup-then-fail", json={"email": "bob@example.com"})
    assert response.status_code == 503
    assert count(database, users_table(database)) == 0
    assert count(database, database.jobs_table) == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_lifespan_runs_oban_inside_the_apps_own(database: SqlDatabase, backend: str) -> None:
    instance = database.make_oban(queues=QUEUES, poll_interval=0.1)
    events: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        events.append(f"app up, oban running: {instance.is_running}")
        yield {"greeting": "hello"}
        events.append(f"app down, oban running: {instance.is_running}")

    app = FastAPI(lifespan=oban_lifespan(instance, lifespan=own))

    @app.post("/note")
    async def note(request: Request, oban: ObanDep) -> dict[str, Any]:
        job = await oban.enqueue_async(Note.new({"n": 1}))
        return {"job_id": job.id, "greeting": request.state.greeting, "same": oban is instance}

    with TestClient(app, backend=backend) as client:  # type: ignore[arg-type] # a str param
        events.append(f"serving, oban running: {instance.is_running}")
        body = client.post("/note").json()
        wait_for(lambda: SEEN.has(body["job_id"]), message="the job ran in the app's loop")
    assert body["greeting"] == "hello"  # the app's lifespan state is passed through
    assert body["same"] is True
    assert events == [
        "app up, oban running: False",
        "serving, oban running: True",
        "app down, oban running: False",  # Oban stopped before the app's resources go
    ]


def test_run_queues_false_only_enqueues(database: SqlDatabase) -> None:
    instance = database.make_oban(queues=QUEUES)
    app = FastAPI(lifespan=oban_lifespan(instance, run_queues=False))

    @app.post("/note")
    async def note(oban: ObanDep) -> dict[str, Any]:
        return {"job_id": (await oban.enqueue_async(Note.new({"n": 2}))).id}

    with TestClient(app) as client:
        job_id = client.post("/note").json()["job_id"]
        assert not instance.is_running
    job = instance.get_job(job_id)
    assert job is not None
    assert job.state is JobState.AVAILABLE


def test_get_oban_without_the_lifespan_says_how_to_set_it_up() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(request: Request) -> None:
        get_oban(request)

    with pytest.raises(RuntimeError, match=r"lifespan=oban_lifespan\(oban\)"):
        TestClient(app).get("/")


def test_without_fastapi_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # None in sys.modules: ImportError
    monkeypatch.delitem(sys.modules, "oban.integrations.fastapi")
    with pytest.raises(ImportError, match=r"pip install 'oban\[fastapi\]'"):
        importlib.import_module("oban.integrations.fastapi")
