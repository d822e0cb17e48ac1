"""oban.telemetry itself: attach, detach, filtering, and handlers that fail."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import oban
from oban import ConfigError, telemetry
from tests.observability.conftest import Recorder


def test_no_handler_means_inactive() -> None:
    assert telemetry.handlers() == ()
    assert telemetry.active is False
    assert not telemetry.listening("job.start")


def test_attach_all_and_detach() -> None:
    seen = Recorder()
    handle = telemetry.attach(seen)
    assert telemetry.active is True
    telemetry.emit("job.insert", {"count": 1})
    telemetry.emit("plugin.mine", {"count": 2})
    assert telemetry.detach(handle) is True
    assert telemetry.detach(handle) is False
    telemetry.emit("job.insert", {"count": 3})
    assert seen.events == [("job.insert", {"count": 1}), ("plugin.mine", {"count": 2})]
    assert telemetry.active is False


def test_attach_only_some_events() -> None:
    seen = Recorder()
    telemetry.attach(seen, events=["job.stop", "plugin.pruner"])
    assert telemetry.listening("job.stop")
    assert not telemetry.listening("job.start")
    for name in ("job.start", "job.stop", "plugin.pruner", "plugin.stager"):
        telemetry.emit(name, {})
    assert [name for name, _ in seen.events] == ["job.stop", "plugin.pruner"]


def test_unknown_event_names_and_a_bare_string_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown telemetry event"):
        telemetry.attach(Recorder(), events=["job.started"])
    with pytest.raises(ConfigError, match=r"events=\['job.stop'\]"):
        telemetry.attach(Recorder(), events="job.stop")
    with pytest.raises(ConfigError, match="callable"):
        telemetry.attach("not a function", events=None)  # type: ignore[arg-type]  # on purpose
    assert telemetry.handlers() == ()


def test_a_raising_handler_is_logged_once_and_detached(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(event: str, data: dict[str, Any]) -> None:
        calls.append(event)
        raise RuntimeError("handler bug")

    seen = Recorder()
    telemetry.attach(broken)
    telemetry.attach(seen)
    with caplog.at_level(logging.ERROR, logger="oban"):
        telemetry.emit("job.insert", {"count": 1})
        telemetry.emit("job.insert", {"count": 2})
    assert calls == ["job.insert"]
    assert [data["count"] for _, data in seen.events] == [1, 2]
    failures = [r for r in caplog.records if "was detached" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert len(telemetry.handlers()) == 1


def test_handlers_from_many_threads() -> None:
    seen = Recorder()
    telemetry.attach(seen, events=["ack.write"])

    def emit_many() -> None:
        for n in range(200):
            telemetry.emit("ack.write", {"count": n})

    threads = [threading.Thread(target=emit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen.events) == 800


def test_the_module_is_public() -> None:
    assert "telemetry" in oban.__all__
    assert oban.telemetry is telemetry
    assert callable(telemetry.attach)
    assert callable(telemetry.detach)
    assert "job.exception" in telemetry.EVENTS


@pytest.mark.anyio
async def test_a_loop_reports_each_database_error() -> None:
    from oban.errors import DatabaseError
    from oban.runtime.loops import Loop

    seen = Recorder()
    telemetry.attach(seen, events=["db.error"])
    failures = 0

    async def tick() -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise DatabaseError("database error: connection refused")
        if failures == 2:
            failures += 1
            raise ValueError("not a database error")
        loop.stop()

    loop = Loop(
        "fetching from queue 'q'", tick, interval=None, immediate=True, error_backoff=(0, 0)
    )
    await loop.run()
    assert [data["loop"] for _, data in seen.events] == ["fetching from queue 'q'"] * 2
    error = seen.events[0][1]["error"]
    assert error["type"] == "DatabaseError"
    assert error["message"] == "database error: connection refused"
    assert seen.events[1][1]["failures"] == 2
