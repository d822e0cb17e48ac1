"""Cron expressions and the instants they name, in a timezone (pure: no clock).

A cron entry fires once per *slot*: a minute its expression matches on the
wall clock of the configured timezone, turned into a UTC instant. The
leader's cron plugin asks for the slots between its last tick and now, so the
answers must not depend on how the time is cut into ticks: the slots of
``(a, c]`` are exactly those of ``(a, b]`` plus those of ``(b, c]``.

Matching is done on naive wall-clock times (croniter treats a naive datetime
as plain calendar arithmetic), and each match is then mapped to UTC by one
rule, :func:`to_utc`, which is where daylight saving time is decided:

* a wall-clock time that happens twice (clocks go back) is its first
  occurrence, so ``30 2 * * *`` runs once on that night;
* a wall-clock time that never happens (clocks go forward) is the instant the
  gap ends, so ``30 2 * * *`` still runs that night, at 03:00 local;
* matches that land on the same instant are one slot.

This module sits below :mod:`oban.worker` (which validates ``@worker(cron=)``
with it); the entries that pair an expression with a worker are in
:mod:`oban.cron`.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .errors import ConfigError

__all__ = [
    "NICKNAMES",
    "REBOOT",
    "CronExpression",
    "check_timezone",
    "latest_slot",
    "next_slots",
    "parse_expression",
    "slots_between",
    "to_utc",
]

NICKNAMES = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)
"""The ``@`` shorthands croniter expands to 5-field expressions."""

REBOOT = "@reboot"
"""Runs once when the cron plugin starts on a leader; it has no slots."""

_HOW_TO_FIX = (
    "use 5 fields (minute hour day month weekday), such as '*/5 * * * *' or '0 9 * * MON-FRI', "
    "or one of @hourly/@daily/@midnight/@weekly/@monthly/@yearly/@annually/@reboot"
)

# croniter's R ("random") item, alone or with a range or step: "R", "r(0-29)", "R/5".
_RANDOM_ITEM = re.compile(r"^r(\(|/|$)", re.IGNORECASE)

_MARGIN = timedelta(hours=3)
"""How far past a window's ends (in wall-clock time) to look for matches.

When clocks go back, wall-clock time repeats: the matches whose instants lie
in a window can be up to the size of that jump outside the window's own
wall-clock span. No clock change in use today is larger than two hours.
"""

_NEVER_BEFORE = datetime(2000, 1, 1)
"""Where the "does it ever match?" check starts looking (a fixed date: pure)."""


@dataclass(frozen=True)
class CronExpression:
    """A checked cron expression; make one with :func:`parse_expression`.

    ``text`` is the expression as written, with runs of whitespace made one
    space (it names the entry across processes, so it must be stable);
    ``reboot`` is true for ``@reboot``, which has no schedule.
    """

    text: str
    reboot: bool = False


def _invalid(text: str, reason: str) -> ConfigError:
    return ConfigError(f"cron expression {text!r} is not valid: {reason}; {_HOW_TO_FIX}")


def parse_expression(text: object) -> CronExpression:
    """Check a cron expression and return it parsed; raises :class:`~oban.ConfigError`.

    Accepts standard 5-field cron (ranges ``1-5``, steps ``*/15``, lists
    ``0,30``, names ``MON-FRI`` and ``JAN``, croniter's ``L``, ``#`` and
    ``W``), the nicknames in :data:`NICKNAMES`, and ``@reboot``. Rejected:
    6 or 7 fields (seconds and years: slots are whole minutes), croniter's
    random ``R`` (each process would pick another minute) and expressions
    that never match a date (``0 0 30 2 *``).
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"a cron expression must be a string such as '*/5 * * * *' or '@daily', "
            f"got {type(text).__name__}: {text!r}"
        )
    fields = text.split()
    normalised = " ".join(fields)
    if not fields:
        raise _invalid(text, "it is empty")
    if normalised.startswith("@"):
        nickname = normalised.lower()
        if nickname == REBOOT:
            return CronExpression(REBOOT, reboot=True)
        if nickname not in NICKNAMES:
            raise _invalid(text, f"{normalised!r} is not a known nickname")
        normalised = nickname
    elif len(fields) != 5:
        extra = " (seconds and years are not supported: jobs run by the minute)"
        raise _invalid(text, f"it has {len(fields)} fields{extra if len(fields) > 5 else ''}")
    elif any(_RANDOM_ITEM.match(item) for field in fields for item in field.split(",")):
        raise _invalid(text, "R (random) values would differ from one process to the next")
    try:
        croniter(normalised, _NEVER_BEFORE).get_next(datetime)
    except CroniterBadDateError:
        raise _invalid(text, "it never matches a date (like 30 February)") from None
    # croniter's own errors are ValueErrors; a TypeError or KeyError from its
    # parser on odd input is still a bad expression, not a crash.
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _invalid(text, str(exc) or type(exc).__name__) from exc
    _times_of_day(normalised)  # the minute and hour fields are plain numbers (checked there)
    return CronExpression(normalised)


