"""The built-in telemetry handler: every event as one structured ``logging`` record.

Off unless asked for (``Oban(telemetry_log=True)`` or :func:`attach_logger`),
since most applications log failed jobs their own way. Records go to the
``oban.events`` logger, so the application's logging configuration decides
where they end up; each record carries the event's fields in
``record.oban_event`` and ``record.oban`` for log processors that want the
values rather than the text.

Two formats: ``"kv"`` (``event=job.stop id=12 worker=app.Mail state=completed
duration=0.0042``, for reading) and ``"json"`` (one JSON object, for log
pipelines). A failure (``job.exception``, ``db.error``, a lost notifier
connection) is logged at least at WARNING, whatever the level.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Literal, cast

import orjson

from .. import telemetry
from ..errors import ConfigError

__all__ = ["FORMATS", "LOGGER", "attach_logger", "detach_logger", "event_fields"]

LOGGER = "oban.events"
FORMATS = ("kv", "json")
Format = Literal["kv", "json"]

FAILURES = frozenset({"job.exception", "db.error", "notifier.disconnected"})
"""Events logged at WARNING or above, whatever the configured level."""

_lock = threading.Lock()
_attached: tuple[telemetry.Handle, tuple[str, int, frozenset[str] | None]] | None = None


def _level(level: int | str) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        raise ConfigError(f"telemetry_log_level must be a logging level, got {level!r}")
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ConfigError(
            f"telemetry_log_level {level!r} is not a logging level: use 'debug', 'info', "
            "'warning', 'error' or a number"
        )
    return number


def _plain(value: object) -> object:
    """A field's value as logs show it: floats rounded, odd objects as text."""
    if isinstance(value, float):
        return round(value, 6)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def event_fields(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """The fields a log record shows for ``event``: ``data`` without the ``job``
    object (its id, worker and queue are there already), the error flattened."""
    fields: dict[str, Any] = {"event": event}
    for key, value in data.items():
        if key == "job":
            continue
        if key == "error" and isinstance(value, dict):
            fields["error_type"] = value.get("type")
            fields["error_message"] = value.get("message")
            fields["error_traceback"] = value.get("traceback")
            continue
        fields[key] = _plain(value)
    return fields


def _kv(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None or key == "error_traceback":
            continue  # the traceback is in the JSON form and on record.oban
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if not text or any(char in text for char in ' "=\n'):
            text = orjson.dumps(text).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _EventLogger:
    """The handler: one record per event on the ``oban.events`` logger."""

    def __init__(self, form: Format, level: int) -> None:
        self.form = form
        self.level = level
        self.logger = logging.getLogger(LOGGER)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        level = max(self.level, logging.WARNING) if event in FAILURES else self.level
        if not self.logger.isEnabledFor(level):
            return
        fields = event_fields(event, data)
        message = orjson.dumps(fields).decode() if self.form == "json" else _kv(fields)
        self.logger.log(level, "%s", message, extra={"oban_event": event, "oban": fields})

    def __repr__(self) -> str:
        return f"oban.observability.log handler ({self.form}, {logging.getLevelName(self.level)})"


def attach_logger(
    form: str = "kv", *, level: int | str = logging.INFO, events: Iterable[str] | None = None
) -> telemetry.Handle:
    """Log every event (or ``events``) on the ``oban.events`` logger; returns the handle.

    One such handler per process: calling it again with the same settings
    returns the handle already attached (so many ``Oban(telemetry_log=True)``
    instances log each event once), with other settings it replaces it.
    """
    global _attached
    if form not in FORMATS:
        raise ConfigError(f"telemetry_log must be True, False, 'kv' or 'json', got {form!r}")
    number = _level(level)
    names = None if events is None else frozenset(events)
    settings = (form, number, names)
    with _lock:
        if _attached is not None:
            handle, current = _attached
            if current == settings and handle in telemetry.handlers():
                return handle
            telemetry.detach(handle)
        handler = _EventLogger(cast("Format", form), number)  # checked against FORMATS above
        handle = telemetry.attach(handler, events=names)
        _attached = (handle, settings)
    return handle


def detach_logger() -> bool:
    """Stop the built-in logging handler; False if it was not attached."""
    global _attached
    with _lock:
        if _attached is None:
            return False
        handle, _ = _attached
        _attached = None
    return telemetry.detach(handle)
