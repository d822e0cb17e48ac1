"""Running the installed ``oban`` console script in subprocesses, always with a deadline."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OBAN = Path(sys.executable).parent / "oban"
"""The entry point ``pip install -e .[test]`` put next to this interpreter."""

TIMEOUT = 60.0
"""Seconds any one ``oban`` run may take before the test fails."""


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``OBAN_*`` (the developer's own must not
    leak in), with the repository importable and a wide terminal for rich tables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OBAN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "250"
    env.update(extra or {})
    return env


def oban_script() -> Path:
    if not OBAN.exists():
        pytest.fail(f"no {OBAN}: install the package (pip install -e .[test]) to get the script")
    return OBAN


def run(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``oban ARGS`` to completion; the process is killed if it outlives ``timeout``."""
    return subprocess.run(
        [str(oban_script()), *args],
        cwd=cwd,
        env=environment(env),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """``oban ARGS`` that must succeed; its stdout."""
    done = run(*args, cwd=cwd, env=env)
    assert done.returncode == 0, f"oban {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def fails(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """``oban ARGS`` that must fail with exactly one line on stderr and no traceback; it."""
    done = run(*args, cwd=cwd, env=env)
    assert done.returncode != 0, f"oban {' '.join(args)} succeeded:\n{done.stdout}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return lines[0]


class Server:
    """A running ``oban start``: its output lines as they come, and signals to send."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 30.0) -> str:
        """The first line containing ``text``; fails at the deadline or if the process ends."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if text in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line with {text!r} within {timeout}s; got {self.seen}")
            try:
                self.seen.append(self.lines.get(timeout=min(remaining, 0.1)))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    pytest.fail(
                        f"oban start exited {self.process.returncode} before {text!r}; "
                        f"got {self.seen}; stderr: {self.stderr()}"
                    )

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status, within ``timeout`` (the caller's finally kills it otherwise)."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()


@contextmanager
def serving(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, command: str = "start"
) -> Iterator[Server]:
    """``oban COMMAND ARGS`` (``oban start`` by default) in the background; killed at
    the end whatever happened."""
    process = subprocess.Popen(
        [str(oban_script()), command, *args],
        cwd=cwd,
        env=environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Server(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def read_log(path: Path) -> list[str]:
    """The lines a worker of ``tests/cli/workers.py`` wrote, [] before the first."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []
