"""What ``check_queue`` says of a queue on one node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["QueueInfo"]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue on one node: its limit, the jobs it runs, whether it is paused,
    and how far behind the queue is (``lag``, the same on every node).

    From another node this is what its last heartbeat said (a few seconds old
    at most); ``updated_at`` tells when that was.
    """

    queue: str
    node: str
    instance_id: str
    """The id of that start of the Oban instance: two runs of one node differ."""
    limit: int
    running: tuple[int, ...]
    """Ids of the jobs it was running."""
    paused: bool
    started_at: datetime
    updated_at: datetime
    lag: float | None = None
    """Seconds the queue's oldest available job has waited (0.0: none waits), read
    from the database when asked; None where there is no database (Inline)."""

    @classmethod
    def from_heartbeat(
        cls,
        *,
        queue: str,
        node: str,
        meta: Mapping[str, Any],
        started_at: datetime,
        updated_at: datetime,
    ) -> QueueInfo:
        """Read a heartbeat row's ``meta``, whoever wrote it (unknown keys ignored,
        odd values read as unknown)."""
        limit = meta.get("local_limit")
        running = meta.get("running")
        instance = meta.get("instance")
        return cls(
            queue=queue,
            node=node,
            instance_id=instance if isinstance(instance, str) else "",
            limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else 0,
            running=tuple(
                job_id
                for job_id in (running if isinstance(running, list) else [])
                if isinstance(job_id, int) and not isinstance(job_id, bool)
            ),
            paused=meta.get("paused") is True,
            started_at=started_at,
            updated_at=updated_at,
        )
