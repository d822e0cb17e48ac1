"""``mode``: switch an existing instance to ``inline`` or ``manual`` for a block.

Tests usually want the instance the application already built (its name,
its workers' ``oban=``), only run differently: inline to see a job's effect
at once, manual to assert on what was enqueued and drain it. The switch
itself is ``Oban._switch_testing``, which owns the instance's internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from oban.oban import Oban

from ._common import instance

__all__ = ["mode"]


@contextmanager
def mode(testing: Literal["inline", "manual"], oban: Oban | None = None) -> Iterator[Oban]:
    """Run the block with ``oban`` (the instance named ``"oban"`` by default) in a testing mode.

    ``"inline"`` runs every job inside ``enqueue`` (nothing stored);
    ``"manual"`` stores jobs and runs no queue, for ``assert_enqueued`` and
    ``drain_queue``. The previous engine and mode come back after the block.
    The instance must be stopped, on entry and on exit
    (:class:`~oban.AlreadyRunningError` otherwise). Yields the instance.

    Example:
        >>> with oban.testing.mode("inline"):
        ...     SendWelcome.enqueue({"user_id": 1})  # has run when this returns
    """
    found = instance(oban)
    restore = found._switch_testing(testing)
    try:
        yield found
    finally:
        restore()
