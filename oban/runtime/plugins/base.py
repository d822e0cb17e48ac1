"""What a plugin is, and what it may touch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ...config import RuntimeConfig
from ..database import Database

__all__ = ["Plugin", "PluginContext"]


@dataclass(frozen=True)
class PluginContext:
    """The runtime as a plugin sees it: all a plugin may use or ask for."""

    database: Database
    config: RuntimeConfig
    clock: Callable[[], datetime]
    wake_queues: Callable[[Iterable[str]], None]
    """Make the producers of these queues fetch now (they have available jobs)."""
    running_ids: Callable[[], list[int]]
    """Ids of the jobs running on this node (not yet cancelled)."""
    kill: Callable[[Iterable[int]], None]
    """Stop these running jobs (their rows are already cancelled)."""


class Plugin:
    """One piece of periodic work. Subclasses set the class attributes and ``tick``.

    ``leader_only`` work is done by one node for the whole cluster; the loop
    skips it on the others. ``immediate`` ticks once as the runtime starts.
    """

    name: ClassVar[str]
    """Shown in logs (``"<name> failed; retrying in ..."``) and metrics."""
    leader_only: ClassVar[bool] = False
    immediate: ClassVar[bool] = False
    jitter: ClassVar[float] = 0.0

    def __init__(self, context: PluginContext) -> None:
        self.context = context

    @property
    def interval(self) -> float | None:
        """Seconds between ticks (None: only when woken)."""
        raise NotImplementedError

    async def tick(self) -> None:
        raise NotImplementedError
