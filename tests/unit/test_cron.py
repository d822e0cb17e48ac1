"""Cron expressions, slots across daylight saving time, and cron entries (pure: no database).

Europe/Paris in 2026 goes forward on 29 March (02:00 CET -> 03:00 CEST, at
01:00 UTC) and back on 25 October (03:00 CEST -> 02:00 CET, at 01:00 UTC).
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

from oban import ConfigError, Job, JobValidationError, worker
from oban import job as job_function
from oban.cron import (
    CronEntry,
    CronExpression,
    check_cron,
    check_timezone,
    cron_entries_of_workers,
    latest_slot,
    parse_expression,
    slots_between,
    to_utc,
)

HELPER = "tests.unit.cron_workers"
UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
UTC_ZONE = ZoneInfo("UTC")

# `oban.worker` is the re-exported decorator, which shadows the submodule.
worker_module = importlib.import_module("oban.worker")


@pytest.fixture
def cron_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The helper module, imported afresh into a copy of the registry other tests never see."""
    monkeypatch.setattr(worker_module, "_registry", dict(worker_module._registry))
    monkeypatch.delitem(sys.modules, HELPER, raising=False)
    yield importlib.import_module(HELPER)
    sys.modules.pop(HELPER, None)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """``start``, ``start + step``, ... up to ``end`` inclusive."""
    count = int((end - start) / step)
    return [start + step * index for index in range(count + 1)]


def wall(slots: list[datetime], tz: ZoneInfo = PARIS) -> list[str]:
    """The slots as the wall clock shows them, with the offset."""
    return [slot.astimezone(tz).strftime("%d %H:%M%z") for slot in slots]


def expr(text: str) -> CronExpression:
    return parse_expression(text)


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 0 1 JAN,JUL *", "0 0 1 JAN,JUL *"),
        ("0,30 8-18/2 * * 1-5", "0,30 8-18/2 * * 1-5"),
        ("0 0 L * *", "0 0 L * *"),
        ("0 12 * * 5#3", "0 12 * * 5#3"),
        ("  0   0\t* * *  ", "0 0 * * *"),
    ],
)
def test_five_field_expressions_parse(text: str, stored: str) -> None:
    assert parse_expression(text) == CronExpression(stored, reboot=False)


@pytest.mark.parametrize(
    "nickname", ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]
)
def test_nicknames_parse_case_insensitively(nickname: str) -> None:
    assert parse_expression(nickname.upper()) == CronExpression(nickname)


def test_names_match_their_days() -> None:
    weekdays = slots_between(expr("0 9 * * MON-FRI"), PARIS, at(2026, 6, 1), at(2026, 6, 8))
    assert wall(weekdays) == [f"{day:02} 09:00+0200" for day in range(1, 6)]  # 1 June is a Monday
    january = slots_between(expr("0 0 1 JAN *"), UTC_ZONE, at(2026, 1, 1), at(2028, 1, 2))
    assert january == [at(2027, 1, 1), at(2028, 1, 1)]


