"""Sessions: tests (every installed Python 3.10-3.13), slow, lint, typecheck, bench, chaos."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "slow"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite but the slow and chaos tests, on SQLite and on
    OBAN_TEST_DATABASE_URL's PostgreSQL."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow and not chaos", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """The slow tests: node processes, SIGKILLs, outages, a PostgreSQL restart
    (tests/cluster), the benchmark harness's smoke run (tests/test_bench_smoke.py),
    and the bounded form of every chaos scenario (tests/chaos).

    Run once, on one Python: they exercise processes and the database server,
    not the interpreter, and take minutes rather than seconds.
    """
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "slow or chaos", *session.posargs)


@nox.session(python="3.11")
def chaos(session: nox.Session) -> None:
    """The chaos scenarios (tests/chaos), long: ``nox -s chaos -- --minutes 10``.

    Without ``--minutes`` each runs its bounded form, as in ``nox -s slow``.
    Other arguments go to pytest.
    """
    session.install("-e", ".[test]")
    arguments = list(session.posargs)
    if "--minutes" in arguments:
        at = arguments.index("--minutes")
        arguments[at] = "--chaos-minutes"
    session.run("pytest", "-m", "chaos", "-s", "tests/chaos", *arguments)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the library, tests, examples and benchmarks."""
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Ours against peers and a raw-SQL floor (benchmarks/bench.py); see benchmarks/README.md.

    ``nox -s bench -- --workload W1,W3 --rounds 5 --peers pgqueuer`` passes its
    arguments through. Each peer is installed in its own venv by bench.py.
    """
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
