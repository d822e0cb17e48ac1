"""The one place tests look inside a running ``Oban``.

Most tests observe only what users see (rows, worker side effects, the public
API). A few check parts no public API shows yet: the notifier's connection
(its pid, how often it connected), how many cancel checks ran, and a signal
only a peer could send. They get the runtime here, so a change to the
runtime's internals touches this function and those few asserts, nothing else.
"""

from __future__ import annotations

from oban import Oban
from oban.runtime.loops import Loop
from oban.runtime.notifier import Notifier
from oban.runtime.plugins import Plugin
from oban.runtime.runtime import Runtime


def runtime_of(instance: Oban) -> Runtime:
    """The runtime of a started instance (fails the test when it is not running)."""
    runtime = instance._runtime
    assert runtime is not None, f"{instance!r} is not running"
    return runtime


def notifier_of(instance: Oban) -> Notifier:
    """The notifier of a started instance on an engine with NOTIFY."""
    notifier = runtime_of(instance).notifier
    assert notifier is not None, f"{instance!r} has no notifier (its engine lacks NOTIFY)"
    return notifier


def plugin_loop(instance: Oban, kind: type[Plugin]) -> Loop:
    """The loop of a plugin of a started instance: its ``ticks`` count finished
    runs (the lifeline looked N times); ``wake()`` runs it now."""
    loop = runtime_of(instance)._loops.get(kind)
    assert loop is not None, f"{instance!r} runs no {kind.__name__}"
    return loop
