"""Plugins: the runtime's periodic work besides fetching and acking, one class each.

A plugin is a ``tick`` the runtime runs on its own :class:`~oban.runtime.loops.Loop`,
with the interval, jitter and leader-only flag the plugin declares. It sees
the runtime only through a :class:`PluginContext` (the database, the clock,
the config, and the few things it may ask of the node: wake queues, list and
stop running jobs), so a plugin can be read, and tested, on its own.

Today: :class:`~oban.runtime.plugins.stager.Stager` and
:class:`~oban.runtime.plugins.cancel_check.CancelCheck`. Next: pruner,
lifeline, cron, leader and heartbeat, each one more module here.
"""

from __future__ import annotations

from .base import Plugin, PluginContext
from .cancel_check import CancelCheck
from .stager import Stager

__all__ = ["DEFAULT_PLUGINS", "CancelCheck", "Plugin", "PluginContext", "Stager"]

DEFAULT_PLUGINS: tuple[type[Plugin], ...] = (Stager, CancelCheck)
"""The plugins every runtime runs, in the order they start."""
