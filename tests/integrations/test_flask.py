"""``oban.integrations.flask`` and ``examples/flask_app``, driven with Flask's test client.

The queues run in a background thread (``Oban.start``) under the instance's
backend; the commit test runs under asyncio and trio.
"""

from __future__ import annotations

import atexit
import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_app.app import create_app, db
from oban import JobState, Oban
from oban.integrations.flask import FlaskOban, get_oban
from tests.conftest import SqlDatabase, wait_for
from tests.integrations.support import count, search_path_options, sync_url, users_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_app(database: SqlDatabase) -> Iterator[Any]:
    """Build the example app on the test's database; afterwards stop its queues and
    close its pools (the app creates its Oban itself, on Flask-SQLAlchemy's engine)."""
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        options: dict[str, Any] = {"poll_interval": 0.1, **config.pop("oban_options", {})}
        if database.prefix is not None:
            options["prefix"] = database.prefix
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": sync_url(database),
                "SQLALCHEMY_ENGINE_OPTIONS": search_path_options(database),
                "TESTING": True,
                **config,
            },
            oban_options=options,
        )
        made.append(app)
        return app

    yield make
    for app in made:
        extension: FlaskOban = app.extensions["oban"]
        extension.stop(grace=0)
        extension.oban.close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def running(extension: FlaskOban) -> bool:
    """``extension.is_running``, read afresh (mypy would carry a narrowed value over)."""
    return extension.is_running


def completed(instance: Oban, job_id: int) -> bool:
    job = instance.get_job(job_id)
    return job is not None and job.state is JobState.COMPLETED


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_committed_signup_runs_its_job(
    make_app: Any, database: SqlDatabase, backend: str
) -> None:
    app = make_app(oban_options={"backend": backend})
    extension: FlaskOban = app.extensions["oban"]
    assert not running(extension)  # nothing runs before the first request
    client: FlaskClient = app.test_client()
    response = client.post("/signup", json={"email": "ada@example.com"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert running(extension)
    job_id = response.get_json()["job_id"]
    wait_for(lambda: completed(extension.oban, job_id), message=f"job {job_id} completed")
    assert count(database, users_table(database)) == 1


def test_a_failed_signup_leaves_no_user_and_no_job(make_app: Any, database: SqlDatabase) -> None:
    app = make_app()
    response = app.test_client().post("/signup-then-fail", json={"email": "bob@example.com"})
    assert response.status_code == 503
    assert count(database, users_table(database)) == 0
    assert count(database, database.jobs_table) == 0


def test_run_queues_false_only_enqueues(make_app: Any) -> None:
    app = make_app(OBAN_RUN_QUEUES=False)
    response = app.test_client().post("/signup", json={"email": "eve@example.com"})
    assert response.status_code == 201
    extension: FlaskOban = app.extensions["oban"]
    assert not running(extension)
    job = extension.oban.get_job(response.get_json()["job_id"])
    assert job is not None
    assert job.state is JobState.AVAILABLE  # committed, waiting for a worker process


def test_stop_ends_the_queues_and_the_exit_hook_and_is_idempotent(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks: list[object] = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    app = make_app()
    extension: FlaskOban = app.extensions["oban"]
    extension.start()
    extension.start()  # already running: nothing more
    assert running(extension)
    assert hooks == [extension._stop_at_exit]
    extension.stop(grace=0)
    extension.stop(grace=0)
    assert not running(extension)
    assert hooks == []  # a stopped extension is not kept alive by the exit hooks
    app.test_client().post("/signup", json={"email": "joe@example.com"})
    assert running(extension)  # the first request starts it (start() was explicit)


def test_init_app_registers_once_and_get_oban_finds_it() -> None:
    oban = Oban(testing="inline")
    extension = FlaskOban(oban, run_queues=False)
    app = Flask(__name__)
    with pytest.raises(RuntimeError, match="no Oban extension"):
        get_oban(app)
    extension.init_app(app)
    extension.init_app(app)  # the same extension again is harmless
    assert app.extensions["oban"] is extension
    with app.app_context():
        assert get_oban() is oban
    with pytest.raises(RuntimeError, match="already has an Oban extension"):
        FlaskOban(Oban(testing="inline"), app)


def test_a_process_that_never_stops_the_queues_exits_cleanly(sqlite_url: str) -> None:
    """The atexit hook stops the runtime: the process ends, and its job was processed."""
    script = textwrap.dedent(
        f"""
        import sqlalchemy as sa
        from examples.flask_app.app import create_app
        app = create_app({{"SQLALCHEMY_DATABASE_URI": {sqlite_url!r}}},
                         oban_options={{"poll_interval": 0.05}})
        response = app.test_client().post("/signup", json={{"email": "exit@example.com"}})
        assert response.status_code == 201, response.get_data(as_text=True)
        print(response.get_json()["job_id"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.strip())
    instance = Oban(sqlite_url)
    try:
        job = instance.get_job(job_id)
    finally:
        instance.close()
    assert job is not None
    # Either it ran before the exit, or the graceful stop put it back: never stuck executing.
    assert job.state in (JobState.COMPLETED, JobState.AVAILABLE), job.state


def test_without_flask_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)  # None in sys.modules: ImportError
    monkeypatch.delitem(sys.modules, "oban.integrations.flask")
    with pytest.raises(ImportError, match=r"pip install 'oban\[flask\]'"):
        importlib.import_module("oban.integrations.flask")
