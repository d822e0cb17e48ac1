"""The README's code, run as a reader would run it, so no snippet can rot.

Every fenced block of README.md carries a ``<!-- snippet: NAME -->`` marker
(``tests/readme_snippets.py``); each name is run by a test here or next to
the feature it shows (``tests/test_alembic_user_env.py`` builds its app from
the two Alembic blocks). Python blocks are executed as written, in a
temporary directory, with only what the reader's app would supply (a
``send_mail``, a ``myapp`` package); shell blocks are run line by line
through the installed ``oban`` script.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from oban import JobState, Oban
from tests.cli.support import ROOT, ok, serving
from tests.conftest import wait_for
from tests.readme_snippets import snippet, snippets

TESTS = Path(__file__).resolve().parent


def run_block(name: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute the README's block ``name`` in ``namespace`` (as a module would)."""
    namespace.setdefault("__name__", f"readme_{name.replace('-', '_')}")
    exec(compile(snippet(name), f"README.md <{name}>", "exec"), namespace)
    return namespace


def test_every_block_is_marked_once_and_run_by_a_test() -> None:
    blocks = snippets()
    unmarked = [block.line for block in blocks if block.name is None]
    assert not unmarked, f"README.md blocks without a <!-- snippet: NAME --> line: {unmarked}"
    names = [str(block.name) for block in blocks]
    assert len(names) == len(set(names)), f"a snippet name is used twice: {names}"
    this = Path(__file__).resolve()
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for path in TESTS.rglob("*.py")
        if path.name != "readme_snippets.py" and path.resolve() != this
    ) + this.read_text(encoding="utf-8")
    unrun = [name for name in names if f'"{name}"' not in sources]
    assert not unrun, f"README snippets no test runs: {unrun}"


# -- Quick start ------------------------------------------------------------------------------


