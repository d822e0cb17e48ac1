"""What a plugin is, and what it may touch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from ...config import RuntimeConfig
from ...engines.base import ClusterEngine, QueueState
from ..database import Database

if TYPE_CHECKING:
    from ..producer import Producer

__all__ = ["ClusterPlugin", "Plugin", "PluginContext"]


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
    instance_id: str = ""
    """The id of this start of the Oban instance (fresh at every start)."""
    started_at: datetime | None = None
    leader_node: str = ""
    """What this node writes in ``oban_peers.node``: its name and instance id."""
    is_leader: Callable[[], bool] = lambda: False
    set_leader: Callable[[bool], None] = lambda leading: None
    """Tell the runtime whether this node holds the lease now."""
    leader_term: Callable[[], int] = lambda: 0
    """Grows each time this node becomes leader: state kept per term starts afresh."""
    producers: Callable[[], list[Producer]] = list
    """The queues running here now."""
    apply_queue_state: Callable[[QueueState, bool], None] = lambda state, at_start: None
    """Act on a cluster-wide queue change (``at_start``: read as this node starts)."""

    @property
    def cluster(self) -> ClusterEngine:
        """The engine, as a :class:`~oban.engines.base.ClusterEngine` (plugins that use
        these operations only run on engines with the CLUSTER capability)."""
        return cast("ClusterEngine", self.database.engine)


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

    @classmethod
    def wanted(cls, config: RuntimeConfig) -> bool:
        """Whether a runtime with ``config`` runs this plugin at all."""
        return True

    @property
    def interval(self) -> float | None:
        """Seconds between ticks (None: only when woken); asked before each wait."""
        raise NotImplementedError

    async def tick(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Clean up as the runtime stops (after the last job's ack is written)."""


class ClusterPlugin(Plugin):
    """A plugin of the many-node work: it runs only where the runtime does that
    work (an engine with the CLUSTER capability, not a testing mode)."""

    @classmethod
    def wanted(cls, config: RuntimeConfig) -> bool:
        return config.cluster
