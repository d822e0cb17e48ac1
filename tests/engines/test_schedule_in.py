"""``schedule_in`` counts from the inserting Oban's clock, on every engine that stores jobs.

A job built with ``schedule_in=60`` shows the delay from the wall clock until
it is saved; the row gets the engine's ``now`` (Oban's injected clock) plus
the delay, so a frozen or offset clock governs scheduling as it governs
everything else.
"""

from __future__ import annotations

from datetime import timedelta

from oban import Job, JobState
from oban.engines import Engine
from tests.engines.test_conformance import NOW, WORKER, get, insert_one, persistent


@persistent
def test_schedule_in_counts_from_the_insert_clock(engine: Engine) -> None:
    saved = insert_one(engine, Job(WORKER, schedule_in=60))
    assert saved.scheduled_at == NOW + timedelta(seconds=60)
    assert saved.state is JobState.SCHEDULED
    stored = get(engine, saved.id)
    assert stored.scheduled_at == NOW + timedelta(seconds=60)
    assert stored.state is JobState.SCHEDULED


@persistent
def test_update_with_schedule_in_counts_from_the_insert_clock(engine: Engine) -> None:
    job = Job(WORKER).update({"schedule_in": timedelta(minutes=5)})
    saved = insert_one(engine, job)
    assert get(engine, saved.id).scheduled_at == NOW + timedelta(minutes=5)


@persistent
def test_a_scheduled_at_set_after_schedule_in_wins(engine: Engine) -> None:
    job = Job(WORKER, schedule_in=60)
    job.scheduled_at = NOW + timedelta(hours=1)
    assert get(engine, insert_one(engine, job).id).scheduled_at == NOW + timedelta(hours=1)
    later = Job(WORKER, schedule_in=60).update({"scheduled_at": NOW + timedelta(hours=2)})
    assert get(engine, insert_one(engine, later).id).scheduled_at == NOW + timedelta(hours=2)


@persistent
def test_schedule_in_zero_is_available_at_once(engine: Engine) -> None:
    saved = insert_one(engine, Job(WORKER, schedule_in=0))
    assert saved.state is JobState.AVAILABLE
    assert get(engine, saved.id).scheduled_at == NOW
