"""Cron across node processes over simulated hours of a daylight-saving night in Paris.

Every node runs the same simulated clock (``node_process.SimulatedClock``):
it stands at ``BASE`` until the test writes the instant to start from into
a file, then runs ``SPEED`` times as fast as the wall clock and stops at
``END``, so the processes agree on the time without talking to each other.
Part way through the night the leader is SIGKILLed; for 40 simulated
minutes no node leads (the others bid only every lease / 3 real seconds),
then a new node joins, takes the lease and inserts the slots missed
meanwhile: across the spring jump, or before the repeated autumn hour.

The slots the jobs table must hold are worked out here with zoneinfo alone
(not ``oban.cron``), by the rule of ``docs/architecture.md``: a wall-clock
time the clocks go through twice counts once (its first occurrence), one
they skip counts at the instant they skip it, and equal instants are one slot.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from oban.schema import oban_cron_slots
from tests.cluster.node_process import SimulatedClock, write_atomically
from tests.cluster.support import Cluster, connect, lease
from tests.cluster.workers import CronTick
from tests.conftest import SqlDatabase, wait_for

pytestmark = pytest.mark.slow

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc
MINUTE = timedelta(minutes=1)
ENTRIES: list[tuple[str, dict[str, Any]]] = [
    ("*/15 * * * *", {"args": {"entry": "quarter"}, "queue": "cron"}),
    ("30 2 * * *", {"args": {"entry": "daily"}, "queue": "cron"}),
]
MATCHES: dict[str, Callable[[datetime], bool]] = {
    "quarter": lambda wall: wall.minute % 15 == 0,
    "daily": lambda wall: (wall.hour, wall.minute) == (2, 30),
}
LEASE = 1800
"""Simulated seconds. The lease is compared in the (simulated) clock's time, the
renewals come every lease / 3 real seconds: the leader keeps leading until it
dies, and no node bids in between."""


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Paris wall-clock time (not one that happens twice), as an aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def wall(instant: datetime) -> datetime:
    return instant.astimezone(PARIS).replace(tzinfo=None)


def expected_slots(entry: str, base: datetime, end: datetime) -> list[datetime]:
    """The slots of ``entry`` in ``(base, end]``: walking the UTC minutes, a minute
    is a slot when the Paris wall clock reaches, for the first time, a time the
    entry matches (all the times it skips are reached at the instant it skips)."""
    matches = MATCHES[entry]
    slots = []
    furthest = wall(base)
    minute = base + MINUTE
    while minute <= end:
        now = wall(minute)
        reached = []
        while furthest < now:
            furthest += MINUTE
            reached.append(furthest)
        if any(matches(moment) for moment in reached):
            slots.append(minute)
        minute += MINUTE
    return slots


def slot_text(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NIGHTS = [
    # Killed at 01:40 CET: the slots of the jump (02:00-03:00 local) are caught up late.
    pytest.param(
        paris(2026, 3, 29, 0, 31),
        paris(2026, 3, 29, 4, 10),
        1100.0,
        datetime(2026, 3, 29, 0, 40, tzinfo=UTC),
        id="spring-forward",
    ),
    # Killed at 01:40 CEST: 02:30 CEST is caught up late; the repeated hour comes after.
    pytest.param(
        paris(2026, 10, 25, 0, 31),
        paris(2026, 10, 25, 4, 10),
        1900.0,
        datetime(2026, 10, 24, 23, 40, tzinfo=UTC),
        id="fall-back",
    ),
]
GAP = timedelta(minutes=40)
"""Simulated time between the leader's death and the next node's start."""


def time_between(slot: datetime, hour: int, minute: int, to_hour: int, to_minute: int) -> bool:
    return (hour, minute) <= (slot.hour, slot.minute) <= (to_hour, to_minute)


def test_the_walk_reads_both_nights_as_documented() -> None:
    """The expectation itself, on the two nights (whole minutes of UTC)."""
    spring = (paris(2026, 3, 29, 0, 31), paris(2026, 3, 29, 4, 10))
    fall = (paris(2026, 10, 25, 0, 31), paris(2026, 10, 25, 4, 10))
    # 02:30 does not exist on 29 March: the job runs as the clocks jump, 03:00 CEST.
    assert expected_slots("daily", *spring) == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    # It exists twice on 25 October: once, at 02:30 CEST.
    assert expected_slots("daily", *fall) == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]
    quarters = expected_slots("quarter", *fall)
    # 02:00-02:45 CET repeat 02:00-02:45 CEST: no slot from 01:00 to 01:45 UTC.
    assert datetime(2026, 10, 25, 0, 45, tzinfo=UTC) in quarters
    assert not [slot for slot in quarters if time_between(slot, 1, 0, 1, 59)]
    assert datetime(2026, 10, 25, 2, 0, tzinfo=UTC) in quarters
    # In spring every quarter of UTC is a slot (02:00-02:45 local are the jump's instant).
    spring_quarters = expected_slots("quarter", *spring)
    assert len(spring_quarters) == len(set(spring_quarters)) == 10


def recorded_slots(database: SqlDatabase) -> list[datetime]:
    with connect(database) as conn:
        return list(conn.execute(sa.select(oban_cron_slots.c.slot_at)).scalars())


@pytest.mark.parametrize(("base", "end", "speed", "kill_after"), NIGHTS)
def test_cron_inserts_every_slot_of_the_night_once_across_a_leader_change(
    cluster: Cluster,
    database: SqlDatabase,
    base: datetime,
    end: datetime,
    speed: float,
    kill_after: datetime,
) -> None:
    go = cluster.path("go")
    options: dict[str, Any] = {
        "cron": ENTRIES,
        "clock": {"base": base.isoformat(), "end": end.isoformat(), "speed": speed, "go": str(go)},
        "timezone": "Europe/Paris",
        "cron_catch_up": 4 * 3600,  # simulated seconds: a leader change never skips a slot
        "leader_lease": LEASE,
        "rescue_after": LEASE,
        "prune": False,
    }
    nodes = [cluster.spawn(name, **options) for name in ("node-a", "node-b", "node-c")]
    by_identity = {node.leader_node: node for node in nodes}
    # The first leader has seen both entries (at BASE: they start from there).
    wait_for(lambda: len(recorded_slots(database)) >= len(ENTRIES), message="cron entries seen")
    write_atomically(go, f"{time.time():.6f}")

    clock = SimulatedClock(base, end, speed, go)  # the nodes' time, read here too

    wait_for(
        lambda: max(recorded_slots(database)) >= kill_after,
        timeout=60,
        message=f"the cron slots reach {kill_after:%H:%M} UTC",
    )
    current = lease(database)
    assert current is not None
    assert current.node in by_identity, f"the lease names {current.node!r}"
    leader = by_identity[current.node]
    leader.kill()
    last_recorded = max(recorded_slots(database))
    # No node leads for GAP of simulated time: the slots due meanwhile are missed...
    resume_at = clock() + GAP
    wait_for(lambda: clock() >= resume_at, message="the simulated clock runs on")
    missed = [
        slot
        for entry in MATCHES
        for slot in expected_slots(entry, base, end)
        if last_recorded < slot <= resume_at
    ]
    assert len(missed) >= 2, f"only {missed} came due while no node led"
    assert max(recorded_slots(database)) == last_recorded, "a slot was recorded with no leader"
    # ... until a new node joins, takes the lease and catches up.
    newcomer = cluster.spawn("node-d", **options)
    identities = {**by_identity, newcomer.leader_node: newcomer}
    wait_for(
        lambda: (held := lease(database)) is not None and held.node != current.node,
        message="another node takes the lease",
    )
    taken = lease(database)
    assert taken is not None
    assert taken.node in identities, f"the lease names {taken.node!r}"
    successor = identities[taken.node]

    observer = database.make_oban()
    expected = {
        (entry, slot_text(slot)) for entry in MATCHES for slot in expected_slots(entry, base, end)
    }

    def inserted() -> list[tuple[str, str]]:
        jobs = observer.list_jobs(worker=CronTick, limit=1000)
        return [(job.args["entry"], job.meta["cron_slot"]) for job in jobs]

    real_seconds = (end - base).total_seconds() / speed
    wait_for(
        lambda: expected <= set(inserted()),
        timeout=real_seconds + 30,
        message="every slot of the night has its job",
    )
    for node in cluster.nodes:
        if node.alive():
            node.stop()
    found = Counter(inserted())
    wrong = sorted(key for key, count in found.items() if key not in expected or count > 1)
    assert found == Counter(dict.fromkeys(expected, 1)), (
        f"missing: {sorted(expected - set(found))}, extra or twice: {wrong}"
    )
    print(f"{len(expected)} slots; {leader.name} was killed, then {successor.name} led")
