"""A private PostgreSQL server for the chaos tests: its own data directory and port.

The chaos scenarios restart the server, fill its connection slots and pin its
xmin horizon. Doing that to the machine's shared server would break every other
test (and every other program) using it, so each test session that needs it
gets a throwaway cluster made with ``initdb`` in a temporary directory, on a
free port, with ``fsync=off`` (the data is thrown away anyway). It is stopped
and deleted at the end of the session.

As root, PostgreSQL will not run, so the server is made and run as the
``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool


class ServerUnavailable(RuntimeError):
    """This machine cannot make a private PostgreSQL server (no binaries, no user)."""


def binaries() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else the newest
    Debian one, else ``pg_config --bindir``."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(str(shutil.which("initdb"))).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_config"):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if (Path(bindir) / "initdb").exists():
            return Path(bindir)
    raise ServerUnavailable("no initdb found (install PostgreSQL's server package)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateServer:
    """One throwaway PostgreSQL cluster; :meth:`url` names a database on it."""

    root: Path
    port: int
    bin: Path
    max_connections: int = 60
    _as_postgres: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, *, max_connections: int = 60) -> PrivateServer:
        bin_dir = binaries()
        root = Path(tempfile.mkdtemp(prefix="oban-chaos-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise ServerUnavailable("running as root and no runuser to become postgres")
            prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, user="postgres")
        server = cls(root, free_port(), bin_dir, max_connections, prefix)
        server._run(
            "initdb",
            "-D",
            str(server.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        server.start()
        return server

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        command = [*self._as_postgres, str(self.bin / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServerUnavailable(
                f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
        return done.stdout

    def _options(self) -> str:
        return " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                f"-c max_connections={self.max_connections}",
            ]
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            self._options(),
            "-l",
            str(self.log),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: every connection is cut, the server is back when this returns."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-o",
            self._options(),
            "-l",
            str(self.log),
            "-w",
            "restart",
        )

    def url(self, database: str = "postgres", *, port: int | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3) of ``database`` on this server (or on ``port``, a proxy)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    @contextmanager
    def admin(self, database: str = "postgres") -> Iterator[sa.Connection]:
        """An autocommit connection outside every pool (it must not outlive a restart)."""
        engine = sa.create_engine(self.url(database), poolclass=NullPool)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield conn
        finally:
            engine.dispose()

    def create_database(self, name: str) -> str:
        """A fresh database ``name`` (dropped first if it exists); its URL."""
        with self.admin() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def terminate(self, database: str, *, application_like: str = "%") -> int:
        """``pg_terminate_backend`` on every backend of ``database`` whose
        application_name matches (but this one); how many were terminated."""
        with self.admin() as conn:
            count = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid() "
                    "AND coalesce(application_name, '') LIKE :app) AS t"
                ),
                {"db": database, "app": application_like},
            ).scalar_one()
        return int(count)

    def close(self) -> None:
        with suppress(ServerUnavailable):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
