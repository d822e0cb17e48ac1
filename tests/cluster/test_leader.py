"""Leadership across three node processes: never two leaders, and a SIGKILLed
leader is replaced within its lease.

Each node appends its own ``is_leader`` every 20 ms to a file; the test
samples the lease row in ``oban_peers``. "At most one" is checked over
every sample of every node, across many renewals and a leader's death: the
stretches in which each node said it led never overlap.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cluster.support import Cluster, Lease, Node, lease
from tests.conftest import SqlDatabase, wait_for

pytestmark = pytest.mark.slow

RENEWALS = 6
"""Lease renewals watched before the leader is killed (and half as many after)."""


def leading_spans(node: Node) -> list[tuple[float, float]]:
    """The stretches ``(first, last sample time)`` in which ``node`` said it led."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for at, leading in node.samples():
        if leading and start is None:
            start = at
        elif not leading and start is not None:
            spans.append((start, last))
            start = None
        last = at
    if start is not None:
        spans.append((start, last))
    return spans


class LeaseWatch:
    """Every lease row the test saw, in order."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database
        self.seen: list[Lease] = []

    def sample(self) -> Lease | None:
        current = lease(self.database)
        if current is not None and (not self.seen or self.seen[-1] != current):
            self.seen.append(current)
        return current

    def renewed(self, times: int) -> Callable[[], bool]:
        """A condition: the lease row changed ``times`` more times from now on."""
        base = len(self.seen)
        return lambda: bool(self.sample()) and len(self.seen) >= base + times


def test_at_most_one_of_three_processes_leads_and_a_killed_leader_is_replaced(
    cluster: Cluster, database: SqlDatabase
) -> None:
    nodes = [cluster.spawn(f"node-{letter}", samples=True) for letter in "abc"]
    by_identity = {node.leader_node: node for node in nodes}
    watch = LeaseWatch(database)

    wait_for(watch.sample, message="a node takes the lease")
    wait_for(watch.renewed(RENEWALS), timeout=30, message=f"{RENEWALS} lease renewals")
    holder = watch.seen[-1].node
    assert holder in by_identity, f"the lease names {holder!r}, no node of {sorted(by_identity)}"
    leader = by_identity[holder]
    wait_for(leader.says_it_leads, message=f"{leader.name}, holding the lease, says it leads")
    before_kill = list(watch.seen)

    leader.kill()
    survivors = [node for node in nodes if node is not leader]

    def another_leads() -> bool:
        current = watch.sample()
        if current is None or current.node == holder:
            return False
        successor = by_identity.get(current.node)
        return successor in survivors and successor.says_it_leads()

    # The lease runs out at most leader_lease after the last renewal; a bidder
    # bids right after that. No threshold here beyond the deadline.
    wait_for(another_leads, message="a surviving node takes the lease and says it leads")
    successor = by_identity[watch.seen[-1].node]
    wait_for(watch.renewed(RENEWALS // 2), message="the new leader renews its lease")
    assert watch.seen[-1].node == successor.leader_node
    for node in survivors:
        node.stop()

    assert {seen.node for seen in watch.seen} <= set(by_identity)
    assert all(seen.node == holder for seen in before_kill[-RENEWALS:]), (
        "the lease changed hands while its holder was alive and renewing"
    )
    spans = {node.name: leading_spans(node) for node in nodes}
    for node in nodes:
        # Enough reports that "never two at once" means something.
        assert len(node.samples()) >= 50, f"{node.name} reported only {len(node.samples())} times"
    assert spans[leader.name], f"{leader.name} held the lease but never said it led"
    assert spans[successor.name], f"{successor.name} took the lease but never said it led"
    flat = sorted((start, end, name) for name, found in spans.items() for start, end in found)
    latest_end, latest_name = float("-inf"), ""
    for start, end, name in flat:
        assert start > latest_end or name == latest_name, (
            f"{latest_name} said it led until {latest_end:.3f} and {name} "
            f"from {start:.3f}: two leaders at once"
        )
        if end > latest_end:
            latest_end, latest_name = end, name
