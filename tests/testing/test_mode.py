"""``mode``: an existing instance switched to inline or manual for a block, then restored."""

from __future__ import annotations

import pytest

import oban
from oban import AlreadyRunningError, ConfigError, JobState
from oban.testing import assert_enqueued, drain_queue, mode, refute_enqueued
from tests.conftest import SqlDatabase
from tests.testing.workers import Ok


def mode_now(instance: oban.Oban) -> str | None:
    """The instance's mode, read afresh (a type checker keeps the one seen in the block)."""
    return instance.testing


def test_inline_runs_jobs_at_enqueue_and_stores_nothing(database: SqlDatabase) -> None:
    instance = database.make_oban()
    engine, before = instance.engine, instance.testing
    with mode("inline") as switched:
        assert switched is instance
        assert instance.testing == "inline"
        ran = Ok.enqueue({"n": 1})
        assert ran.state is JobState.COMPLETED
    assert instance.engine is engine
    assert before is None
    assert mode_now(instance) is None
    refute_enqueued(worker=Ok)
    assert instance.list_jobs() == []


def test_manual_on_an_inline_instance_with_a_database_stores_jobs(database: SqlDatabase) -> None:
    instance = database.make_oban(testing="inline")
    with mode("manual", instance):
        Ok.enqueue({"n": 1})
        [job] = assert_enqueued(worker=Ok, args={"n": 1})
        assert drain_queue(queue="default")["completed"] == 1
    assert isinstance(instance.engine, oban.Inline)
    assert Ok.enqueue({}).state is JobState.COMPLETED  # inline again
    assert job.id is not None


def test_manual_needs_a_database() -> None:
    instance = oban.Oban(testing="inline")
    with pytest.raises(ConfigError, match="no database"), mode("manual", instance):
        pass  # pragma: no cover - never entered


def test_manual_on_a_stored_instance_keeps_its_engine(database: SqlDatabase) -> None:
    instance = database.make_oban()
    engine = instance.engine
    with mode("manual"):
        assert instance.engine is engine
        assert instance.testing == "manual"
    assert instance.testing is None


def test_a_running_instance_is_refused(database: SqlDatabase) -> None:
    instance = database.make_oban(queues={"default": 1})
    refused = pytest.raises(AlreadyRunningError, match="stop it before switching")
    with instance, refused, mode("inline", instance):
        pass  # pragma: no cover - never entered


def test_leaving_the_block_while_running_is_refused(database: SqlDatabase) -> None:
    instance = database.make_oban()
    refused = pytest.raises(AlreadyRunningError, match="stop it before leaving")
    with refused, mode("manual", instance):
        instance.start()
    instance.stop()


def test_an_unknown_mode_is_a_config_error(database: SqlDatabase) -> None:
    instance = database.make_oban()
    with pytest.raises(ConfigError, match="testing"), mode("sometimes", instance):  # type: ignore[arg-type]  # under test
        pass  # pragma: no cover - never entered
    assert instance.testing is None


def test_the_block_restores_even_when_it_raises(database: SqlDatabase) -> None:
    instance = database.make_oban()
    engine = instance.engine
    with pytest.raises(RuntimeError), mode("inline"):
        raise RuntimeError("in the block")
    assert instance.engine is engine
