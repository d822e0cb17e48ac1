"""How jobs look on a terminal (rich) and in a pipe (JSON lines).

Everything a user stored (args, meta, tags, tracebacks) is printed as
plain ``Text``, never as rich markup, so a ``[bold]`` in an argument is shown,
not interpreted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..cron import CronEntry
from ..job import TIMESTAMP_FIELDS, Job
from ..queue_info import QueueInfo

__all__ = [
    "ARGS_WIDTH",
    "cron_json",
    "cron_table",
    "job_detail",
    "job_json",
    "job_record",
    "jobs_table",
    "queue_json",
    "queues_table",
]

ARGS_WIDTH = 40
"""Characters of a job's args the list shows; ``oban job ID`` shows them all."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_record(job: Job) -> dict[str, Any]:
    """Every stored field of ``job`` as JSON-ready values (timestamps in ISO 8601)."""
    record: dict[str, Any] = {
        "id": job.id,
        "state": str(job.state),
        "queue": job.queue,
        "worker": job.worker,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "args": job.args,
        "meta": job.meta,
        "tags": list(job.tags),
        "attempted_by": list(job.attempted_by),
        "errors": list(job.errors),
    }
    for name in TIMESTAMP_FIELDS:
        record[name] = _iso(getattr(job, name))
    return record


def job_json(job: Job) -> str:
    """One line of JSON for ``job``: what ``--json`` prints, one job a line."""
    return orjson.dumps(job_record(job), default=str).decode()


def abbreviate(value: object, width: int = ARGS_WIDTH) -> str:
    """Compact JSON of ``value``, cut to ``width`` characters with an ellipsis."""
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_time(value: datetime | None) -> str:
    """A timestamp to the second, in UTC (which the table's header says)."""
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def jobs_table(jobs: list[Job]) -> Table:
    """The list ``oban jobs`` shows: one row per job, newest first.

    Every column but ``args`` keeps its full width; on a narrow terminal the
    args are cut short, since ``oban job ID`` shows them whole.
    """
    rows = [
        [
            str(job.id),
            str(job.state),
            job.queue,
            job.worker,
            f"{job.attempt}/{job.max_attempts}",
            _short_time(job.scheduled_at),
            abbreviate(job.args),
        ]
        for job in jobs
    ]
    table = Table(box=None, header_style="bold", pad_edge=False)
    headers = ("id", "state", "queue", "worker", "attempt", "scheduled_at (UTC)", "args")
    for index, header in enumerate(headers):
        widest = max([len(header), *(len(row[index]) for row in rows)])
        is_args = header == "args"
        table.add_column(
            header,
            no_wrap=True,
            overflow="ellipsis",
            min_width=None if is_args else widest,
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _pretty(value: object) -> Text:
    return Text(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


def job_detail(job: Job) -> RenderableType:
    """Everything about one job: its fields, args and meta, and every error in full."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    record = job_record(job)
    for name in ("id", "state", "queue", "worker", "priority"):
        fields.add_row(name, Text(str(record[name])))
    fields.add_row("attempt", Text(f"{job.attempt} of {job.max_attempts}"))
    fields.add_row("tags", Text(", ".join(job.tags) or "-"))
    fields.add_row("attempted_by", Text(", ".join(job.attempted_by) or "-"))
    for name in TIMESTAMP_FIELDS:
        fields.add_row(name, Text(record[name] or "-"))
    parts: list[RenderableType] = [
        fields,
        Rule("args", align="left"),
        _pretty(job.args),
        Rule("meta", align="left"),
        _pretty(job.meta),
    ]
    for number, entry in enumerate(job.errors, start=1):
        parts += [Rule(_error_title(number, entry), align="left"), Text(_error_text(entry))]
    if not job.errors:
        parts += [Rule("errors", align="left"), Text("none")]
    return Group(*parts)


def _error_title(number: int, entry: object) -> str:
    if not isinstance(entry, dict):
        return f"error {number}"
    return f"error {number}: attempt {entry.get('attempt', '?')} at {entry.get('at', '?')}"


def _error_text(entry: object) -> str:
    """The entry's ``error`` (type, message and traceback); an odd entry as JSON."""
    if isinstance(entry, dict) and isinstance(entry.get("error"), str):
        return str(entry["error"])
    return orjson.dumps(entry, default=str).decode()


PIPE_WIDTH = 1_000
"""Columns rich may use when stdout is not a terminal: whole rows for grep and less."""


def stdout_console() -> Console:
    """A console for results: markup and highlighting off, user data is shown as is.

    On a terminal rich fits its width; in a pipe it would assume 80 columns
    and cut rows, so there it may use as many as a row needs.
    """
    console = Console(highlight=False, markup=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, markup=False, soft_wrap=False, width=PIPE_WIDTH)
    return console


def stderr_console() -> Console:
    """A console for status (spinners) that must never mix into piped results."""
    return Console(stderr=True, highlight=False, markup=False)


def queue_json(info: QueueInfo) -> str:
    """One line of JSON for one queue on one node (``oban queues --json``)."""
    record = {
        "queue": info.queue,
        "node": info.node,
        "instance_id": info.instance_id,
        "limit": info.limit,
        "running": list(info.running),
        "paused": info.paused,
        "lag": info.lag,
        "started_at": _iso(info.started_at),
        "updated_at": _iso(info.updated_at),
    }
    return orjson.dumps(record).decode()


def lag_text(lag: float | None) -> str:
    """A queue's lag for the table: ``0s`` when nothing waits, ``-`` when unknown."""
    if lag is None:
        return "-"
    if lag < 10:
        return f"{lag:.1f}s" if lag else "0s"
    if lag < 3600:
        return f"{lag:.0f}s"
    return f"{lag / 3600:.1f}h"


def queues_table(infos: list[QueueInfo]) -> Table:
    """``oban queues``: one row per queue per node, from the nodes' heartbeats, with
    the jobs running there out of its limit and the queue's lag (its oldest
    available job's wait, from the database)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    headers = ("queue", "node", "running/limit", "lag", "paused", "started (UTC)", "heartbeat")
    for header in headers:
        table.add_column(header, no_wrap=True)
    for info in infos:
        table.add_row(
            Text(info.queue),
            Text(info.node),
            f"{len(info.running)}/{info.limit}",
            lag_text(info.lag),
            "paused" if info.paused else "",
            _short_time(info.started_at),
            _short_time(info.updated_at),
        )
    return table


def _entry_queue(entry: CronEntry) -> str:
    queue = entry.options.get("queue", entry.spec.queue)
    return str(queue)


def cron_json(entry: CronEntry, slots: list[datetime]) -> str:
    """One line of JSON for one cron entry and its next run times (``oban cron --json``)."""
    record = {
        "expression": entry.expression.text,
        "worker": entry.spec.name,
        "queue": _entry_queue(entry),
        "args": entry.options.get("args", {}),
        "next": [slot.isoformat() for slot in slots],
    }
    return orjson.dumps(record).decode()


def cron_table(rows: list[tuple[CronEntry, list[datetime]]], zone: str) -> Table:
    """``oban cron``: one row per entry, its next runs in the instance's timezone."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("expression", "worker", "queue", "args", f"next runs ({zone})"):
        table.add_column(header, no_wrap=True)
    for entry, slots in rows:
        table.add_row(
            Text(entry.expression.text),
            Text(entry.spec.name),
            Text(_entry_queue(entry)),
            Text(abbreviate(entry.options.get("args", {}))),
            Text(
                ", ".join(slot.strftime("%Y-%m-%d %H:%M %Z") for slot in slots)
                if slots
                else "at each cluster start"
            ),
        )
    return table