def check_timezone(name: object) -> ZoneInfo:
    """The IANA timezone ``name`` (a ``ZoneInfo`` passes through).

    Raises :class:`~oban.ConfigError` quoting a name the tz database lacks.
    """
    if isinstance(name, ZoneInfo):
        return name
    if not isinstance(name, str):
        raise ConfigError(
            f"timezone must be an IANA name such as 'Europe/Paris' or 'UTC', "
            f"got {type(name).__name__}: {name!r}"
        )
    try:
        return ZoneInfo(name)
    # Unknown key, a malformed one ('', '../x', '/abs') or a directory ('Europe').
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"timezone {name!r} is unknown: use an IANA name such as 'Europe/Paris' or 'UTC' "
            "(names are case-sensitive; on a system without a tz database, install tzdata)"
        ) from None


@functools.lru_cache(maxsize=512)
def _times_of_day(text: str) -> tuple[time, ...]:
    """Every wall-clock time of a matching day, in order.

    Whether a *day* matches (day of month, month, weekday, ``L``, ``#``, ``W``)
    does not depend on the time of day, so once croniter has found one match
    on a day, the day's other matches are the minute field times the hour
    field. Enumerating them here instead of asking croniter for each keeps a
    day of ``* * * * *`` (1440 slots) well under a millisecond per hour.
    """
    minutes, hours = croniter.expand(text)[0][:2]
    return tuple(
        time(hour, minute)
        for hour in _values(hours, 24, text)
        for minute in _values(minutes, 60, text)
    )


def _values(field: list[int | str], size: int, text: str) -> list[int]:
    if field == ["*"]:
        return list(range(size))
    if not all(isinstance(value, int) and 0 <= value < size for value in field):
        raise _invalid(text, f"croniter expanded a minute or hour field to {field!r}")
    return sorted({int(value) for value in field})


def _matches_after(text: str, start: datetime, end: datetime) -> list[datetime]:
    """Matching naive wall-clock minutes in ``(start, end]``, ascending."""
    times = _times_of_day(text)
    finder = croniter(text, start)
    found: list[datetime] = []
    cursor = start
    while True:
        first: datetime = finder.get_next(datetime, start_time=cursor)
        if first > end:
            return found
        day = first.date()
        # The day's matches from ``first`` on (croniter found none before it),
        # up to ``end`` if the window ends that day.
        low = bisect.bisect_left(times, first.time())
        high = bisect.bisect_right(times, end.time()) if day == end.date() else len(times)
        found.extend(datetime.combine(day, moment) for moment in times[low:high])
        cursor = datetime.combine(day, time(23, 59))  # get_next is strictly after it


def _matches_before(text: str, start: datetime) -> Iterator[datetime]:
    """Matching naive wall-clock minutes before ``start``, descending, without end."""
    times = _times_of_day(text)
    finder = croniter(text, start)
    cursor = start
    while True:
        last: datetime = finder.get_prev(datetime, start_time=cursor)
        day = last.date()
        for moment in reversed(times[: bisect.bisect_right(times, last.time())]):
            yield datetime.combine(day, moment)
        cursor = datetime.combine(day, time())  # get_prev is strictly before it


