"""Unique jobs: the ``unique=`` and ``replace=`` options, checked once and frozen.

A unique job is inserted only if no *matching* job exists; otherwise the
insert returns the existing job with ``job.conflict == True``, optionally
after updating some of its fields (``replace=``). The options follow Elixir
Oban's:

* ``period``: seconds (or a ``timedelta``) back from now in which a match
  counts, judged on the existing job's ``inserted_at`` (or ``scheduled_at``
  with ``timestamp="scheduled_at"``); ``None`` means forever. Default 60.
* ``fields``: what must be equal, a subset of ``worker``, ``queue``,
  ``args``, ``meta``. Default ``worker``, ``queue``, ``args``.
* ``keys``: compare only these top-level keys of ``args`` (and of ``meta``
  when it is in ``fields``) instead of the whole document. A key the new job
  lacks matches only a job that lacks it too.
* ``states``: the states an existing job must be in to count. Default: all
  but ``cancelled`` and ``discarded``; also one of the named groups ``"all"``,
  ``"incomplete"``, ``"scheduled"``, ``"successful"`` (the default).

Everything here is pure: parsing turns user input into :class:`UniqueSpec` /
:class:`ReplaceSpec` or raises :class:`~oban.JobValidationError` naming the
bad part, at the point where the option was written (``@worker(...)``,
``Worker.new(...)``), never later inside an insert. The engines read the
frozen specs to build their SQL.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from .errors import JobValidationError
from .states import UPDATABLE_FIELDS, JobState, storable_text

if TYPE_CHECKING:
    from .job import Job

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_PERIOD",
    "REPLACE_FIELDS",
    "STATE_GROUPS",
    "UNIQUE_FIELDS",
    "ReplaceSpec",
    "UniqueSpec",
    "lock_key",
    "parse_replace",
    "parse_unique",
]

UNIQUE_FIELDS = ("worker", "queue", "args", "meta")
"""What ``fields`` may name, in the order specs keep them."""

DEFAULT_FIELDS = ("worker", "queue", "args")
DEFAULT_PERIOD = 60.0

_ALL = tuple(JobState)
STATE_GROUPS: dict[str, tuple[JobState, ...]] = {
    "all": _ALL,
    "incomplete": (
        JobState.AVAILABLE,
        JobState.SCHEDULED,
        JobState.EXECUTING,
        JobState.RETRYABLE,
        JobState.SUSPENDED,
    ),
    "scheduled": (JobState.SCHEDULED,),
    # A job that ran, or still may run, successfully: all but cancelled/discarded.
    "successful": tuple(s for s in _ALL if s not in (JobState.CANCELLED, JobState.DISCARDED)),
}
"""Named ``states`` groups, as Elixir Oban 2.20 names them."""

DEFAULT_STATES = STATE_GROUPS["successful"]

TIMESTAMPS = ("inserted_at", "scheduled_at")

REPLACE_FIELDS = tuple(sorted(UPDATABLE_FIELDS - {"schedule_in"}))
"""What ``replace`` may update on the existing job: the fields ``Job.update`` takes
(Elixir Oban's list), ``schedule_in`` aside since the new job has its ``scheduled_at``."""

_UNIQUE_OPTIONS = ("period", "fields", "keys", "states", "timestamp")


_STATES = {state.value: state for state in JobState}
_STATE_NAMES = ", ".join(_STATES)


def _state(value: object) -> JobState | None:
    """A state given as a JobState or its name, else None."""
    if isinstance(value, JobState):
        return value
    return _STATES.get(value) if isinstance(value, str) else None


def _names(option: str, value: object) -> list[object]:
    """A list option as a list; a bare string would otherwise iterate its letters."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise JobValidationError(
            f"unique {option} must be a list, got {type(value).__name__}: {value!r}"
        )
    return list(value)


def _period(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise JobValidationError(
            "unique period must be a number of seconds, a timedelta, or None (forever), "
            f"got {type(value).__name__}: {value!r}"
        )
    if math.isinf(seconds) and seconds > 0:
        return None
    if math.isnan(seconds) or seconds <= 0:
        raise JobValidationError(
            f"unique period must be greater than 0 seconds (or None for forever), got {value!r}"
        )
    return seconds


def _fields(value: object) -> tuple[str, ...]:
    given = _names("fields", value)
    unknown = [name for name in given if name not in UNIQUE_FIELDS]
    if unknown:
        raise JobValidationError(
            f"unknown unique field {', '.join(map(repr, unknown))}; "
            f"fields may be: {', '.join(UNIQUE_FIELDS)}"
        )
    if not given:
        raise JobValidationError(
            f"unique fields must name at least one of {', '.join(UNIQUE_FIELDS)}"
        )
    return tuple(name for name in UNIQUE_FIELDS if name in given)


def _keys(value: object) -> tuple[str, ...]:
    given = _names("keys", value)
    bad = [key for key in given if not isinstance(key, str) or not key]
    if bad:
        raise JobValidationError(
            f"unique keys must be non-empty strings (keys of args/meta), got {bad[0]!r}"
        )
    return tuple(sorted({storable_text("unique keys", str(key)) for key in given}))


def _states(value: object) -> tuple[JobState, ...]:
    if isinstance(value, str) and not isinstance(value, JobState):
        group = STATE_GROUPS.get(value)
        if group is None:
            raise JobValidationError(
                f"unknown unique states group {value!r}; groups: {', '.join(STATE_GROUPS)} "
                "(or give a list of states)"
            )
        return group
    chosen: set[JobState] = set()
    for name in _names("states", value):
        state = _state(name)
        if state is None:
            raise JobValidationError(f"unknown unique state {name!r}; states: {_STATE_NAMES}")
        chosen.add(state)
    if not chosen:
        raise JobValidationError("unique states must name at least one state")
    return tuple(state for state in JobState if state in chosen)


@dataclass(frozen=True)
class UniqueSpec:
    """Validated ``unique`` options: what makes two jobs duplicates.

    Built by :func:`parse_unique` (or directly: the constructor validates and
    normalises the same way), immutable and hashable, so one spec made at
    ``@worker`` time is shared by every job the worker makes.
    """

    period: float | None = DEFAULT_PERIOD
    """Seconds back from now in which an existing job counts; None = forever."""
    fields: tuple[str, ...] = DEFAULT_FIELDS
    """Which of worker, queue, args, meta must be equal (in that order)."""
    keys: tuple[str, ...] = ()
    """Only these args/meta keys are compared; empty = the whole document."""
    states: tuple[JobState, ...] = DEFAULT_STATES
    """States an existing job must be in to count as a duplicate."""
    timestamp: str = "inserted_at"
    """The existing job's column ``period`` is measured on."""

    def __post_init__(self) -> None:
        fields = _fields(self.fields)
        keys = _keys(self.keys)
        if keys and "args" not in fields and "meta" not in fields:
            raise JobValidationError(
                "unique keys select args/meta keys, so fields must include 'args' or 'meta'"
            )
        if self.timestamp not in TIMESTAMPS:
            raise JobValidationError(
                f"unique timestamp must be one of {', '.join(TIMESTAMPS)}, got {self.timestamp!r}"
            )
        object.__setattr__(self, "period", _period(self.period))
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "states", _states(self.states))

    def since(self, now: datetime) -> datetime | None:
        """The oldest ``timestamp`` a matching job may have, or None (forever)."""
        if self.period is None:
            return None
        try:
            return now - timedelta(seconds=self.period)
        except OverflowError:
            return None  # a period longer than recorded time: forever

    def compared(self, job: Job) -> dict[str, Any]:
        """The values of ``job`` this spec compares, by field.

        ``args``/``meta`` are narrowed to ``keys`` when keys are given (a
        missing key stays missing, which is not the same as a null value).
        """
        values: dict[str, Any] = {}
        for name in self.fields:
            value = getattr(job, name)
            if name in ("args", "meta") and self.keys:
                value = {key: value[key] for key in self.keys if key in value}
            values[name] = value
        return values


