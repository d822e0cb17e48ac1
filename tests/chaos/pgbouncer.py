"""A PgBouncer in transaction pooling mode in front of the private server.

Transaction pooling is how PgBouncer is usually deployed, and it is what
breaks a job system's assumptions: a client's session is a different server
connection at every transaction, so LISTEN registers on a connection the
client no longer holds (notifications are lost) and a server-side prepared
statement may be missing on the next transaction's connection. Debian's
``pgbouncer`` will not run as root; like the server it runs as ``postgres``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.chaos.server import PrivateServer, ServerUnavailable, free_port

PGBOUNCER = "/usr/sbin/pgbouncer"


def binary() -> str:
    """Debian's pgbouncer (``apt-get install -y pgbouncer``), else one on PATH."""
    if os.path.exists(PGBOUNCER):
        return PGBOUNCER
    found = shutil.which("pgbouncer")
    if found is None:
        raise ServerUnavailable("no pgbouncer found (apt-get install -y pgbouncer)")
    return found


@dataclass(frozen=True)
class Bouncer:
    port: int
    root: Path

    @property
    def log(self) -> Path:
        return self.root / "pgbouncer.log"


def config(server: PrivateServer, root: Path, port: int) -> str:
    return "\n".join(
        [
            "[databases]",
            f"* = host=127.0.0.1 port={server.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {root / 'userlist.txt'}",
            "pool_mode = transaction",
            "max_client_conn = 500",
            # Fewer server connections than the nodes' pools hold: clients share them.
            "default_pool_size = 10",
            f"logfile = {root / 'pgbouncer.log'}",
            f"pidfile = {root / 'pgbouncer.pid'}",
            "ignore_startup_parameters = extra_float_digits,options",
            "",
        ]
    )


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def pgbouncer(server: PrivateServer) -> Iterator[Bouncer]:
    """PgBouncer (transaction pooling) on a free port for every database of ``server``."""
    program = binary()
    root = Path(tempfile.mkdtemp(prefix="oban-chaos-pgbouncer-"))
    port = free_port()
    (root / "userlist.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(config(server, root, port))
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        for path in (root, *root.iterdir()):
            shutil.chown(path, user="postgres")
    process = subprocess.Popen(
        [*prefix, program, str(root / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "pgbouncer.log").read_text()
                    if (root / "pgbouncer.log").exists()
                    else ""
                )
                raise ServerUnavailable(f"pgbouncer did not start ({process.returncode}): {log}")
            time.sleep(0.05)
        yield Bouncer(port, root)
    finally:
        stop(process, root / "pgbouncer.pid")
        shutil.rmtree(root, ignore_errors=True)


def stop(process: subprocess.Popen[bytes], pidfile: Path) -> None:
    """SIGTERM to the pgbouncer this module started (its pid file names it, under runuser)."""
    with suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