def _as_utc(moment: datetime) -> datetime:
    # Naive datetimes are UTC, the rule everywhere else in Oban.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _wall_clock(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant a naive wall-clock time of ``tz`` stands for, as cron counts it.

    A repeated time (clocks went back) is its first occurrence; a skipped time
    (clocks went forward) is the instant the gap ends, i.e. the transition.
    """
    first = local.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    if _wall_clock(first, tz) == local:
        return first
    # In a gap, fold=0 reads the time with the offset from before the change
    # and lands after the transition; fold=1 reads it with the later offset
    # and lands before. The transition is the first second in between whose
    # wall-clock time is past ``local``; a bisection finds it.
    low = int(local.replace(tzinfo=tz, fold=1).astimezone(timezone.utc).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall_clock(datetime.fromtimestamp(middle, timezone.utc), tz) > local:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, timezone.utc)


def _first_after(candidates: list[datetime], instant: datetime, tz: ZoneInfo) -> int:
    """The index of the first wall-clock candidate whose instant is after ``instant``.

    :func:`to_utc` never goes back as the wall clock goes forward, so the
    instants of sorted candidates are sorted too and a bisection finds the
    edge after mapping a handful of them, not all of them.
    """
    return bisect.bisect_right(candidates, instant, key=lambda local: to_utc(local, tz))


def slots_between(
    expression: CronExpression, tz: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """Every slot in ``(after, until]``: aware UTC datetimes, sorted, each once.

    ``@reboot`` has none. Consecutive windows never share or drop a slot, so a
    caller may tick as often as it likes (naive datetimes are taken as UTC).
    """
    after, until = _as_utc(after), _as_utc(until)
    if expression.reboot or until <= after:
        return []
    candidates = _matches_after(
        expression.text, _wall_clock(after, tz) - _MARGIN, _wall_clock(until, tz) + _MARGIN
    )
    inside = candidates[_first_after(candidates, after, tz) : _first_after(candidates, until, tz)]
    # Several wall-clock times of a gap are one instant: one slot.
    return sorted({to_utc(local, tz) for local in inside})


NEXT_HORIZON = timedelta(days=366 * 5)
"""How far :func:`next_slots` looks ahead before it gives up (Feb 29 comes in 4 years)."""


def next_slots(
    expression: CronExpression, tz: ZoneInfo, after: datetime, count: int
) -> list[datetime]:
    """The next ``count`` slots after ``after`` (aware UTC): what ``oban cron`` shows.

    The window doubles from an hour until it holds ``count`` slots, so
    ``* * * * *`` and ``@yearly`` both cost a few calls.
    """
    window = timedelta(hours=1)
    while True:
        found = slots_between(expression, tz, after, _as_utc(after) + window)
        if len(found) >= count or window >= NEXT_HORIZON or expression.reboot:
            return found[:count]
        window = min(window * 2, NEXT_HORIZON)


def latest_slot(expression: CronExpression, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The latest slot at or before ``now`` (aware UTC), or None (``@reboot``).

    Looks around ``now`` first, then walks back as far as the expression
    needs (a year for ``@yearly``; croniter gives up after 50 years: None).
    """
    now = _as_utc(now)
    if expression.reboot:
        return None
    start = _wall_clock(now, tz) - _MARGIN
    near = _matches_after(expression.text, start, _wall_clock(now, tz) + _MARGIN)
    index = _first_after(near, now, tz)
    if index:
        return to_utc(near[index - 1], tz)
    try:
        for local in _matches_before(expression.text, start + timedelta(minutes=1)):
            slot = to_utc(local, tz)
            if slot <= now:
                return slot
    except CroniterBadDateError:
        return None
    return None  # pragma: no cover - the walk above only ends by returning or raising
