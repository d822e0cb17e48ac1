"""The ``oban`` command: migrate, rollback, start, and look at or manage jobs.

Each command reads its settings (flags, then ``OBAN_*``, then
``[tool.oban]``), finds its ``Oban`` and calls the library's public API;
there is no SQL here. Every failure a user can fix ends as one line on
stderr and exit status 1; ``--debug`` (or ``OBAN_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.text import Text

from .. import migrations
from ..cron import next_slots
from ..errors import DatabaseError, ObanError, SchemaError
from ..job import Job, JobState
from ..oban import MAX_PAGE
from .loading import Target, import_modules, open_oban
from .render import (
    cron_json,
    cron_table,
    job_detail,
    job_json,
    jobs_table,
    queue_json,
    queues_table,
    stderr_console,
    stdout_console,
)
from .serve import serve
from .settings import CliError, Sources, parse_grace, parse_imports, parse_queues

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

STATES = [state.value for state in JobState]


def one_line(exc: BaseException) -> str:
    """The error's message on one line: drivers like to add indented hints."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def explain(exc: Exception) -> str:
    """What to tell the user about ``exc``, in the CLI's words where the library's are
    about Python (``oban.migrate()``) rather than the command to run."""
    if isinstance(exc, SchemaError):
        return "the Oban tables are missing in this database: run `oban migrate` first"
    if isinstance(exc, (CliError, ObanError)):
        return one_line(exc)
    return f"unexpected {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)"


