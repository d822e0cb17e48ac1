"""A new user's path from the README, end to end: install (this environment),
``oban migrate``, enqueue from a web route inside the request's transaction,
run ``oban start`` as the worker process, and see the job in ``oban jobs``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from oban import JobState, Oban
from tests.cli.support import ok, serving
from tests.conftest import wait_for


def _state(url: str, job_id: int) -> JobState | None:
    reader = Oban(url, testing="manual", name="reader")
    try:
        job = reader.get_job(job_id)
        return None if job is None else job.state
    finally:
        reader.close()


def test_migrate_enqueue_from_a_route_run_a_worker_process_and_list_the_job(
    tmp_path: Path,
) -> None:
    from examples.flask_app.app import create_app, db

    url = f"sqlite:///{tmp_path / 'signup.db'}"
    assert "migrated" in ok("migrate", "-d", url, cwd=tmp_path)

    # The web process only enqueues; the worker process below runs the queues.
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "OBAN_RUN_QUEUES": False})
    try:
        response = app.test_client().post("/signup", json={"email": "ada@example.com"})
        assert response.status_code == 201
        job_id = int(response.get_json()["job_id"])
        assert _state(url, job_id) is JobState.AVAILABLE
    finally:
        app.extensions["oban"].oban.close()
        with app.app_context():
            for engine in db.engines.values():  # Flask-SQLAlchemy's pool, closed now
                engine.dispose()

    worker = ["-d", url, "--queues", "mailers:2", "--import", "examples.flask_app.app"]
    with serving(*worker, cwd=tmp_path) as server:
        server.wait_line("oban started")
        wait_for(lambda: _state(url, job_id) is JobState.COMPLETED, message="the job ran")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr()

    listed = [
        json.loads(line) for line in ok("jobs", "-d", url, "--json", cwd=tmp_path).splitlines()
    ]
    (row,) = [row for row in listed if row["id"] == job_id]
    assert row["state"] == "completed"
    assert row["worker"] == "examples.flask_app.app.SendWelcome"
    assert row["args"] == {"user_id": 1, "email": "ada@example.com"}
