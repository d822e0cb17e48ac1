"""Plugins: the runtime's periodic work besides fetching and acking, one class each.

A plugin is a ``tick`` the runtime runs on its own :class:`~oban.runtime.loops.Loop`,
with the interval, jitter and leader-only flag the plugin declares. It sees
the runtime only through a :class:`PluginContext` (the database, the clock,
the config, and the few things it may ask of the node: wake queues, list and
stop running jobs, leadership, queue state), so a plugin can be read, and
tested, on its own.

Every node: :class:`Leader` (bids for the lease), :class:`Heartbeat`,
:class:`QueueSync` (cluster-wide pause/scale), :class:`CancelCheck` and
:class:`UnrunQueues` (a warning, once, about queues no node runs).
The leader only: :class:`Stager`, :class:`Lifeline`, :class:`Pruner` and
:class:`Cron`.
"""

from __future__ import annotations

from .base import Plugin, PluginContext
from .cancel_check import CancelCheck
from .cron import Cron
from .heartbeat import Heartbeat
from .leader import Leader
from .lifeline import Lifeline
from .pruner import Pruner
from .queue_sync import QueueSync
from .stager import Stager
from .unrun import UnrunQueues

__all__ = [
    "DEFAULT_PLUGINS",
    "CancelCheck",
    "Cron",
    "Heartbeat",
    "Leader",
    "Lifeline",
    "Plugin",
    "PluginContext",
    "Pruner",
    "QueueSync",
    "Stager",
    "UnrunQueues",
]

DEFAULT_PLUGINS: tuple[type[Plugin], ...] = (
    Leader,
    Heartbeat,
    QueueSync,
    Stager,
    CancelCheck,
    Lifeline,
    Pruner,
    Cron,
    UnrunQueues,
)
"""The plugins a runtime may run, in the order they start (each says if it is ``wanted``)."""