def test_the_demo_command_installs_the_cli_extra_and_runs_the_demo(tmp_path: Path) -> None:
    steps = [step.strip() for step in snippet("quick-start-demo").strip().split("&&")]
    assert steps[0] == "python3 -m venv .venv"
    assert steps[1].startswith(".venv/bin/pip install")
    assert "-e '.[cli]'" in steps[1]
    interpreter, *arguments = shlex.split(steps[2])
    assert interpreter == ".venv/bin/python"
    # This environment stands for the fresh .venv (installing one is the CI's job).
    done = subprocess.run(
        [sys.executable, *arguments, str(tmp_path / "demo.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "completed:" in done.stdout
    assert "retried" in done.stdout or "ConnectionError" in done.stdout
    assert "WARNING" not in done.stderr, done.stderr


def test_the_test_command_is_what_ci_runs() -> None:
    command = snippet("quick-start-tests").strip()
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


# -- Using it ---------------------------------------------------------------------------------


def using_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent: list[object]) -> Oban:
    """The "Using it" block in ``tmp_path`` (its ``jobs.db``); the instance it built."""
    monkeypatch.chdir(tmp_path)
    namespace = run_block("using-it", {"send_mail": sent.append})
    instance = namespace["oban"]
    assert isinstance(instance, Oban)
    return instance


def test_using_it_enqueues_into_queues_the_instance_runs_and_they_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[object] = []
    instance = using_it(tmp_path, monkeypatch, sent)
    try:
        jobs = instance.list_jobs()
        assert len(jobs) == 4
        assert {job.queue for job in jobs} <= {"default", "mailers", "media"}
        later = sorted((job.args for job in jobs if job.state is JobState.SCHEDULED), key=str)
        assert later == [{"path": "b.png", "width": 100}, {"user_id": 2}]
        with instance:  # the block stopped its queues at once; they run what is due
            wait_for(lambda: sent == [1], message="the welcome mail to user 1")
            wait_for(
                lambda: (
                    [job.args for job in instance.list_jobs(state="completed")]
                    == [{"path": "a.png", "width": 200}, {"user_id": 1}]
                    or [job.args for job in instance.list_jobs(state="completed")]
                    == [{"user_id": 1}, {"path": "a.png", "width": 200}]
                ),
                message="the due jobs completed",
            )
    finally:
        instance.close()


@pytest.mark.anyio
async def test_using_it_async_runs_in_the_callers_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_block("using-it", {"send_mail": lambda user: None})
    instance = namespace["oban"]
    try:
        body = "async def readme() -> None:\n" + textwrap.indent(snippet("using-it-async"), "    ")
        exec(compile(body, "README.md <using-it-async>", "exec"), namespace)
        await namespace["readme"]()
        welcomes = instance.list_jobs(worker=namespace["SendWelcome"], limit=500)
        assert len(welcomes) == 2 + 1 + 100  # the first block's two, then one and a batch
    finally:
        instance.close()


# -- Testing ----------------------------------------------------------------------------------

SEND_WELCOME = """
from oban import Job, worker


@worker(queue="mailers")
class SendWelcome:
    def process(self, job: Job) -> None:
        pass
"""

MYAPP = (
    SEND_WELCOME
    + """

def signup(user_id: int) -> None:
    SendWelcome.enqueue({"user_id": user_id})
"""
)


def pytest_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on the test files of ``directory``, in a subprocess, warnings as errors."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_testing_block_passes_under_pytest_with_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(MYAPP, encoding="utf-8")
    (tmp_path / "test_signup.py").write_text(snippet("testing"), encoding="utf-8")
    done = pytest_in(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


# -- FastAPI and Flask ------------------------------------------------------------------------


def job_state(instance: Oban, job_id: int) -> JobState | None:
    job = instance.get_job(job_id)
    return None if job is None else job.state


def test_the_fastapi_app_commits_the_row_and_the_job_and_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.chdir(tmp_path)
    namespace = run_block("fastapi", {})
    instance = namespace["oban"]
    try:
        with TestClient(namespace["app"]) as client:
            response = client.post("/signup/ada@example.com")
            assert response.status_code == 200, response.text
            job_id = int(response.json()["job_id"])
            wait_for(lambda: job_state(instance, job_id) is JobState.COMPLETED)
    finally:
        instance.close()


def test_the_flask_app_commits_the_row_and_the_job_and_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_block("flask", {})
    app, db, instance = namespace["app"], namespace["db"], namespace["oban"]
    try:
        response = app.test_client().post("/signup/ada@example.com")
        assert response.status_code == 200, response.text
        job_id = int(response.get_json()["job_id"])
        wait_for(lambda: job_state(instance, job_id) is JobState.COMPLETED)
    finally:
        app.extensions["oban"].stop(grace=0)
        instance.close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


# -- Command line -----------------------------------------------------------------------------

WORKERS = SEND_WELCOME

JOBS = """
from oban import Oban

from myapp.workers import SendWelcome

oban = Oban("sqlite:///jobs.db", queues={"default": 10, "mailers": 5},
            cron=[("@daily", SendWelcome)])
"""


def test_every_command_line_of_the_cli_block_succeeds(tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "myapp" / "workers.py").write_text(WORKERS, encoding="utf-8")
    (tmp_path / "myapp" / "jobs.py").write_text(JOBS, encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    ran: list[str] = []
    for line in snippet("cli").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
            continue
        assert words[0] == "oban", line
        command = words[1:]
        if command[0] == "start":
            with serving(*command[1:], cwd=tmp_path, env=env) as server:
                server.wait_line("oban started")
                server.signal(signal.SIGTERM)
                assert server.wait() == 0, server.stderr()
        else:
            ok(*command, cwd=tmp_path, env=env)
        ran.append(command[0])
        if command[0] == "migrate":  # jobs for `oban job 42` and the listings
            seeder = Oban(f"sqlite:///{tmp_path / 'jobs.db'}", testing="manual", name="seeder")
            try:
                sys.path.insert(0, str(tmp_path))
                from myapp.workers import SendWelcome  # type: ignore[import-not-found]

                seeder.enqueue_many([SendWelcome.new({"n": n}) for n in range(42)])
            finally:
                sys.path.remove(str(tmp_path))
                sys.modules.pop("myapp.workers", None)
                sys.modules.pop("myapp", None)
                seeder.close()
    assert ran[0] == "migrate"
    assert ran[-1] == "rollback"
    assert {"start", "jobs", "job", "retry", "queues", "pause", "cron"} <= set(ran)


# -- docs/testing.md ------------------------------------------------------------------------

DOCS_TESTING_PRELUDE = """
from __future__ import annotations

import pytest

from oban import Oban
from oban.testing import assert_enqueued, drain_queue, drain_queue_async


def signup(user_id: int) -> None:  # the application code the examples test
    SendWelcome.enqueue({"user_id": user_id})


@pytest.fixture
def app_oban(tmp_path):  # the application's own instance, built once in real life
    instance = Oban(f"sqlite:///{tmp_path / 'app.db'}", name="oban")
    instance.migrate()
    yield instance
    instance.close()
"""


def test_the_examples_of_docs_testing_pass_under_pytest(tmp_path: Path) -> None:
    """Every Python block of docs/testing.md, in order, as one test module."""
    blocks = [
        block.code for block in snippets(ROOT / "docs" / "testing.md") if block.lang == "python"
    ]
    assert len(blocks) >= 5
    (tmp_path / "test_docs.py").write_text(
        DOCS_TESTING_PRELUDE + "\n\n".join(blocks), encoding="utf-8"
    )
    database = os.environ.get("OBAN_TEST_DATABASE_URL", "")
    done = pytest_in(tmp_path, *([f"--oban-database-url={database}"] if database else []))
    assert done.returncode == 0, done.stdout + done.stderr
    assert " failed" not in done.stdout
    assert "skipped" not in done.stdout or not database, done.stdout
