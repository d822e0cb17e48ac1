"""Telemetry: what happens inside Oban, as named events to handlers you attach.

``handle = telemetry.attach(handler, events=None)`` calls
``handler(event, data)`` for every event (or only the names listed);
``telemetry.detach(handle)`` stops it. Handlers are called synchronously,
wherever the event happens: on the runtime's event loop (asyncio or trio),
in a worker thread (a ``def process`` job, a database call), or in the
caller of ``enqueue``. Keep them quick; hand slow work to a queue.

A handler that raises is logged once on the ``oban`` logger and detached:
observing must never stop a job or a loop.

This module sits at the bottom of the package (it imports nothing of Oban's
but the errors), so every layer can emit. Emitting costs one module
attribute read when nobody listens: callers write
``if telemetry.active: telemetry.emit(name, {...})``, so no data is built
for nobody. See docs/observability.md for the events and their fields.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "EVENTS",
    "Handle",
    "Handler",
    "active",
    "attach",
    "detach",
    "emit",
    "handlers",
    "listening",
]

logger = logging.getLogger("oban")

Handler = Callable[[str, dict[str, Any]], None]
"""``handler(event, data)``; its return value is ignored."""

EVENTS: frozenset[str] = frozenset(
    {
        "job.start",
        "job.stop",
        "job.exception",
        "job.insert",
        "queue.fetch",
        "ack.write",
        "plugin.stager",
        "plugin.pruner",
        "plugin.lifeline",
        "plugin.cron",
        "leader.gained",
        "leader.lost",
        "notifier.connected",
        "notifier.disconnected",
        "db.error",
    }
)
"""Every event Oban emits (plugins of your own may emit more ``plugin.<name>``)."""

PLUGIN_PREFIX = "plugin."

active: bool = False
"""True while at least one handler is attached: the one check on the hot path."""

_ids = itertools.count(1)
_lock = threading.Lock()
_handles: tuple[Handle, ...] = ()
"""Replaced, never mutated: :func:`emit` reads it without the lock."""


@dataclass(frozen=True, eq=False)
class Handle:
    """What :func:`attach` returns and :func:`detach` takes."""

    handler: Handler
    events: frozenset[str] | None
    """The event names it receives; None: every event."""
    id: int

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


def _check_events(events: Iterable[str] | None) -> frozenset[str] | None:
    if events is None:
        return None
    if isinstance(events, str):
        raise ConfigError(
            f"telemetry.attach(events=...) takes a list of event names, got the string "
            f"{events!r}: write events=[{events!r}]"
        )
    names = frozenset(events)
    unknown = sorted(
        name
        for name in names
        if not isinstance(name, str) or (name not in EVENTS and not name.startswith(PLUGIN_PREFIX))
    )
    if unknown:
        raise ConfigError(
            f"unknown telemetry event(s) {unknown}: the events are {sorted(EVENTS)} "
            "(and plugin.<name> for plugins of your own)"
        )
    return names


def attach(handler: Handler, events: Iterable[str] | None = None) -> Handle:
    """Call ``handler(event, data)`` for ``events`` (None: every event) until detached.

    Returns the handle to pass to :func:`detach`. The same function may be
    attached twice; it is then called twice.
    """
    global _handles, active
    if not callable(handler):
        raise ConfigError(f"a telemetry handler must be callable, got {type(handler).__name__}")
    handle = Handle(handler, _check_events(events), next(_ids))
    with _lock:
        _handles = (*_handles, handle)
        active = True
    return handle


def detach(handle: Handle) -> bool:
    """Stop calling ``handle``'s handler; False if it was not attached (any more)."""
    global _handles, active
    with _lock:
        if handle not in _handles:
            return False
        _handles = tuple(other for other in _handles if other is not handle)
        active = bool(_handles)
    return True


def handlers() -> tuple[Handle, ...]:
    """The handles attached now, oldest first."""
    return _handles


def listening(event: str) -> bool:
    """Whether some handler receives ``event`` (to skip costly data nobody reads)."""
    return any(handle.wants(event) for handle in _handles)


def emit(event: str, data: dict[str, Any]) -> None:
    """Call every handler attached for ``event`` with ``data``, in attach order.

    A handler that raises is logged (once, with the traceback) and detached;
    the others are still called and the caller never sees the error.
    """
    for handle in _handles:
        if handle.events is not None and event not in handle.events:
            continue
        try:
            handle.handler(event, data)
        except Exception:
            if detach(handle):
                logger.exception(
                    "telemetry handler %r failed on %s and was detached; fix it and attach "
                    "it again",
                    handle.handler,
                    event,
                )