def parse_unique(value: object) -> UniqueSpec | None:
    """``unique=`` as given by a user, as a :class:`UniqueSpec` (None/False: not unique).

    ``True`` means every default; a dict may set ``period``, ``fields``,
    ``keys``, ``states`` and ``timestamp``.
    """
    if value is None or value is False:
        return None
    if value is True:
        return UniqueSpec()
    if isinstance(value, UniqueSpec):
        return value
    if not isinstance(value, Mapping):
        raise JobValidationError(
            "unique must be True, a dict of options (period, fields, keys, states, "
            f"timestamp), or None; got {type(value).__name__}: {value!r}"
        )
    unknown = [key for key in value if key not in _UNIQUE_OPTIONS]
    if unknown:
        raise JobValidationError(
            f"unknown unique option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(_UNIQUE_OPTIONS)}"
        )
    return UniqueSpec(**{str(key): option for key, option in value.items()})


@dataclass(frozen=True)
class ReplaceSpec:
    """Validated ``replace`` options: which fields of a duplicate to update, by its state."""

    rules: tuple[tuple[JobState, tuple[str, ...]], ...]
    """(state of the existing job, fields to copy from the new job), in state order."""

    def fields_for(self, state: JobState) -> tuple[str, ...]:
        """The fields to replace on an existing job in ``state`` (empty: none)."""
        for rule_state, fields in self.rules:
            if rule_state is state:
                return fields
        return ()


def parse_replace(value: object) -> ReplaceSpec | None:
    """``replace=`` as given, e.g. ``{"scheduled": ["scheduled_at"]}``, as a :class:`ReplaceSpec`.

    Keys are states of the *existing* job; values list fields from
    :data:`REPLACE_FIELDS`. None or an empty dict replaces nothing.
    """
    if value is None:
        return None
    if isinstance(value, ReplaceSpec):
        return value
    if not isinstance(value, Mapping):
        raise JobValidationError(
            "replace must be a dict of existing-job state -> list of fields, e.g. "
            f'{{"scheduled": ["scheduled_at"]}}; got {type(value).__name__}: {value!r}'
        )
    rules: dict[JobState, tuple[str, ...]] = {}
    for state_name, fields in value.items():
        state = _state(state_name)
        if state is None:
            raise JobValidationError(
                f"unknown replace state {state_name!r}; states: {_STATE_NAMES}"
            )
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
            raise JobValidationError(
                f"replace[{state.value!r}] must be a list of fields, got {fields!r}"
            )
        listed = list(fields)
        unknown = [name for name in listed if name not in REPLACE_FIELDS]
        if unknown:
            raise JobValidationError(
                f"cannot replace {', '.join(map(repr, unknown))} (state {state.value!r}); "
                f"replaceable fields: {', '.join(REPLACE_FIELDS)}"
            )
        chosen = tuple(name for name in REPLACE_FIELDS if name in listed)
        if chosen:
            rules[state] = chosen
    if not rules:
        return None
    return ReplaceSpec(tuple((state, rules[state]) for state in JobState if state in rules))


def lock_key(spec: UniqueSpec, job: Job, namespace: str = "") -> int:
    """A signed 64-bit key for ``job``'s unique values (an advisory-lock id).

    Jobs that would match each other have equal compared values and so equal
    keys; unequal values colliding only make two inserts wait for each other.
    """
    payload = orjson.dumps([namespace, spec.compared(job)], option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
