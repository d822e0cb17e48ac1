"""The wire format of the messages nodes send each other: inserts and signals.

Shared with Elixir Oban and oban-py, so that the three wake and signal each
other when they share a database:

* channel ``"{prefix}.oban_{name}"``, the prefix being the PostgreSQL schema of
  ``oban_jobs`` (``"public"`` when none is set): ``public.oban_insert``,
  ``public.oban_signal``, ``myschema.oban_insert``;
* payload: a JSON object as text. Inserts send ``{"queue": "mailers"}``.
  Signals ride ``oban_signal`` with ``{"action": ..., ...}`` as Elixir Oban
  does: cancelling an executing job sends ``{"action": "pkill", "job_id": 42}``
  in the cancelling transaction (see :func:`pkill`). Peers may send
  base64-encoded gzip of the JSON instead; :func:`decode` reads both.

Pure functions and constants only: the engines write these payloads (in the
transaction that makes the change), the runtime reads them.
"""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ANY",
    "INSERT",
    "LEADER",
    "PKILL",
    "QUEUE_ACTIONS",
    "SIGNAL",
    "QueueSignal",
    "channel_name",
    "decode",
    "encode",
    "inserted",
    "inserted_queue",
    "leader_down",
    "leader_down_name",
    "pkill",
    "pkill_job_id",
    "queue_signal",
    "read_queue_signal",
]

INSERT = "insert"
"""The channel that tells producers a queue got available jobs."""
SIGNAL = "signal"
"""The channel of commands to nodes: ``pkill`` and the queue actions."""

LEADER = "leader"
"""The channel on which a leader that stops says so, so another takes over at once."""

PKILL = "pkill"
"""The signal action that stops an executing job wherever it runs (Elixir Oban's name)."""


def inserted(queue: str) -> dict[str, Any]:
    """The ``oban_insert`` payload saying ``queue`` has jobs to fetch."""
    return {"queue": queue}


def inserted_queue(payload: Mapping[str, Any]) -> str | None:
    """The queue of an ``oban_insert`` payload; None for a malformed one."""
    queue = payload.get("queue")
    return queue if isinstance(queue, str) else None


def pkill(job_id: int) -> dict[str, Any]:
    """The ``oban_signal`` payload that stops job ``job_id`` on the node running it.

    The same object Elixir Oban sends after cancelling an executing job, so
    a cancel from any of the peers reaches the others' nodes as well.
    """
    return {"action": PKILL, "job_id": job_id}


def pkill_job_id(payload: Mapping[str, Any]) -> int | None:
    """The job id of a ``pkill`` signal; None for any other (or malformed) payload."""
    if payload.get("action") != PKILL:
        return None
    job_id = payload.get("job_id")
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        return None
    return job_id


QUEUE_ACTIONS = ("pause", "resume", "scale", "start", "stop")
"""Signal actions about a queue, as Elixir Oban names them."""

ANY = "any"
"""The ``ident`` of a signal meant for every node."""


@dataclass(frozen=True, slots=True)
class QueueSignal:
    """A queue command: pause, resume, scale (``limit``), start (``limit``) or stop."""

    action: str
    queue: str
    limit: int | None = None
    ident: str = ANY
    """``"any"`` for every node, else ``"{name}.{node}"`` of the one node meant."""


def queue_signal(signal: QueueSignal) -> dict[str, Any]:
    """The ``oban_signal`` payload of ``signal``: the object Elixir Oban sends, so
    a pause from either reaches the nodes of both."""
    payload: dict[str, Any] = {
        "action": signal.action,
        "queue": signal.queue,
        "ident": signal.ident,
    }
    if signal.limit is not None:
        payload["limit"] = signal.limit
    return payload


def read_queue_signal(payload: Mapping[str, Any]) -> QueueSignal | None:
    """The queue command in a signal payload; None for any other (or malformed) one."""
    action, queue = payload.get("action"), payload.get("queue")
    if action not in QUEUE_ACTIONS or not isinstance(queue, str) or not queue:
        return None
    limit = payload.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        if action == "scale":
            return None
        limit = None
    ident = payload.get("ident", ANY)
    return QueueSignal(str(action), queue, limit, ident if isinstance(ident, str) else ANY)


def leader_down(name: str) -> dict[str, Any]:
    """The ``oban_leader`` payload a leader sends as it gives up (Elixir Oban's shape)."""
    return {"down": name}


def leader_down_name(payload: Mapping[str, Any]) -> str | None:
    """The Oban name that lost its leader, from an ``oban_leader`` payload."""
    down = payload.get("down")
    return down if isinstance(down, str) else None


def channel_name(prefix: str | None, name: str) -> str:
    """The PostgreSQL channel for ``name`` (``insert``, ``signal``) under ``prefix``."""
    return f"{prefix or 'public'}.oban_{name}"


def encode(payload: Mapping[str, Any]) -> str:
    """A payload as compact JSON text (what every peer can read)."""
    return orjson.dumps(payload).decode()


def decode(text: str) -> dict[str, Any] | None:
    """Read a payload: plain JSON, or the base64 gzip that peers may send.

    Returns ``None`` for anything that is not a JSON object: a stray NOTIFY
    on our channel from some other program must not break the listener.
    """
    try:
        if not text.lstrip().startswith("{"):
            text = gzip.decompress(base64.b64decode(text, validate=True)).decode()
        value = orjson.loads(text)
    except (ValueError, binascii.Error, OSError, EOFError):
        return None
    return value if isinstance(value, dict) else None
