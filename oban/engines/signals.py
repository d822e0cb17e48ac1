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
from typing import Any

import orjson

__all__ = [
    "INSERT",
    "PKILL",
    "SIGNAL",
    "channel_name",
    "decode",
    "encode",
    "inserted",
    "inserted_queue",
    "pkill",
    "pkill_job_id",
]

INSERT = "insert"
"""The channel that tells producers a queue got available jobs."""
SIGNAL = "signal"
"""The channel of commands to nodes (``pkill`` now; pause, resume, scale next)."""

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
