"""Queue signals and leadership notices in Elixir Oban's wire format, both ways.

An Elixir node pausing a queue sends ``{"action": "pause", "queue": q,
"ident": "any"}`` on ``<prefix>.oban_signal``; our nodes must obey it, and
ours must send the same so Elixir's obey us. A signal for another node's
ident is ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import orjson
import pytest
import sqlalchemy as sa

from oban import Oban
from oban.engines.signals import channel_name
from tests.conftest import wait_for
from tests.introspection import notifier_of

pytestmark = pytest.mark.postgres

# Poll rarely: a change seen within the deadline came by NOTIFY.
SLOW = {"poll_interval": 30.0, "stage_interval": 30.0}


def notify(bind: sa.Engine, prefix: str, name: str, payload: dict[str, object]) -> None:
    with bind.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel_name(prefix, name), "payload": orjson.dumps(payload).decode()},
        )


def local(node: Oban) -> tuple[bool, int]:
    (info,) = node.check_queue("default", local_only=True)
    return info.paused, info.limit


def test_an_elixir_nodes_pause_and_scale_reach_our_node(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine, pg_prefix: str
) -> None:
    node = make_oban(node="py-1", queues={"default": 2}, **SLOW)
    with node:
        wait_for(lambda: notifier_of(node).listening)
        notify(
            pg_bind, pg_prefix, "signal", {"action": "pause", "queue": "default", "ident": "any"}
        )
        wait_for(lambda: local(node) == (True, 2), message="paused by the peer's signal")
        notify(
            pg_bind,
            pg_prefix,
            "signal",
            {"action": "scale", "queue": "default", "limit": 9, "ident": "any"},
        )
        wait_for(lambda: local(node) == (True, 9), message="scaled by the peer's signal")
        notify(
            pg_bind,
            pg_prefix,
            "signal",
            {"action": "resume", "queue": "default", "ident": "oban.other-node"},
        )
        notify(
            pg_bind,
            pg_prefix,
            "signal",
            {"action": "resume", "queue": "default", "ident": "oban.py-1"},
        )
        wait_for(lambda: local(node) == (False, 9), message="resumed by a signal naming this node")


def test_our_pause_sends_elixirs_payload(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine, pg_prefix: str
) -> None:
    heard: list[str] = []
    listening = threading.Event()
    done = threading.Event()

    def listen() -> None:
        raw = pg_bind.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            driver.autocommit = True
            driver.execute(f'LISTEN "{channel_name(pg_prefix, "signal")}"')
            listening.set()
            for notice in driver.notifies(timeout=10, stop_after=1):
                heard.append(notice.payload)
        finally:
            raw.close()
            done.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert listening.wait(10)
    node = make_oban(node="py-1", queues={"default": 2}, **SLOW)
    node.pause_queue("default")
    assert done.wait(15)
    assert [orjson.loads(text) for text in heard] == [
        {"action": "pause", "queue": "default", "ident": "any"}
    ]


def test_a_stopping_leader_says_so_and_another_node_takes_over_at_once(
    make_oban: Callable[..., Oban],
) -> None:
    # A lease far longer than the test: only the notice can explain a hand-over.
    a = make_oban(node="a", queues={"default": 1}, leader_lease=600, **SLOW)
    b = make_oban(node="b", queues={"default": 1}, leader_lease=600, **SLOW)
    a.start()
    b.start()
    wait_for(lambda: a.is_leader != b.is_leader, message="one leader")
    leader, other = (a, b) if a.is_leader else (b, a)
    wait_for(lambda: notifier_of(other).listening)
    leader.stop()
    wait_for(lambda: other.is_leader, message="the other node leads at once")
    other.stop()