def test_reboot_has_no_schedule() -> None:
    reboot = parse_expression("@REBOOT")
    assert reboot == CronExpression("@reboot", reboot=True)
    assert slots_between(reboot, PARIS, at(2026, 1, 1), at(2027, 1, 1)) == []
    assert latest_slot(reboot, PARIS, at(2026, 6, 1)) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*/5 * * *", "it has 4 fields"),
        ("* * * * * *", "it has 6 fields (seconds"),
        ("0 0 1 1 * 2026 5", "it has 7 fields"),
        ("", "it is empty"),
        ("61 * * * *", "out of range"),
        ("* * * * FOO", "not acceptable"),
        ("*/0 * * * *", "step '0'"),
        ("@every", "'@every' is not a known nickname"),
        ("R * * * *", "R (random)"),
        ("H * * * *", "hash"),
        ("0 0 30 2 *", "never matches"),
    ],
)
def test_bad_expressions_are_quoted_with_the_reason_and_the_fix(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_expression(text)
    message = str(raised.value)
    assert message.startswith(f"cron expression {text!r} is not valid: ")
    assert reason in message
    assert "use 5 fields (minute hour day month weekday)" in message
    assert "@hourly" in message


@pytest.mark.parametrize("value", [5, None, ["* * * * *"], b"* * * * *"])
def test_an_expression_that_is_not_a_string_names_its_type(value: object) -> None:
    with pytest.raises(ConfigError, match=f"must be a string .* got {type(value).__name__}"):
        parse_expression(value)


# -- timezones --------------------------------------------------------------------------


def test_known_timezones() -> None:
    assert check_timezone("Europe/Paris") == PARIS
    assert check_timezone("UTC") == ZoneInfo("UTC")
    assert check_timezone(PARIS) is PARIS


@pytest.mark.parametrize("name", ["Europe/Pariss", "utc", "", "Europe", "../etc/passwd", "/etc/x"])
def test_an_unknown_timezone_is_quoted(name: str) -> None:
    expected = f"timezone {name!r} is unknown: use an IANA name such as 'Europe/Paris' or 'UTC'"
    with pytest.raises(ConfigError) as raised:
        check_timezone(name)
    assert str(raised.value).startswith(expected)


def test_a_timezone_that_is_not_a_string_names_its_type() -> None:
    with pytest.raises(ConfigError, match="got int: 1"):
        check_timezone(1)


# -- slots ------------------------------------------------------------------------------


def test_the_window_excludes_after_and_includes_until() -> None:
    slots = slots_between(expr("*/15 * * * *"), UTC_ZONE, at(2026, 5, 1, 10), at(2026, 5, 1, 13))
    assert slots == every(at(2026, 5, 1, 10, 15), at(2026, 5, 1, 13), timedelta(minutes=15))
    assert all(slot.tzinfo is UTC for slot in slots)


def test_empty_and_backwards_windows_have_no_slots() -> None:
    hourly = expr("0 * * * *")
    assert slots_between(hourly, PARIS, at(2026, 5, 1, 10), at(2026, 5, 1, 10)) == []
    assert slots_between(hourly, PARIS, at(2026, 5, 1, 12), at(2026, 5, 1, 10)) == []


def test_naive_bounds_are_utc() -> None:
    naive = slots_between(
        expr("0 * * * *"), PARIS, datetime(2026, 5, 1, 9, 30), datetime(2026, 5, 1, 11)
    )
    assert naive == [at(2026, 5, 1, 10), at(2026, 5, 1, 11)]


def test_a_window_in_another_offset_gives_the_same_instants() -> None:
    paris_bounds = (at(2026, 5, 1, 10).astimezone(PARIS), at(2026, 5, 1, 13).astimezone(PARIS))
    assert slots_between(expr("0 * * * *"), PARIS, *paris_bounds) == [
        at(2026, 5, 1, 11),
        at(2026, 5, 1, 12),
        at(2026, 5, 1, 13),
    ]


def test_a_day_of_every_minute_is_every_minute_of_the_day() -> None:
    slots = slots_between(expr("* * * * *"), PARIS, at(2026, 5, 1), at(2026, 5, 2))
    assert len(slots) == 1440
    assert slots == every(at(2026, 5, 1, 0, 1), at(2026, 5, 2), timedelta(minutes=1))


def test_spring_forward_every_quarter_hour() -> None:
    """The clocks skip 02:00-02:59: every real quarter hour still has its slot, once."""
    slots = slots_between(expr("*/15 * * * *"), PARIS, at(2026, 3, 28, 23), at(2026, 3, 29, 3))
    assert slots == every(at(2026, 3, 28, 23, 15), at(2026, 3, 29, 3), timedelta(minutes=15))
    # 02:00, 02:15, 02:30, 02:45 (skipped) and 03:00 are one instant: 01:00 UTC.
    assert wall(slots)[6:9] == ["29 01:45+0100", "29 03:00+0200", "29 03:15+0200"]


def test_fall_back_every_quarter_hour() -> None:
    """02:00-02:59 happens twice: its quarter hours run the first time only."""
    slots = slots_between(expr("*/15 * * * *"), PARIS, at(2026, 10, 24, 22), at(2026, 10, 25, 4))
    second_pass = every(at(2026, 10, 25, 1), at(2026, 10, 25, 1, 45), timedelta(minutes=15))
    quarter_hours = every(at(2026, 10, 24, 22, 15), at(2026, 10, 25, 4), timedelta(minutes=15))
    assert slots == [slot for slot in quarter_hours if slot not in second_pass]
    assert len(set(wall(slots))) == len(slots)  # no wall-clock time twice
    assert wall(slots)[10:13] == ["25 02:45+0200", "25 03:00+0100", "25 03:15+0100"]


def test_spring_forward_daily_at_half_past_two() -> None:
    """02:30 does not exist on 29 March: that day's run is at the gap's end, 03:00 CEST."""
    slots = slots_between(expr("30 2 * * *"), PARIS, at(2026, 3, 27), at(2026, 3, 31))
    assert slots == [
        at(2026, 3, 27, 1, 30),
        at(2026, 3, 28, 1, 30),
        at(2026, 3, 29, 1),
        at(2026, 3, 30, 0, 30),
    ]
    assert wall(slots) == ["27 02:30+0100", "28 02:30+0100", "29 03:00+0200", "30 02:30+0200"]


def test_fall_back_daily_at_half_past_two() -> None:
    """02:30 happens twice on 25 October: it runs at the first one only."""
    slots = slots_between(expr("30 2 * * *"), PARIS, at(2026, 10, 23), at(2026, 10, 27))
    assert slots == [
        at(2026, 10, 23, 0, 30),
        at(2026, 10, 24, 0, 30),
        at(2026, 10, 25, 0, 30),
        at(2026, 10, 26, 1, 30),
    ]
    assert wall(slots) == ["23 02:30+0200", "24 02:30+0200", "25 02:30+0200", "26 02:30+0100"]


def test_spring_forward_hourly() -> None:
    """A 23-hour day: 23 runs, one each real hour; 02:00 and 03:00 are the same instant."""
    day = (at(2026, 3, 28, 23), at(2026, 3, 29, 22))  # local midnight to midnight
    slots = slots_between(expr("0 * * * *"), PARIS, *day)
    assert slots == every(at(2026, 3, 29, 0), at(2026, 3, 29, 22), timedelta(hours=1))
    assert len(slots) == 23
    assert "29 02:00+0100" not in wall(slots)


def test_fall_back_hourly() -> None:
    """A 25-hour day: each wall-clock hour runs once, so 24 runs; the repeated 02:00 once."""
    day = (at(2026, 10, 24, 22), at(2026, 10, 25, 23))  # local midnight to midnight
    slots = slots_between(expr("0 * * * *"), PARIS, *day)
    assert wall(slots)[:-1] == [
        f"25 {hour:02}:00+0{2 if hour < 3 else 1}00" for hour in range(1, 24)
    ]
    assert wall(slots)[-1] == "26 00:00+0100"
    assert at(2026, 10, 25, 1) not in slots  # 02:00 CET, the second 02:00
    assert len(slots) == 24


WINDOWS = {
    "spring": (at(2026, 3, 28, 21), at(2026, 3, 29, 5)),
    "fall": (at(2026, 10, 24, 21), at(2026, 10, 25, 5)),
}


@pytest.mark.parametrize("text", ["*/15 * * * *", "30 2 * * *", "0 * * * *", "* * * * *"])
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_ticking_gives_the_slots_of_one_big_window(text: str, window: str) -> None:
    """What the cron plugin relies on: however time is cut, each slot comes exactly once."""
    expression = expr(text)
    start, end = WINDOWS[window]
    whole = slots_between(expression, PARIS, start, end)
    assert whole == sorted(set(whole))
    # Irregular ticks, some shorter than a minute, some several minutes long.
    steps = itertools.cycle(timedelta(seconds=seconds) for seconds in (1, 5, 59, 60, 61, 299))
    ticked: list[datetime] = []
    previous = start
    while previous < end:
        current = min(previous + next(steps), end)
        ticked.extend(slots_between(expression, PARIS, previous, current))
        previous = current
    assert ticked == whole


@pytest.mark.parametrize("text", ["*/15 * * * *", "30 2 * * *", "0 * * * *"])
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_cutting_at_and_next_to_every_slot_loses_and_repeats_nothing(
    text: str, window: str
) -> None:
    expression = expr(text)
    start, end = WINDOWS[window]
    whole = slots_between(expression, PARIS, start, end)
    second = timedelta(seconds=1)
    cuts = sorted({start, end, *whole, *(s - second for s in whole), *(s + second for s in whole)})
    pieces = [slots_between(expression, PARIS, a, b) for a, b in itertools.pairwise(cuts)]
    assert [slot for piece in pieces for slot in piece] == whole
    # A slot belongs to the window it ends: (s - 1s, s] holds it, (s, s + 1s] does not.
    for slot in whole:
        assert slots_between(expression, PARIS, slot - second, slot) == [slot]
        assert slots_between(expression, PARIS, slot, slot + second) == []


MATCHES: dict[str, Callable[[datetime], bool]] = {
    "*/15 * * * *": lambda local: local.minute % 15 == 0,
    "30 2 * * *": lambda local: (local.hour, local.minute) == (2, 30),
    "0 * * * *": lambda local: local.minute == 0,
}
"""The expressions again, as plain predicates on a wall-clock time (no croniter)."""


def reference_slots(text: str, tz: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """The rule written out by brute force over every minute (no croniter, no fold):
    a wall-clock time runs at its first instant, or if it has none at the first
    instant whose wall clock is past it."""
    minutes = every(after - timedelta(hours=6), until + timedelta(hours=6), timedelta(minutes=1))
    walls = [instant.astimezone(tz).replace(tzinfo=None) for instant in minutes]
    first_instant: dict[datetime, datetime] = {}
    for instant, local in zip(minutes, walls, strict=True):
        first_instant.setdefault(local, instant)
    slots: set[datetime] = set()
    for local in every(min(walls), max(walls), timedelta(minutes=1)):
        if not MATCHES[text](local):
            continue
        if local in first_instant:
            slots.add(first_instant[local])
        else:
            slots.add(next(i for i, w in zip(minutes, walls, strict=True) if w > local))
    return sorted(slot for slot in slots if after < slot <= until)


@pytest.mark.parametrize("text", sorted(MATCHES))
@pytest.mark.parametrize(
    ("zone", "after", "until"),
    [
        ("Europe/Paris", *WINDOWS["spring"]),
        ("Europe/Paris", *WINDOWS["fall"]),
        ("Australia/Lord_Howe", at(2026, 10, 3, 12), at(2026, 10, 3, 20)),  # +30 min
        ("Australia/Lord_Howe", at(2026, 4, 4, 11), at(2026, 4, 4, 19)),  # -30 min
        ("America/New_York", at(2026, 11, 1, 3), at(2026, 11, 1, 9)),
    ],
)
def test_slots_agree_with_the_rule_done_by_brute_force(
    text: str, zone: str, after: datetime, until: datetime
) -> None:
    tz = ZoneInfo(zone)
    assert slots_between(expr(text), tz, after, until) == reference_slots(text, tz, after, until)


@pytest.mark.parametrize("zone", ["Europe/Paris", "Australia/Lord_Howe", "America/Santiago"])
def test_to_utc_never_goes_back_as_the_wall_clock_goes_forward(zone: str) -> None:
    """slots_between and latest_slot bisect on this."""
    tz = ZoneInfo(zone)
    for year_start in (datetime(2026, 1, 1), datetime(2026, 7, 1)):
        locals_ = every(year_start, year_start + timedelta(days=183), timedelta(minutes=30))
        instants = [to_utc(local, tz) for local in locals_]
        assert instants == sorted(instants)


def test_to_utc_maps_the_gap_to_its_end_and_a_repeated_time_to_its_first_occurrence() -> None:
    assert to_utc(datetime(2026, 3, 29, 2, 30), PARIS) == at(2026, 3, 29, 1)
    assert to_utc(datetime(2026, 3, 29, 2, 0), PARIS) == at(2026, 3, 29, 1)
    assert to_utc(datetime(2026, 3, 29, 3, 0), PARIS) == at(2026, 3, 29, 1)
    assert to_utc(datetime(2026, 10, 25, 2, 30), PARIS) == at(2026, 10, 25, 0, 30)
    assert to_utc(datetime(2026, 10, 25, 3, 0), PARIS) == at(2026, 10, 25, 2)


def test_to_utc_finds_a_half_hour_gap() -> None:
    """Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 4 October 2026."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert to_utc(datetime(2026, 10, 4, 2, 15), lord_howe) == at(2026, 10, 3, 15, 30)
    assert to_utc(datetime(2026, 10, 4, 2, 30), lord_howe) == at(2026, 10, 3, 15, 30)


# -- latest slot ------------------------------------------------------------------------


def test_latest_slot_is_at_or_before_now() -> None:
    hourly = expr("0 * * * *")
    assert latest_slot(hourly, UTC_ZONE, at(2026, 5, 1, 10, 30)) == at(2026, 5, 1, 10)
    assert latest_slot(hourly, UTC_ZONE, at(2026, 5, 1, 10)) == at(2026, 5, 1, 10)
    assert latest_slot(hourly, UTC_ZONE, datetime(2026, 5, 1, 9, 59)) == at(2026, 5, 1, 9)


def test_latest_slot_across_spring_forward() -> None:
    daily = expr("30 2 * * *")
    assert latest_slot(daily, PARIS, at(2026, 3, 29, 0, 59)) == at(2026, 3, 28, 1, 30)
    assert latest_slot(daily, PARIS, at(2026, 3, 29, 1)) == at(2026, 3, 29, 1)
    assert latest_slot(daily, PARIS, at(2026, 3, 29, 12)) == at(2026, 3, 29, 1)


def test_latest_slot_across_fall_back() -> None:
    daily = expr("30 2 * * *")
    # 01:40 UTC is 02:40 CET, the second 02:40: the first 02:30 (CEST) was the slot.
    assert latest_slot(daily, PARIS, at(2026, 10, 25, 1, 40)) == at(2026, 10, 25, 0, 30)
    assert latest_slot(daily, PARIS, at(2026, 10, 25, 0, 29)) == at(2026, 10, 24, 0, 30)
    quarterly = expr("*/15 * * * *")
    assert latest_slot(quarterly, PARIS, at(2026, 10, 25, 1, 50)) == at(2026, 10, 25, 0, 45)
    assert latest_slot(quarterly, PARIS, at(2026, 10, 25, 2)) == at(2026, 10, 25, 2)


def test_latest_slot_looks_back_as_far_as_needed() -> None:
    new_year_in_paris = at(2025, 12, 31, 23)
    assert latest_slot(expr("@yearly"), PARIS, at(2026, 6, 1)) == new_year_in_paris
    assert latest_slot(expr("@yearly"), PARIS, new_year_in_paris) == new_year_in_paris
    assert latest_slot(expr("@annually"), UTC_ZONE, at(2026, 6, 1)) == at(2026, 1, 1)
    assert latest_slot(expr("0 0 29 2 *"), UTC_ZONE, at(2026, 6, 1)) == at(2024, 2, 29)


@pytest.mark.parametrize("text", ["*/15 * * * *", "30 2 * * *", "0 * * * *", "@daily"])
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_latest_slot_agrees_with_slots_between(text: str, window: str) -> None:
    expression = expr(text)
    start, end = WINDOWS[window]
    for now in every(start, end, timedelta(minutes=7, seconds=30)):
        earlier = slots_between(expression, PARIS, now - timedelta(days=2), now)
        assert latest_slot(expression, PARIS, now) == earlier[-1], now


# -- Oban(cron=[...]) entries -------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, [], ()])
def test_no_cron_is_no_entries(empty: object) -> None:
    assert check_cron(empty) == ()


@pytest.mark.parametrize("value", ["0 * * * *", {"0 * * * *": "Mailer"}, 5])
def test_cron_must_be_a_list(value: object) -> None:
    with pytest.raises(ConfigError, match=f"cron must be a list .* got {type(value).__name__}"):
        check_cron(value)


@pytest.mark.parametrize("item", ["0 * * * *", ("0 * * * *",), ("0 * * * *", 1, {}, 2)])
def test_an_entry_of_the_wrong_shape_is_named(cron_workers: ModuleType, item: object) -> None:
    with pytest.raises(ConfigError) as raised:
        check_cron([("@daily", cron_workers.Mailer), item])
    assert str(raised.value) == (
        f"cron entry 2 must be (expression, worker) or (expression, worker, options), got {item!r}"
    )


def test_an_entry_with_a_bad_expression(cron_workers: ModuleType) -> None:
    with pytest.raises(ConfigError) as raised:
        check_cron([("*/5 * * *", cron_workers.Mailer)])
    assert str(raised.value).startswith(
        "cron entry 1: cron expression '*/5 * * *' is not valid: it has 4 fields"
    )
    assert isinstance(raised.value.__cause__, ConfigError)


@pytest.mark.parametrize(
    "name", ["NotAWorker", "UndecoratedSubclass", "instance", "a name", "a function"]
)
def test_an_entry_whose_worker_is_not_one(cron_workers: ModuleType, name: str) -> None:
    not_workers: dict[str, object] = {
        "NotAWorker": cron_workers.NotAWorker,
        "UndecoratedSubclass": cron_workers.UndecoratedSubclass,
        "instance": cron_workers.Mailer(),
        "a name": f"{HELPER}.Mailer",
        "a function": len,
    }
    target = not_workers[name]
    with pytest.raises(ConfigError) as raised:
        check_cron([("@daily", cron_workers.Mailer), ("@hourly", target)])
    assert str(raised.value).startswith(
        f"cron entry 2: {target!r} is not a @worker class or @job function; "
    )


@pytest.mark.parametrize("option", ["schedule_in", "unique", "scheduled_at", "cron"])
def test_an_entry_with_an_unknown_option(cron_workers: ModuleType, option: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_cron([("@daily", cron_workers.Mailer, {"args": {}, option: 1})])
    assert str(raised.value).startswith(
        f"cron entry 1: unknown option {option!r}; cron entries take "
        "args, max_attempts, meta, priority, queue, tags"
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"priority": 10}, "priority must be between 0"),
        ({"queue": " "}, "queue must be a non-blank string"),
        ({"args": [1, 2]}, "args must be a dict"),
        ({"args": {"when": object()}}, "args must be JSON-encodable"),
        ({"max_attempts": 0}, "max_attempts must be from 1 to 32767"),
        ({"meta": ["x"]}, "meta must be a dict"),
        ({"tags": "email"}, "tags must be a list of strings"),
        ({"tags": {"email"}}, "lists, not sets"),
    ],
)
def test_an_entry_with_a_bad_option_value(
    cron_workers: ModuleType, options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=r"^cron entry 1: ") as raised:
        check_cron([("@daily", cron_workers.Mailer, options)])
    assert fragment in str(raised.value)


def test_the_options_must_be_a_dict(cron_workers: ModuleType) -> None:
    with pytest.raises(ConfigError, match=r"^cron entry 1: options must be a dict .* got list"):
        check_cron([("@daily", cron_workers.Mailer, [("args", {})])])


def test_a_job_functions_args_must_fit_its_parameters(cron_workers: ModuleType) -> None:
    (entry,) = check_cron([("@daily", cron_workers.send, {"args": {"to": "a@b.c"}})])
    assert entry.new_job(at(2026, 1, 1)).args == {"to": "a@b.c"}
    with pytest.raises(ConfigError, match=r"^cron entry 1: args \{\} do not fit .*send"):
        check_cron([("@daily", cron_workers.send)])


def test_the_key_is_canonical_text(cron_workers: ModuleType) -> None:
    one, two = check_cron(
        [
            ("*/5 * * * *", cron_workers.Mailer, {"args": {"b": 2, "a": 1}, "queue": "q"}),
            ("*/5  *  * * *", cron_workers.Mailer, {"queue": "q", "args": {"a": 1, "b": [2]}}),
        ]
    )
    assert (
        one.key == '*/5 * * * * tests.unit.cron_workers.Mailer {"args":{"a":1,"b":2},"queue":"q"}'
    )
    assert (
        two.key == '*/5 * * * * tests.unit.cron_workers.Mailer {"args":{"a":1,"b":[2]},"queue":"q"}'
    )
    (bare,) = check_cron([("@daily", cron_workers.send, {"args": {"to": "x"}})])
    assert bare.key == '@daily tests.unit.cron_workers.send {"args":{"to":"x"}}'


def test_identical_entries_collapse_to_one(cron_workers: ModuleType) -> None:
    entries = check_cron(
        [
            ("@daily", cron_workers.Mailer, {"args": {"a": 1, "b": 2}}),
            ["@daily", cron_workers.Mailer, {"args": {"b": 2, "a": 1}}],
            ("@DAILY", cron_workers.Mailer, {"args": {"a": 1, "b": 2}}),
            ("@daily", cron_workers.Mailer),
            ("@daily", cron_workers.Mailer, {}),
        ]
    )
    assert [entry.options for entry in entries] == [{"args": {"a": 1, "b": 2}}, {}]
    assert entries[0] == CronEntry(
        parse_expression("@daily"), cron_workers.Mailer, {"args": {"b": 2, "a": 1}}
    )
    assert len({*entries, *entries}) == 2


def test_an_entry_makes_a_job_from_the_worker_defaults_and_its_options(
    cron_workers: ModuleType,
) -> None:
    (entry,) = check_cron(
        [("0 9 * * MON-FRI", cron_workers.Mailer, {"args": {"to": "x"}, "priority": 3})]
    )
    job = entry.new_job(at(2026, 3, 29, 1))
    assert isinstance(job, Job)
    assert (job.worker, job.queue, job.max_attempts, job.priority, job.tags) == (
        "tests.unit.cron_workers.Mailer",
        "mailers",
        5,
        3,
        ["email"],
    )
    assert job.args == {"to": "x"}
    assert job.meta == {
        "source": "worker",
        "cron": True,
        "cron_expr": "0 9 * * MON-FRI",
        "cron_slot": "2026-03-29T01:00:00Z",
    }
    assert job.scheduled_at is None
    assert job.state == "available"


def test_an_entrys_meta_replaces_the_workers_and_keeps_the_cron_keys(
    cron_workers: ModuleType,
) -> None:
    (entry,) = check_cron([("@hourly", cron_workers.Mailer, {"meta": {"cron": "mine", "k": 1}})])
    assert entry.new_job(datetime(2026, 1, 1, 5)).meta == {
        "k": 1,
        "cron": True,
        "cron_expr": "@hourly",
        "cron_slot": "2026-01-01T05:00:00Z",
    }
    in_paris = at(2026, 1, 1, 5).astimezone(PARIS)
    assert entry.new_job(in_paris).meta["cron_slot"] == "2026-01-01T05:00:00Z"


# -- @worker(cron=...) ------------------------------------------------------------------


def test_worker_schedules_are_found_for_their_instance(cron_workers: ModuleType) -> None:
    entries = cron_entries_of_workers(cron_workers.OBAN)
    assert [entry.key for entry in entries] == [
        "*/15 * * * * tests.unit.cron_workers.Poller {}",
        "0 9 * * MON-FRI tests.unit.cron_workers.Poller {}",
        "@daily tests.unit.cron_workers.DailyReport {}",
        "@hourly tests.unit.cron_workers.cleanup {}",
    ]
    assert [entry.key for entry in cron_entries_of_workers("another-instance")] == [
        "@daily tests.unit.cron_workers.ElsewhereReport {}"
    ]
    assert cron_entries_of_workers("oban") == ()


def test_worker_schedules_make_jobs_from_the_worker_defaults(cron_workers: ModuleType) -> None:
    by_worker = {
        entry.spec.name.rsplit(".")[-1]: entry
        for entry in cron_entries_of_workers(cron_workers.OBAN)
    }
    report = by_worker["DailyReport"].new_job(at(2026, 5, 1))
    assert (report.queue, report.max_attempts, report.args) == ("reports", 3, {})
    assert report.meta == {"cron": True, "cron_expr": "@daily", "cron_slot": "2026-05-01T00:00:00Z"}
    poll = by_worker["Poller"].new_job(at(2026, 5, 1))
    assert poll.meta["v"] == 1
    cleanup = by_worker["cleanup"].new_job(at(2026, 5, 1))
    assert (cleanup.worker, cleanup.queue, cleanup.args) == (
        "tests.unit.cron_workers.cleanup",
        "maintenance",
        {},
    )


def test_a_worker_keeps_its_parsed_schedules(cron_workers: ModuleType) -> None:
    assert cron_workers.Poller.__oban_worker__.cron == (
        CronExpression("*/15 * * * *"),
        CronExpression("0 9 * * MON-FRI"),
    )
    assert cron_workers.Mailer.__oban_worker__.cron == ()


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("*/5 * * *", "cron expression '*/5 * * *' is not valid"),
        (["@daily", "61 * * * *"], "cron expression '61 * * * *' is not valid"),
        (5, "must be a cron expression or a list of them, got int: 5"),
        ([5], "must be a string"),
    ],
)
def test_a_bad_worker_schedule_fails_at_decoration(
    monkeypatch: pytest.MonkeyPatch, cron: object, fragment: str
) -> None:
    monkeypatch.setattr(worker_module, "_registry", dict(worker_module._registry))
    with pytest.raises(ConfigError) as raised:

        @worker(cron=cron)  # type: ignore[arg-type]  # the point: a value of the wrong type
        class Broken:
            def process(self, job: Job) -> None: ...

    assert str(raised.value).startswith("cron= of worker 'tests.unit.test_cron.")
    assert fragment in str(raised.value)
    assert not any(name.endswith(".Broken") for name in worker_module._registry)


def test_a_scheduled_job_function_needs_no_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_registry", dict(worker_module._registry))
    with pytest.raises(
        ConfigError, match=r"@job\(cron=...\) on .*needs_args: .*missing a required"
    ):

        @job_function(cron="@daily")
        def needs_args(path: str) -> None: ...


def test_cron_is_not_a_job_option(cron_workers: ModuleType) -> None:
    with pytest.raises(JobValidationError, match="unknown job option 'cron'"):
        cron_workers.Mailer.new({}, cron="@daily")


def test_the_helper_workers_never_leak_into_the_registry() -> None:
    """Without the fixture, none of the helper's workers are registered (whatever ran before)."""
    assert not [name for name in worker_module._registry if name.startswith(HELPER + ".")]
    assert HELPER not in sys.modules
