"""The built-in logging handler: one structured record per event, off unless asked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from oban import ConfigError, JobState, Oban, telemetry
from oban.observability import log
from tests.observability import workers


@pytest.fixture(autouse=True)
def _logger_detached() -> Iterator[None]:
    log.detach_logger()
    yield
    log.detach_logger()


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == log.LOGGER]


def test_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    oban = Oban(testing="inline")
    with caplog.at_level(logging.DEBUG):
        oban.enqueue(workers.Succeed.new({}))
    assert records(caplog) == []
    assert telemetry.handlers() == ()


def test_key_value_records(caplog: pytest.LogCaptureFixture) -> None:
    oban = Oban(testing="inline", telemetry_log=True)
    with caplog.at_level(logging.INFO, logger=log.LOGGER):
        done = oban.enqueue(workers.Succeed.new({}))
        oban.enqueue(workers.Fail.new({"n": 3}))
    lines = [r.getMessage() for r in records(caplog)]
    assert f"event=job.start id={done.id} worker=tests.observability.workers.Succeed" in lines[0]
    stop = next(r for r in records(caplog) if r.oban_event == "job.stop")  # type: ignore[attr-defined]  # set by extra=
    assert stop.levelno == logging.INFO
    assert "state=completed" in stop.getMessage()
    assert "duration=" in stop.getMessage()
    assert stop.oban["id"] == done.id  # type: ignore[attr-defined]  # set by extra=
    failure = next(r for r in records(caplog) if r.oban_event == "job.exception")  # type: ignore[attr-defined]  # set by extra=
    assert failure.levelno == logging.WARNING
    assert 'error_type=Boom error_message="boom 3"' in failure.getMessage()
    assert "Traceback" in failure.oban["error_traceback"]  # type: ignore[attr-defined]  # set by extra=


def test_json_records_and_one_handler_per_process(caplog: pytest.LogCaptureFixture) -> None:
    Oban(testing="inline", telemetry_log="json", telemetry_log_level="debug")
    oban = Oban(testing="inline", name="second", telemetry_log="json", telemetry_log_level="debug")
    assert len(telemetry.handlers()) == 1
    with caplog.at_level(logging.DEBUG, logger=log.LOGGER):
        job = oban.enqueue(workers.Succeed.new({}))
    events = [orjson.loads(r.getMessage()) for r in records(caplog)]
    assert [e["event"] for e in events] == ["job.start", "job.stop", "job.insert"]
    assert all(r.levelno == logging.DEBUG for r in records(caplog))
    assert events[1]["id"] == job.id
    assert events[1]["state"] == JobState.COMPLETED.value
    assert "job" not in events[1]


def test_bad_settings_say_what_works() -> None:
    with pytest.raises(ConfigError, match="'kv' or 'json'"):
        Oban(testing="inline", telemetry_log="yaml")  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ConfigError, match="not a logging level"):
        Oban(testing="inline", telemetry_log=True, telemetry_log_level="loud")


def test_no_print_in_the_library() -> None:
    """Everything the library says goes through logging (ruff's T20 also guards this)."""
    package = Path(__file__).resolve().parents[2] / "oban"
    offenders = [
        str(path)
        for path in package.rglob("*.py")
        if "print(" in path.read_text(encoding="utf-8") and "cli" not in path.parts
    ]
    assert offenders == []
