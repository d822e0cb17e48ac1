"""check_queue's lag: seconds the queue's oldest available job has waited, from the database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import Oban
from tests.conftest import SqlDatabase, wait_for
from tests.observability import workers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def oban_options() -> dict[str, Any]:
    return {"poll_interval": 0.05, "stage_interval": 0.05}


def test_lag_of_a_paused_queue(database: SqlDatabase) -> None:
    now = [T0]
    oban = database.make_oban(queues={"obs": 2, "idle": 1}, clock=lambda: now[0])
    with oban:
        oban.pause_queue("obs")
        wait_for(lambda: all(i.paused for i in oban.check_queue("obs")), message="paused")
        oban.enqueue(workers.Succeed.new({"n": 1}))
        now[0] = T0 + timedelta(seconds=30)
        oban.enqueue(workers.Succeed.new({"n": 2}))
        now[0] = T0 + timedelta(seconds=90)
        (info,) = oban.check_queue("obs")
        assert info.lag == pytest.approx(90.0)
        assert info.limit == 2
        (idle,) = oban.check_queue("idle", local_only=True)
        assert idle.lag == 0.0
        by_queue = {i.queue: i.lag for i in oban.check_all_queues()}
        assert by_queue == {"obs": pytest.approx(90.0), "idle": 0.0}


@pytest.mark.anyio
async def test_lag_async_twin(database: SqlDatabase) -> None:
    now = [T0]
    async with database.make_oban(queues={"obs": 1}, clock=lambda: now[0]) as oban:
        await oban.pause_queue_async("obs")
        await oban.enqueue_async(workers.Succeed.new({}))
        now[0] = T0 + timedelta(seconds=5)
        (info,) = await oban.check_queue_async("obs")
        assert info.lag == pytest.approx(5.0)


def test_inline_has_no_lag() -> None:
    oban = Oban(testing="inline", queues={"obs": 1})
    assert oban.check_all_queues() == []
