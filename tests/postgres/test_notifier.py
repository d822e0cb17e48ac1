"""LISTEN/NOTIFY: inserts on another node wake producers at once; a dropped
connection is re-made and jobs keep flowing meanwhile.

The runtimes here poll only every 60 s, so a job that runs within the test's
deadline was woken by a notification (or by the wake-up after reconnecting),
never by polling.
"""

from __future__ import annotations

import base64
import gzip
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from oban import Oban
from oban.engines.signals import channel_name, decode, encode
from tests.conftest import oban_factory
from tests.introspection import notifier_of
from tests.postgres.support import wait_async
from tests.postgres.workers import SEEN, AsyncNote, Note

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

SLOW_POLL = {"poll_interval": 60.0, "stage_interval": 60.0}


def test_channel_names_follow_the_prefix_as_the_peers_do() -> None:
    assert channel_name(None, "insert") == "public.oban_insert"
    assert channel_name("tenant_1", "signal") == "tenant_1.oban_signal"


def test_payloads_are_plain_json_and_peers_compressed_form_is_read() -> None:
    assert encode({"queue": "mailers"}) == '{"queue":"mailers"}'
    assert decode('{"queue": "mailers"}') == {"queue": "mailers"}
    compressed = base64.b64encode(gzip.compress(b'{"action":"pause","queue":"a"}')).decode()
    assert decode(compressed) == {"action": "pause", "queue": "a"}
    assert decode("not json at all") is None
    assert decode("[1, 2]") is None


def _listener_pid(bind: sa.Engine, application_name: str) -> int | None:
    """The server pid of the notifier's connection once its LISTEN is in effect."""
    with bind.connect() as conn:
        pids = conn.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                "AND query LIKE 'LISTEN %'"
            ),
            {"name": application_name},
        ).scalars()
        found = list(pids)
    return found[0] if len(found) == 1 else None


async def test_an_insert_on_another_node_wakes_the_producer(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine
) -> None:
    worker_node = make_oban(queues={"default": 3}, node=f"w-{uuid.uuid4().hex[:8]}", **SLOW_POLL)
    inserting_node = make_oban(name="inserting-node")  # no queues: it only enqueues
    async with worker_node:
        notifier = notifier_of(worker_node)
        await wait_async(lambda: notifier.listening and notifier.connections == 1)
        jobs = await inserting_node.enqueue_many_async(
            [Note.new({"n": 1}), AsyncNote.new({"n": 2})]
        )
        await wait_async(lambda: all(SEEN.has(job.id) for job in jobs))


async def test_killing_the_notifier_connection_it_reconnects_and_jobs_keep_flowing(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine
) -> None:
    node = f"k-{uuid.uuid4().hex[:8]}"
    worker_node = make_oban(queues={"default": 5}, node=node, **SLOW_POLL)
    inserting_node = make_oban(name="inserting-node")
    async with worker_node:
        notifier = notifier_of(worker_node)
        assert notifier.application_name == f"oban_notifier:{node}"
        await wait_async(lambda: _listener_pid(pg_bind, notifier.application_name) is not None)
        first_pid = _listener_pid(pg_bind, notifier.application_name)
        assert first_pid == notifier.backend_pid

        before = await inserting_node.enqueue_async(Note.new({"phase": "before"}))
        await wait_async(lambda: SEEN.has(before.id))

        with pg_bind.connect() as conn:
            killed = conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
            assert killed.scalar_one() is True
        # Inserted while the connection is down or coming back: nothing lost.
        during = await inserting_node.enqueue_many_async(
            [Note.new({"phase": "during", "n": n}) for n in range(20)]
        )

        def reconnected() -> bool:
            pid = _listener_pid(pg_bind, notifier.application_name)
            return pid is not None and pid != first_pid and notifier.connections == 2

        await wait_async(reconnected)
        await wait_async(lambda: all(SEEN.has(job.id) for job in during))

        # A later insert is heard on the new connection (polling is 60 s away).
        after = await inserting_node.enqueue_async(Note.new({"phase": "after"}))
        await wait_async(lambda: SEEN.has(after.id))
        assert notifier.backend_pid == _listener_pid(pg_bind, notifier.application_name)

    # Stopped: the notifier's connection is closed.
    await wait_async(lambda: _listener_pid(pg_bind, notifier.application_name) is None)
    assert notifier.backend_pid is None


async def test_a_notice_on_our_channel_that_is_not_json_is_ignored(
    make_oban: Callable[..., Oban], pg_bind: sa.Engine, pg_prefix: str
) -> None:
    worker_node = make_oban(queues={"default": 1}, node=f"j-{uuid.uuid4().hex[:8]}", **SLOW_POLL)
    inserting_node = make_oban(name="inserting-node")
    async with worker_node:
        notifier = notifier_of(worker_node)
        await wait_async(lambda: notifier.listening)
        with pg_bind.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel_name(pg_prefix, "insert"), "payload": "garbage"},
            )
            conn.commit()
        job = await inserting_node.enqueue_async(Note.new({"still": "listening"}))
        await wait_async(lambda: SEEN.has(job.id))
        assert notifier.connections == 1


async def test_a_url_naming_the_application_still_listens_under_the_notifiers_name(
    postgres_url: str, pg_prefix: str, pg_bind: sa.Engine
) -> None:
    # ``?application_name=`` names the pool's connections; the listener's
    # connection once failed on it (two values for one keyword) and never listened.
    node = f"a-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}?application_name=app-{node}"
    with oban_factory(url, prefix=pg_prefix) as make:
        worker_node = make(queues={"default": 2}, node=node, **SLOW_POLL)
        async with worker_node:
            notifier = notifier_of(worker_node)
            await wait_async(lambda: _listener_pid(pg_bind, notifier.application_name) is not None)
            job = await make(name="inserting-node").enqueue_async(Note.new({"n": 1}))
            await wait_async(lambda: SEEN.has(job.id))
