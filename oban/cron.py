"""Cron entries: which worker the leader enqueues, on which schedule, with what.

Entries come from two places: ``Oban(cron=[(expression, worker, options)])``,
checked by :func:`check_cron`, and ``@worker(cron=...)`` / ``@job(cron=...)``,
found by :func:`cron_entries_of_workers`. Either way an entry is a
:class:`CronEntry` with a :attr:`~CronEntry.key` that is the same text in
every process and after every restart, so that nodes can agree on "this entry,
this slot" without talking to each other.

Everything here is pure: the times come from :mod:`oban.cron_schedule`
(re-exported here) and the jobs from the worker's own defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import orjson

from .cron_schedule import (
    NICKNAMES,
    REBOOT,
    CronExpression,
    check_timezone,
    latest_slot,
    next_slots,
    parse_expression,
    slots_between,
    to_utc,
)
from .errors import ConfigError, JobValidationError
from .job import Job
from .worker import (
    JobFunction,
    WorkerSpec,
    as_worker_class,
    build_job,
    registered_workers,
    worker_spec,
)

__all__ = [
    "CRON_OPTIONS",
    "NICKNAMES",
    "REBOOT",
    "CronEntry",
    "CronExpression",
    "check_cron",
    "check_timezone",
    "cron_entries_of_workers",
    "latest_slot",
    "next_slots",
    "parse_expression",
    "slots_between",
    "to_utc",
]

CRON_OPTIONS = frozenset({"args", "queue", "priority", "max_attempts", "tags", "meta"})
"""What a cron entry may set on its jobs. Not ``schedule_in``/``scheduled_at``:
a cron job is inserted when its slot is due. Not ``unique``/``replace``: the
plugin already inserts each slot once (a worker's own ``unique=`` still applies)."""

_CHECK_SLOT = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""The slot of the job built to check an entry's options (any fixed instant will do)."""


def _slot_text(slot: datetime) -> str:
    # Naive means UTC, as everywhere in Oban; slots are whole minutes.
    utc = slot.replace(tzinfo=timezone.utc) if slot.tzinfo is None else slot
    return utc.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _build(
    expression: CronExpression, spec: WorkerSpec, options: Mapping[str, Any], slot: datetime
) -> Job:
    """The job of one slot: worker defaults, then the entry's options, then cron meta."""
    rest = dict(options)
    args = rest.pop("args", None)
    # A per-job meta replaces the worker's, as in Worker.new(meta=...).
    meta = rest.pop("meta", None)
    base = spec.meta if meta is None else meta
    if not isinstance(base, Mapping):
        raise JobValidationError(
            f"meta must be a dict of JSON values, got {type(base).__name__}: {base!r}"
        )
    rest["meta"] = {
        **base,
        "cron": True,
        "cron_expr": expression.text,
        "cron_slot": _slot_text(slot),
    }
    return build_job(spec, args, rest)


@dataclass(frozen=True)
class CronEntry:
    """One schedule of one worker; equal entries (same :attr:`key`) are one entry.

    Build them with :func:`check_cron` or :func:`cron_entries_of_workers`,
    which check the options; the constructor trusts them.
    """

    expression: CronExpression = field(compare=False)
    worker: Any = field(compare=False)
    """A ``@worker`` class or ``@job`` function: anything with ``__oban_worker__``."""
    options: Mapping[str, Any] = field(compare=False, default_factory=dict)
    """A subset of :data:`CRON_OPTIONS`, over the worker's defaults."""
    key: str = field(init=False)
    """``"<expression> <worker name> <options as sorted-key JSON>"``: stable across
    processes and restarts, different for different args."""

    def __post_init__(self) -> None:
        options = dict(self.options)
        object.__setattr__(self, "options", MappingProxyType(options))
        encoded = orjson.dumps(options, option=orjson.OPT_SORT_KEYS).decode()
        object.__setattr__(self, "key", f"{self.expression.text} {self.spec.name} {encoded}")

    @property
    def spec(self) -> WorkerSpec:
        """The worker's spec: its name, defaults and Oban instance name."""
        spec: WorkerSpec = self.worker.__oban_worker__
        return spec

    def new_job(self, slot: datetime) -> Job:
        """An unsaved job for ``slot``, due at once; its meta says which cron and slot.

        ``meta`` gets ``cron: true`` and ``cron_expr`` (as Elixir Oban writes
        them) and ``cron_slot``, the slot in UTC (``2026-03-29T01:00:00Z``).
        """
        return _build(self.expression, self.spec, self.options, slot)


def _check_entry(number: int, item: object) -> CronEntry:
    where = f"cron entry {number}"
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ConfigError(
            f"{where} must be (expression, worker) or (expression, worker, options), got {item!r}"
        )
    text, worker, *rest = item
    try:
        expression = parse_expression(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if as_worker_class(worker) is None:
        hint = "pass the worker itself, not its name" if isinstance(worker, str) else "decorate it"
        raise ConfigError(f"{where}: {worker!r} is not a @worker class or @job function; {hint}")
    options = rest[0] if rest else {}
    allowed = ", ".join(sorted(CRON_OPTIONS))
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"{where}: options must be a dict with keys among {allowed}, "
            f"got {type(options).__name__}: {options!r}"
        )
    unknown = set(options) - CRON_OPTIONS
    if unknown:
        raise ConfigError(
            f"{where}: unknown option {', '.join(sorted(map(repr, unknown)))}; cron entries "
            f"take {allowed} (a cron job is inserted when its slot is due, once per slot)"
        )
    _check_args_fit(where, worker, options.get("args"))
    spec: WorkerSpec = worker.__oban_worker__
    try:
        _build(expression, spec, options, _CHECK_SLOT)
        return CronEntry(expression, worker, options)
    except JobValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except TypeError as exc:  # orjson, for the key: only tags can get this far (a set)
        raise ConfigError(
            f"{where}: options must hold JSON values (lists, not sets): {exc}"
        ) from exc


def _check_args_fit(where: str, worker: object, args: object) -> None:
    """A ``@job`` function is called with the args: they must fit its parameters."""
    if args is None:
        args = {}
    if not isinstance(worker, JobFunction) or not isinstance(args, Mapping):
        return  # a worker class reads job.args itself; a non-dict fails as a job option
    try:
        worker.signature.bind(**args)
    except TypeError as exc:
        raise ConfigError(
            f"{where}: args {dict(args)!r} do not fit {worker.__oban_worker__.name}: {exc}"
        ) from exc


def check_cron(cron: object) -> tuple[CronEntry, ...]:
    """Check ``Oban(cron=...)``: a list of ``(expression, worker[, options])``.

    Raises :class:`~oban.ConfigError` naming the entry (counted from 1) and
    what to change. Identical entries are kept once, in the order given.
    """
    if cron is None:
        return ()
    if not isinstance(cron, (list, tuple)):
        raise ConfigError(
            "cron must be a list of (expression, worker) or (expression, worker, options) "
            f"entries, such as [('0 * * * *', Report)], got {type(cron).__name__}: {cron!r}"
        )
    entries: dict[str, CronEntry] = {}
    for number, item in enumerate(cron, start=1):
        entry = _check_entry(number, item)
        entries.setdefault(entry.key, entry)
    return tuple(entries.values())


def cron_entries_of_workers(oban_name: str) -> tuple[CronEntry, ...]:
    """The ``@worker(cron=...)``/``@job(cron=...)`` entries of the workers of ``oban_name``.

    Only workers registered in this process count: the leader finds a
    worker's schedule once the worker's module has been imported. Sorted by
    key, so every process lists them in the same order.
    """
    entries: dict[str, CronEntry] = {}
    for worker_class in registered_workers():
        spec = worker_spec(worker_class)
        if spec.oban != oban_name:
            continue
        for expression in spec.cron:
            entry = CronEntry(expression, worker_class)
            entries.setdefault(entry.key, entry)
    return tuple(sorted(entries.values(), key=lambda entry: entry.key))
