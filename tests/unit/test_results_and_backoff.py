"""What process() may return (Snooze, Cancel, Record) and the default retry backoff."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from oban import Cancel, JobValidationError, Record, Snooze
from oban.backoff import CLAMPED_ATTEMPT, default_backoff
from oban.results import RECORDED_LIMIT


def zero() -> float:
    return 0.0


def almost_one() -> float:
    return 0.999


# -- Snooze -------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 1, 60, 1.5])
def test_snooze_accepts_non_negative_numbers(seconds: float) -> None:
    assert Snooze(seconds).seconds == seconds


@pytest.mark.parametrize("seconds", [-1, -0.5])
def test_snooze_rejects_negative(seconds: float) -> None:
    with pytest.raises(JobValidationError, match="must not be negative"):
        Snooze(seconds)


@pytest.mark.parametrize("seconds", ["60", None, True, [60], timedelta(seconds=60)])
def test_snooze_rejects_non_numbers(seconds: Any) -> None:
    with pytest.raises(JobValidationError, match="needs a number of seconds"):
        Snooze(seconds)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf")])
def test_snooze_rejects_non_finite(seconds: float) -> None:
    with pytest.raises(JobValidationError, match="finite"):
        Snooze(seconds)


def test_snooze_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Snooze"):
        Snooze(-5)


def test_results_are_frozen() -> None:
    snooze = Snooze(5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snooze.seconds = 10  # type: ignore[misc]


# -- Cancel -------------------------------------------------------------------------------


def test_cancel_keeps_its_reason_and_has_a_default() -> None:
    assert Cancel("user left").reason == "user left"
    assert Cancel().reason
    assert Cancel("a") == Cancel("a")


# -- Record -------------------------------------------------------------------------------


def test_record_encodes_its_value() -> None:
    record = Record({"total": 3, "items": (1, 2)})
    assert orjson.loads(record.encoded) == {"total": 3, "items": [1, 2]}
    assert record.limit == RECORDED_LIMIT


@pytest.mark.parametrize("value", [{1, 2}, object(), {"nested": {"s": {1}}}], ids=repr)
def test_record_rejects_non_json(value: Any) -> None:
    with pytest.raises(JobValidationError, match="recorded value must be JSON-encodable"):
        Record(value)


def test_record_over_the_limit_says_the_size_and_the_limit() -> None:
    value = "x" * 100  # encodes to 102 bytes with its quotes
    with pytest.raises(
        JobValidationError, match=r"recorded value is 102 bytes, over the limit of 10\b"
    ):
        Record(value, limit=10)


def test_record_exactly_at_the_limit_is_accepted() -> None:
    assert len(Record("x" * 8, limit=10).encoded) == 10


def test_record_default_limit_is_64_mib() -> None:
    assert RECORDED_LIMIT == 64 * 1024 * 1024
    with pytest.raises(JobValidationError, match=f"over the limit of {RECORDED_LIMIT}"):
        Record("x" * RECORDED_LIMIT)


# -- default_backoff ------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, 21))
def test_backoff_without_jitter_is_15_plus_2_to_the_attempt(attempt: int) -> None:
    assert default_backoff(attempt, 20, rand=zero) == 15 + 2**attempt


@pytest.mark.parametrize("attempt", range(1, 21))
def test_backoff_jitter_adds_at_most_ten_percent(attempt: int) -> None:
    base = 15 + 2**attempt
    delay = default_backoff(attempt, 20, rand=almost_one)
    assert base <= delay <= base * 1.1


@pytest.mark.parametrize("attempt", [0, 1, 5, 19])
def test_backoff_with_real_randomness_stays_in_the_band(attempt: int) -> None:
    base = 15 + 2**attempt
    rng = random.Random(attempt)
    for _ in range(200):
        delay = default_backoff(attempt, 20, rand=rng.random)
        assert base <= delay <= base * 1.1


def test_backoff_is_never_below_the_base() -> None:
    for attempt in range(21):
        assert default_backoff(attempt, 20, rand=zero) >= 15
        assert default_backoff(attempt, 20) >= 15 + 2**attempt


def test_backoff_grows_with_attempts() -> None:
    delays = [default_backoff(attempt, 20, rand=zero) for attempt in range(1, 21)]
    assert delays == sorted(delays)
    assert len(set(delays)) == len(delays)


def test_backoff_clamps_attempts_when_max_attempts_is_large() -> None:
    top = default_backoff(CLAMPED_ATTEMPT, 20, rand=zero)
    assert top == 15 + 2**20
    assert default_backoff(1000, 1000, rand=zero) == top
    assert default_backoff(1000, 1000, rand=almost_one) <= top * 1.1


def test_backoff_stays_bounded_for_every_attempt_of_a_long_job() -> None:
    top = default_backoff(CLAMPED_ATTEMPT, 20, rand=almost_one)
    delays = [default_backoff(attempt, 1000, rand=almost_one) for attempt in range(1, 1001)]
    assert max(delays) <= top
    assert delays == sorted(delays)


def test_backoff_does_not_overflow_a_schedule() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for attempt, max_attempts in [(1000, 1000), (10**6, 10**6), (999, 1000)]:
        delay = default_backoff(attempt, max_attempts, rand=almost_one)
        assert isinstance(delay, int)
        assert now + timedelta(seconds=delay) < now + timedelta(days=15)


def test_error_pause_doubles_from_the_low_bound_to_the_high_one() -> None:
    from oban.backoff import error_pause

    pauses = [error_pause(n, (0.1, 5.0), rand=lambda: 1.0) for n in range(1, 10)]
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(pauses) == 5.0
    assert error_pause(1_000_000, (0.1, 5.0), rand=lambda: 1.0) == 5.0


def test_error_pause_keeps_half_to_all_of_the_pause() -> None:
    from oban.backoff import error_pause

    assert error_pause(3, (0.1, 5.0), rand=lambda: 0.0) == 0.2
    assert error_pause(3, (0.1, 5.0), rand=lambda: 0.999) <= 0.4
