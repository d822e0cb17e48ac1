"""``unique=`` and ``replace=``: parsing, defaults, and errors that name the bad part.

Pure tests: no engine. What a parsed spec *does* on insert is in the engine
conformance suite (``tests/engines/test_unique.py``).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import Job, JobState, JobValidationError, Worker, worker
from oban.unique import (
    DEFAULT_STATES,
    STATE_GROUPS,
    ReplaceSpec,
    UniqueSpec,
    lock_key,
    parse_replace,
    parse_unique,
)


@worker(queue="mail", unique={"period": 120, "keys": ["id"]})
class UniqueMailer(Worker):
    def process(self, job: Job) -> None: ...


# -- defaults ---------------------------------------------------------------------------


def test_true_means_every_default() -> None:
    spec = parse_unique(True)
    assert spec == UniqueSpec()
    assert spec is not None
    assert spec.period == 60
    assert spec.fields == ("worker", "queue", "args")
    assert spec.keys == ()
    assert spec.timestamp == "inserted_at"


def test_default_states_are_all_but_cancelled_and_discarded() -> None:
    assert set(DEFAULT_STATES) == set(JobState) - {JobState.CANCELLED, JobState.DISCARDED}
    assert UniqueSpec().states == DEFAULT_STATES


@pytest.mark.parametrize("value", [None, False])
def test_none_and_false_mean_not_unique(value: object) -> None:
    assert parse_unique(value) is None
    assert Job("w", unique=value).unique is None  # type: ignore[arg-type]


def test_a_spec_passes_through_unchanged() -> None:
    spec = UniqueSpec(period=5)
    assert parse_unique(spec) is spec


# -- normalisation ----------------------------------------------------------------------


def test_fields_keep_a_canonical_order_without_duplicates() -> None:
    spec = UniqueSpec(fields=["meta", "args", "worker", "args"])  # type: ignore[arg-type]
    assert spec.fields == ("worker", "args", "meta")


def test_keys_are_sorted_and_deduplicated() -> None:
    spec = UniqueSpec(keys=["b", "a", "b"])  # type: ignore[arg-type]
    assert spec.keys == ("a", "b")


def test_states_accept_names_enum_members_and_groups() -> None:
    spec = UniqueSpec(states=["completed", JobState.AVAILABLE])  # type: ignore[arg-type]
    assert spec.states == (JobState.AVAILABLE, JobState.COMPLETED)
    for name, group in STATE_GROUPS.items():
        assert UniqueSpec(states=name).states == group  # type: ignore[arg-type]
    assert set(STATE_GROUPS["all"]) == set(JobState)
    assert JobState.COMPLETED not in STATE_GROUPS["incomplete"]


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(30, 30.0), (1.5, 1.5), (timedelta(hours=1), 3600.0), (None, None), (math.inf, None)],
)
def test_period_forms(given: Any, seconds: float | None) -> None:
    assert UniqueSpec(period=given).period == seconds


def test_since_is_now_minus_period_or_none_forever() -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert UniqueSpec(period=60).since(now) == now - timedelta(seconds=60)
    assert UniqueSpec(period=None).since(now) is None
    # Longer than recorded time: the same as forever, not an OverflowError.
    assert UniqueSpec(period=1e15).since(now) is None


def test_specs_are_frozen_and_hashable() -> None:
    spec = UniqueSpec()
    with pytest.raises(AttributeError):
        spec.period = 5  # type: ignore[misc]
    assert hash(spec) == hash(UniqueSpec())


# -- errors name the bad part -------------------------------------------------------------


@pytest.mark.parametrize(
    ("unique", "message"),
    [
        ({"period": 0}, "period must be greater than 0"),
        ({"period": -5}, "period must be greater than 0"),
        ({"period": math.nan}, "period must be greater than 0"),
        ({"period": "60"}, "period must be a number of seconds"),
        ({"period": True}, "period must be a number of seconds"),
        ({"fields": ["args", "priority"]}, "unknown unique field 'priority'"),
        ({"fields": []}, "unique fields must name at least one"),
        ({"fields": "args"}, "unique fields must be a list"),
        ({"keys": [1]}, "unique keys must be non-empty strings"),
        ({"keys": [""]}, "unique keys must be non-empty strings"),
        ({"keys": "id"}, "unique keys must be a list"),
        ({"keys": ["id"], "fields": ["worker", "queue"]}, "fields must include 'args' or 'meta'"),
        ({"states": ["available", "finished"]}, "unknown unique state 'finished'"),
        ({"states": []}, "unique states must name at least one state"),
        ({"states": "unfinished"}, "unknown unique states group 'unfinished'"),
        ({"states": 3}, "unique states must be a list"),
        ({"timestamp": "attempted_at"}, "unique timestamp must be one of"),
        ({"perod": 60}, "unknown unique option 'perod'"),
        ("yes", "unique must be True, a dict of options"),
        (60, "unique must be True, a dict of options"),
    ],
)
def test_bad_unique_options_name_the_bad_part(unique: object, message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        parse_unique(unique)
    # The same error wherever the option is written.
    with pytest.raises(JobValidationError, match=message):
        UniqueMailer.new({"id": 1}, unique=unique)
    with pytest.raises(JobValidationError, match=message):
        Job("w", unique=unique)  # type: ignore[arg-type]


def test_bad_unique_on_a_worker_fails_at_decoration() -> None:
    with pytest.raises(JobValidationError, match="unknown unique field 'prio'"):

        @worker(unique={"fields": ["prio"]})
        class Bad:
            def process(self, job: Job) -> None: ...


# -- replace ------------------------------------------------------------------------------


def test_replace_is_keyed_by_the_existing_jobs_state() -> None:
    spec = parse_replace({"scheduled": ["scheduled_at", "args"], JobState.AVAILABLE: ["priority"]})
    assert spec == ReplaceSpec(
        (
            (JobState.AVAILABLE, ("priority",)),
            (JobState.SCHEDULED, ("args", "scheduled_at")),
        )
    )
    assert spec.fields_for(JobState.SCHEDULED) == ("args", "scheduled_at")
    assert spec.fields_for(JobState.EXECUTING) == ()


@pytest.mark.parametrize("value", [None, {}, {"scheduled": []}])
def test_empty_replace_replaces_nothing(value: object) -> None:
    assert parse_replace(value) is None


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"waiting": ["args"]}, "unknown replace state 'waiting'"),
        ({"scheduled": ["attempt"]}, "cannot replace 'attempt'"),
        ({"scheduled": ["state", "errors"]}, "cannot replace 'state', 'errors'"),
        ({"scheduled": "scheduled_at"}, r"replace\['scheduled'\] must be a list"),
        (["scheduled_at"], "replace must be a dict of existing-job state"),
    ],
)
def test_bad_replace_options_name_the_bad_part(replace: object, message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        parse_replace(replace)
    with pytest.raises(JobValidationError, match=message):
        UniqueMailer.new({"id": 1}, replace=replace)


# -- worker defaults and per-job options --------------------------------------------------


def test_worker_unique_applies_to_every_job() -> None:
    job = UniqueMailer.new({"id": 1})
    assert job.unique == UniqueSpec(period=120, keys=("id",))


def test_per_job_unique_replaces_the_workers_whole() -> None:
    job = UniqueMailer.new({"id": 1}, unique={"fields": ["args"]})
    # Not merged: period is back to the default, keys are gone.
    assert job.unique == UniqueSpec(fields=("args",))


@pytest.mark.parametrize("value", [None, False])
def test_per_job_unique_none_or_false_turns_it_off(value: object) -> None:
    assert UniqueMailer.new({"id": 1}, unique=value).unique is None


def test_function_workers_take_unique_too() -> None:
    from oban import job as job_decorator

    @job_decorator(unique={"period": None})
    def ping(host: str) -> None: ...

    assert ping.new("a").unique == UniqueSpec(period=None)
    assert ping.options(unique=False).new("a").unique is None


# -- lock keys ----------------------------------------------------------------------------


def test_lock_key_is_equal_for_jobs_that_would_match() -> None:
    spec = UniqueSpec(keys=("id",))
    a = Job("w", args={"id": 1, "x": 1})
    b = Job("w", args={"x": 2, "id": 1})
    c = Job("w", args={"id": 2})
    assert lock_key(spec, a) == lock_key(spec, b)
    assert lock_key(spec, a) != lock_key(spec, c)
    assert -(2**63) <= lock_key(spec, a) < 2**63


def test_lock_key_tells_a_missing_key_from_a_null_one() -> None:
    spec = UniqueSpec(keys=("id",))
    assert lock_key(spec, Job("w", args={})) != lock_key(spec, Job("w", args={"id": None}))


def test_lock_key_depends_on_the_namespace() -> None:
    spec = UniqueSpec()
    job = Job("w", args={"id": 1})
    assert lock_key(spec, job, "a") != lock_key(spec, job, "b")