def reports_errors(command: F) -> F:
    """Turn any exception into one line on stderr and exit 1, unless ``debug``."""

    @functools.wraps(command)
    def run(*args: Any, debug: bool, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if debug:
                raise
            raise click.ClickException(explain(exc)) from None

    return run  # type: ignore[return-value]  # same call signature as click sees it


def _configure_logging(debug: bool) -> None:
    """The library's log (reconnects, failed jobs' hooks) on stderr; all of it with --debug.

    Only ``oban start`` logs: it is the one command that runs for long, and
    the other commands report everything they do themselves.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("oban")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def where_options(command: F) -> F:
    """The options every command has: where the jobs are, and ``--debug``."""
    for option in reversed(
        [
            click.option(
                "--database", "-d", metavar="URL", help="SQLAlchemy URL [OBAN_DATABASE_URL]"
            ),
            click.option("--prefix", metavar="SCHEMA", help="PostgreSQL schema [OBAN_PREFIX]"),
            click.option(
                "--app", metavar="MODULE:ATTR", help="an Oban instance in your code [OBAN_APP]"
            ),
            click.option(
                "--debug",
                is_flag=True,
                envvar="OBAN_DEBUG",
                help="show tracebacks and debug logs [OBAN_DEBUG]",
            ),
        ]
    ):
        command = option(command)
    return command


def filter_options(command: F) -> F:
    """``--state``, ``--queue``, ``--worker``: repeatable, AND-ed together."""
    for option in reversed(
        [
            click.option(
                "--state",
                "states",
                multiple=True,
                type=click.Choice(STATES, case_sensitive=False),
                help="only jobs in this state (repeatable)",
            ),
            click.option(
                "--queue", "queues", multiple=True, metavar="NAME", help="only this queue"
            ),
            click.option(
                "--worker", "workers", multiple=True, metavar="NAME", help="only this worker"
            ),
        ]
    ):
        command = option(command)
    return command


def sources() -> Sources:
    return Sources.discover(os.environ, Path.cwd())


@contextmanager
def target(database: str | None, prefix: str | None, app: str | None) -> Iterator[Target]:
    """The Oban to work on, closed afterwards if it was made here."""
    found = sources()
    opened = open_oban(
        app=found.text("app", app),
        database=found.text("database", database),
        prefix=found.text("prefix", prefix),
    )
    try:
        yield opened
    finally:
        opened.close()


def _bind(opened: Target) -> Any:
    if opened.oban.bind is None:
        raise CliError("this Oban has no database (testing='inline'): there is nothing to migrate")
    return opened.oban.bind


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oban")
def cli() -> None:
    """Oban: background jobs as rows in your SQL database.

    Settings come from flags, then OBAN_* environment variables, then
    [tool.oban] in the nearest pyproject.toml.
    """


# -- schema ------------------------------------------------------------------------------


@cli.command()
@where_options
@click.option("--revision", "-r", default=migrations.HEAD, show_default=True, metavar="REV")
@click.option("--sql", is_flag=True, help="print the SQL (for an empty database), run nothing")
@reports_errors
def migrate(
    database: str | None, prefix: str | None, app: str | None, revision: str, sql: bool
) -> None:
    """Create or upgrade the Oban tables (to the newest revision, or REV)."""
    with target(database, prefix, app) as opened:
        bind, schema = _bind(opened), opened.oban.prefix
        if sql:
            script = migrations.migrate(bind, prefix=schema, revision=revision, sql=True)
            click.echo(script, nl=False)
            return
        before = migrations.current_revision(bind, prefix=schema)
        migrations.migrate(bind, prefix=schema, revision=revision)
        after = migrations.current_revision(bind, prefix=schema)
    if before == after:
        click.echo(f"already at {after} in {opened.where}")
    else:
        click.echo(f"migrated {opened.where} from {before or 'nothing'} to {after}")


@cli.command()
@where_options
@click.option(
    "--revision", "-r", default=migrations.PREVIOUS, show_default=True, metavar="REV",
    help="where to go: 'base' removes every Oban table",
)  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@reports_errors
def rollback(
    database: str | None, prefix: str | None, app: str | None, revision: str, yes: bool
) -> None:
    """Downgrade the Oban tables one revision (or to REV).

    Rolling back the first revision drops the jobs table and every job in it;
    rolling back oban_0002 drops the leader, heartbeat, cron slot and queue state tables.
    """
    with target(database, prefix, app) as opened:
        bind, schema = _bind(opened), opened.oban.prefix
        before = migrations.current_revision(bind, prefix=schema)
        if before is None:
            click.echo(f"nothing to roll back in {opened.where}: no Oban revision is installed")
            return
        if not yes:
            click.confirm(
                f"Roll back {opened.where} from {before} to {revision}? Going below the "
                "first revision drops the jobs table and every job in it",
                abort=True,
                err=True,
            )
        migrations.rollback(bind, prefix=schema, revision=revision)
        after = migrations.current_revision(bind, prefix=schema)
    click.echo(f"rolled back {opened.where} from {before} to {after or 'nothing (base)'}")


# -- running -----------------------------------------------------------------------------


@cli.command()
@where_options
@click.option("--queues", "-q", metavar="NAME:LIMIT,...", help="e.g. default:10 [OBAN_QUEUES]")
@click.option(
    "--import", "imports", multiple=True, metavar="MODULE",
    help="modules defining workers; repeatable or comma-separated [OBAN_IMPORT]",
)  # fmt: skip
@click.option("--node", metavar="NAME", help="this node's name; host name by default [OBAN_NODE]")
@click.option(
    "--grace", metavar="SECONDS", help="seconds running jobs get to finish at a stop [OBAN_GRACE]"
)
@reports_errors
def start(
    database: str | None,
    prefix: str | None,
    app: str | None,
    queues: str | None,
    imports: tuple[str, ...],
    node: str | None,
    grace: str | None,
) -> None:
    """Run the queues in the foreground until SIGTERM or Ctrl-C.

    The first signal stops gracefully (running jobs get the grace period,
    then go back to available); a second one stops at once.
    """
    _configure_logging(bool(click.get_current_context().params.get("debug")))
    found = sources()
    queues_setting = found.get("queues", queues)
    imports_setting = found.get("import", imports)
    stop_grace = parse_grace(found.get("grace", grace))
    opened = open_oban(
        app=found.text("app", app),
        database=found.text("database", database),
        prefix=found.text("prefix", prefix),
        queues=None if queues_setting is None else parse_queues(queues_setting),
        queues_setting=queues_setting,
        node=found.text("node", node),
        grace=stop_grace,
    )
    try:
        if imports_setting is not None:
            import_modules(parse_imports(imports_setting), imports_setting.source)
        _check_runnable(opened)
        serve(
            opened.oban,
            stop_grace,
            on_started=lambda: click.echo(_started_line(opened)),
            on_stopping=lambda: click.echo(_stopping_line(stop_grace)),
            on_hurry=lambda: click.echo("oban stopping now: cancelling the jobs still running"),
        )
    finally:
        opened.close()
    click.echo("oban stopped")


def _check_runnable(opened: Target) -> None:
    """Fail before "started": no queues, no database, or a missing table."""
    instance = opened.oban
    if instance.testing is not None:
        raise CliError(f"this Oban has testing={instance.testing!r}: it runs no queues")
    if not instance.queues:
        raise CliError(
            "no queues to run: pass --queues default:10 or set OBAN_QUEUES or [tool.oban] queues"
        )
    try:
        instance.get_job(0)  # the cheapest round trip that needs the table
    except SchemaError:
        raise
    except DatabaseError as exc:
        raise CliError(f"cannot reach {opened.where}: {one_line(exc)}") from exc


def _started_line(opened: Target) -> str:
    instance = opened.oban
    queues = ", ".join(f"{name}:{limit}" for name, limit in instance.queues.items())
    return (
        f"oban started: node {instance.node}, queues {queues}, on {opened.where} "
        f"(pid {os.getpid()})"
    )


def _stopping_line(grace: float | None) -> str:
    limit = "the grace period" if grace is None else f"{grace:g}s"
    return f"oban stopping: running jobs get {limit} to finish (signal again to stop now)"


# -- looking at jobs ---------------------------------------------------------------------


def _filters(
    states: tuple[str, ...], queues: tuple[str, ...], workers: tuple[str, ...]
) -> dict[str, Any]:
    """The library's filter keywords for what was given; none at all means every job."""
    chosen: dict[str, Any] = {}
    if states:
        chosen["state"] = [state.lower() for state in states]
    if queues:
        chosen["queue"] = list(queues)
    if workers:
        chosen["worker"] = list(workers)
    return chosen


def _list(opened: Target, filters: dict[str, Any], limit: int) -> list[Job]:
    """Up to ``limit`` jobs, newest first, fetched a page of at most MAX_PAGE at a time."""
    jobs: list[Job] = []
    before: int | None = None
    while len(jobs) < limit:
        page = opened.oban.list_jobs(
            **filters, limit=min(MAX_PAGE, limit - len(jobs)), before=before
        )
        jobs += page
        if not page or page[-1].id is None:
            break
        before = page[-1].id
    return jobs


@cli.command()
@where_options
@filter_options
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line, every field")
@reports_errors
def jobs(
    database: str | None,
    prefix: str | None,
    app: str | None,
    states: tuple[str, ...],
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    with target(database, prefix, app) as opened:
        found = _list(opened, _filters(states, queues, workers), limit)
    if as_json:
        for job in found:
            click.echo(job_json(job))
    elif found:
        stdout_console().print(jobs_table(found))
    else:
        click.echo("no jobs")


@cli.command()
@where_options
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="the job as one JSON object")
@reports_errors
def job(
    database: str | None, prefix: str | None, app: str | None, job_id: int, as_json: bool
) -> None:
    """Everything about one job: args, meta, tags, timestamps, every error in full."""
    with target(database, prefix, app) as opened:
        found = opened.oban.get_job(job_id)
        if found is None:
            raise CliError(f"no job with id {job_id} in {opened.where}")
    if as_json:
        click.echo(job_json(found))
    else:
        stdout_console().print(job_detail(found))


# -- managing jobs -----------------------------------------------------------------------

ACTIONS: dict[str, tuple[str, str, str]] = {
    "cancel": ("cancel_many", "cancelling", "cancelled"),
    "retry": ("retry_many", "retrying", "retried"),
    "delete": ("delete_many", "deleting", "deleted"),
}
"""Command -> (Oban method, what the spinner says, what the summary says)."""

LEFT_ALONE = {
    "cancel": "already completed, discarded or cancelled",
    "retry": "already available or executing",
    "delete": "executing (cancel it first)",
}


def _check_ids(opened: Target, ids: tuple[int, ...]) -> None:
    """Refuse, before changing anything, ids that name no job (likely a typo)."""
    if not ids:
        return
    existing: set[int | None] = set()
    for start in range(0, len(ids), MAX_PAGE):
        chunk = list(ids[start : start + MAX_PAGE])
        existing |= {job.id for job in opened.oban.list_jobs(ids=chunk, limit=len(chunk))}
    missing = [job_id for job_id in dict.fromkeys(ids) if job_id not in existing]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise CliError(f"no job with id {shown} in {opened.where}: nothing was changed")


def manage(
    action: str,
    *,
    where: tuple[str | None, str | None, str | None],
    ids: tuple[int, ...],
    filters: dict[str, Any],
    every: bool,
) -> None:
    """Run one of cancel/retry/delete as a single statement and say how many changed.

    The library does a bulk change in one statement and one transaction, all
    or nothing, so there is no partial progress to show: a spinner on stderr
    says it is working, and the count comes when it has committed.
    """
    if not ids and not filters and not every:
        raise CliError(
            f"{action} needs job ids or --state/--queue/--worker; pass --all to {action} EVERY job"
        )
    method, doing, done = ACTIONS[action]
    with target(*where) as opened:
        _check_ids(opened, ids)
        selection: dict[str, Any] = {**filters, **({"ids": list(ids)} if ids else {})}
        with stderr_console().status(f"{doing} jobs in {opened.where}…"):
            count: int = getattr(opened.oban, method)(**selection)
    noun = "job" if count == 1 else "jobs"
    summary = f"{done} {count} {noun}"
    if ids and count < len(set(ids)):
        summary += f"; {len(set(ids)) - count} left alone ({LEFT_ALONE[action]})"
    click.echo(summary)


def _manage_command(action: str, summary: str) -> click.Command:
    """``oban cancel|retry|delete ID... [filters] [--all]``: the three differ only in words."""

    @where_options
    @filter_options
    @click.argument("ids", nargs=-1, type=int)
    @click.option("--all", "every", is_flag=True, help=f"{action} EVERY job (no filter needed)")
    @reports_errors
    def command(
        database: str | None,
        prefix: str | None,
        app: str | None,
        states: tuple[str, ...],
        queues: tuple[str, ...],
        workers: tuple[str, ...],
        ids: tuple[int, ...],
        every: bool,
    ) -> None:
        manage(
            action,
            where=(database, prefix, app),
            ids=ids,
            filters=_filters(states, queues, workers),
            every=every,
        )

    command.__doc__ = summary
    return click.command(action)(command)


cli.add_command(
    _manage_command(
        "cancel", "Cancel jobs that have not finished: by id, by filter, or --all of them."
    )
)
cli.add_command(
    _manage_command(
        "retry", "Make jobs available to run now (even discarded ones): by id, filter or --all."
    )
)
cli.add_command(
    _manage_command("delete", "Delete jobs that are not executing: by id, by filter, or --all.")
)


# -- queues ------------------------------------------------------------------------------

IDLE_SCAN = 10_000
"""Waiting jobs ``oban queues`` counts at most in a queue no node runs."""


@cli.command()
@where_options
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line per queue and node")
@reports_errors
def queues(database: str | None, prefix: str | None, app: str | None, as_json: bool) -> None:
    """Every queue on every running node: limit, running jobs, paused, last heartbeat.

    Also warns about queues that have available jobs but no node running them.
    """
    with target(database, prefix, app) as opened:
        infos = opened.oban.check_all_queues()
        idle = opened.oban._unrun_queues(IDLE_SCAN)
    if as_json:
        for info in infos:
            click.echo(queue_json(info))
    elif infos:
        stdout_console().print(queues_table(infos))
    else:
        click.echo(f"no node runs a queue in {opened.where}")
    for queue, count in sorted(idle.items()):
        more = "+" if count >= IDLE_SCAN else ""
        stderr_console().print(
            Text(
                f"warning: queue {queue!r} has {count}{more} available job(s) but no running "
                "node has it in its queues: start a node with it (oban start --queues "
                f"{queue}:10) or move the jobs"
            )
        )


def _control(
    where: tuple[str | None, str | None, str | None], action: str, queue: str, limit: int | None
) -> None:
    with target(*where) as opened:
        method = getattr(opened.oban, f"{action}_queue")
        if limit is None:
            method(queue)
        else:
            method(queue, limit=limit)
    what = f"scaled to {limit}" if limit is not None else f"{action}d"
    click.echo(f"queue {queue!r} {what} on every node of {opened.where}")


@cli.command()
@where_options
@click.argument("queue")
@reports_errors
def pause(database: str | None, prefix: str | None, app: str | None, queue: str) -> None:
    """Stop fetching from QUEUE on every node (kept for nodes started later, until resumed)."""
    _control((database, prefix, app), "pause", queue, None)


@cli.command()
@where_options
@click.argument("queue")
@reports_errors
def resume(database: str | None, prefix: str | None, app: str | None, queue: str) -> None:
    """Fetch from QUEUE again on every node."""
    _control((database, prefix, app), "resume", queue, None)


@cli.command()
@where_options
@click.argument("queue")
@click.argument("limit", type=click.IntRange(min=1))
@reports_errors
def scale(
    database: str | None, prefix: str | None, app: str | None, queue: str, limit: int
) -> None:
    """Run at most LIMIT jobs of QUEUE at once on each node (kept for nodes started later)."""
    _control((database, prefix, app), "scale", queue, limit)


# -- metrics ------------------------------------------------------------------------------


@cli.command()
@where_options
@click.option(
    "--port", "-p", default=9100, show_default=True, type=click.IntRange(min=0, max=65535),
    help="TCP port to serve /metrics on (0: any free port, printed)",
)  # fmt: skip
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")  # noqa: S104  # metrics are meant to be scraped from elsewhere; --host narrows it
@reports_errors
def metrics(
    database: str | None, prefix: str | None, app: str | None, port: int, host: str
) -> None:
    """Serve Prometheus metrics of the jobs table until SIGTERM or Ctrl-C.

    Jobs by queue and state, queue depth and lag, read from the database at
    each scrape: one such process is right for any number of worker
    processes. Needs the prometheus extra (pip install 'oban[prometheus]').
    """
    from .metrics import require_prometheus, serve_metrics

    require_prometheus()
    with target(database, prefix, app) as opened:
        serve_metrics(
            opened.oban,
            host=host,
            port=port,
            on_started=lambda url: click.echo(
                f"serving Prometheus metrics of {opened.where} on {url}"
            ),
        )
    click.echo("oban metrics stopped")


# -- cron ---------------------------------------------------------------------------------


@cli.command()
@where_options
@click.option("--count", "-n", default=3, show_default=True, type=click.IntRange(min=1, max=100))
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line per entry")
@reports_errors
def cron(
    database: str | None, prefix: str | None, app: str | None, count: int, as_json: bool
) -> None:
    """Each cron entry and its next run times, in the instance's timezone.

    The entries are in your code: use --app (its cron= and the @worker(cron=...)
    workers its modules import).
    """
    with target(database, prefix, app) as opened:
        instance = opened.oban
        entries = instance.cron_entries
        now = instance.clock()
        rows = [
            (
                entry,
                [
                    slot.astimezone(instance.timezone)
                    for slot in next_slots(entry.expression, instance.timezone, now, count)
                ],
            )
            for entry in entries
        ]
    if not rows:
        click.echo(
            "no cron entries: pass --app with an Oban(cron=[...]) or one whose modules "
            "define @worker(cron=...)"
        )
        return
    if as_json:
        for entry, slots in rows:
            click.echo(cron_json(entry, slots))
    else:
        stdout_console().print(cron_table(rows, str(instance.timezone)))


def main() -> None:
    """The console script ``oban``."""
    cli(prog_name="oban")
