"""The systems bench.py measures, where each one's interpreter comes from, and fresh databases.

Every peer gets its own virtual environment under ``benchmarks/.venvs/<name>``
(gitignored), made on first use with the requirements below and reused while
they are unchanged (a ``.bench-requirements`` file in the venv records them).
A peer whose environment cannot be made is reported as unavailable with the
reason, and the run goes on without it. Ours and the raw-SQL floor run on the
interpreter that runs bench.py, with this checkout on ``PYTHONPATH``: the tree
being benchmarked is the one measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS_DIR = ROOT / "benchmarks" / "systems"
VENVS = ROOT / "benchmarks" / ".venvs"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/oban_test"


@dataclass(frozen=True)
class System:
    """One library (or the floor): its adapter script and how to get its interpreter."""

    name: str
    adapter: str
    requirements: tuple[str, ...] = ()
    """pip requirements of its own venv; empty: the project's interpreter."""
    python: str | None = None
    """the Python version its venv needs (oban-py: 3.12), else bench.py's own."""
    peer: bool = True
    workloads: frozenset[str] = frozenset({"W1", "W2", "W3", "W4"})


OURS = System("ours", "ours.py", peer=False, workloads=frozenset({f"W{n}" for n in range(1, 8)}))
RAW = System("raw-sql", "raw_sql.py", peer=False)
PEERS = {
    system.name: system
    for system in (
        System("oban-py", "oban_py.py", ("oban==0.7.*", "psycopg[binary]>=3.2"), python="3.12"),
        System("pgqueuer", "pgqueuer_.py", ("pgqueuer==1.6.*", "asyncpg")),
        System("procrastinate", "procrastinate_.py", ("procrastinate==3.10.*", "psycopg[binary]")),
        System("awa-pg", "awa_.py", ("awa-pg==0.6.*",)),
    )
}


def pg_url() -> str:
    """The server to benchmark on, as a libpq URL (its database is only used to connect)."""
    url = (
        os.environ.get("OBAN_BENCH_DATABASE_URL")
        or os.environ.get("OBAN_TEST_DATABASE_URL")
        or DEFAULT_PG_URL
    )
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _works(python: str) -> bool:
    done = subprocess.run([python, "-c", "import venv"], capture_output=True, check=False)
    return done.returncode == 0


def _find_python(version: str | None) -> str | None:
    """An interpreter of ``version`` (bench.py's own if it is that version): on PATH, or
    one of pyenv's installed versions (its shims only work for the selected ones)."""
    if version is None or sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        return sys.executable
    candidates = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run(
            [pyenv, "versions", "--bare"], capture_output=True, text=True, check=False
        )
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        for installed in reversed(done.stdout.split()):
            if installed.startswith(version + "."):
                candidates.append(f"{root.stdout.strip()}/versions/{installed}/bin/python{version}")
    if found := shutil.which(f"python{version}"):
        candidates.append(found)
    return next((c for c in candidates if Path(c).exists() and _works(c)), None)


def interpreter(system: System, log: Any = print) -> tuple[str | None, str | None]:
    """(python executable, None) for ``system``, making its venv if needed, or (None, why not)."""
    if not system.requirements:
        return sys.executable, None
    venv = VENVS / system.name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(system.requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python), None
    base = _find_python(system.python)
    if base is None:
        return None, f"unavailable: needs Python {system.python}, not found"
    log(f"  installing {system.name} into {venv} ({' '.join(system.requirements)}) ...")
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *system.requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "WARNING" not in line]
            return None, f"unavailable: {' '.join(step[:3])} failed: {' '.join(lines[-2:])[:300]}"
    marker.write_text(wanted)
    return str(python), None


def environment(system: System) -> dict[str, str]:
    """The adapter's environment: PYTHONPATH=<repo> for ours and the floor, none for peers
    (oban-py's package is also named ``oban``: it must not see this checkout)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if not system.peer:
        env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_adapter(
    python: str, system: System, cfg: dict[str, Any], timeout: float, log_path: Path
) -> dict[str, Any]:
    """Run one adapter; its result line, or {"error": ...}. Stderr goes to ``log_path``."""
    command = [python, str(SYSTEMS_DIR / system.adapter), json.dumps(cfg)]
    with log_path.open("a") as log_file:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        try:
            done = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                timeout=timeout,
                env=environment(system),
                cwd=str(ROOT),
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        return {"error": f"exit {done.returncode}: {tail[0][:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- fresh databases -----------------------------------------------------------------------------


class Databases:
    """Makes and drops one database per (system, workload, round): ``<prefix><system>_<n>``."""

    def __init__(self, server_url: str, prefix: str) -> None:
        self.server_url = server_url
        self.prefix = prefix
        self.counter = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="oban-bench-sqlite-"))

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.server_url, autocommit=True)

    def server_version(self) -> str | None:
        try:
            with self._admin() as conn:
                row = conn.execute("SHOW server_version").fetchone()
                return str(row[0]) if row else None
        except Exception:
            return None

    def create(self, system: str, engine: str) -> str:
        self.counter += 1
        tag = f"{system.replace('-', '_')}_{os.getpid()}_{self.counter}"
        if engine == "lite":
            return f"sqlite:///{self.tmp / (tag + '.db')}"
        name = f"{self.prefix}{tag}"
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = self.server_url.rpartition("/")
        return f"{base}/{name}"

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            return
        name = url.rpartition("/")[2]
        assert name.startswith(self.prefix)
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
