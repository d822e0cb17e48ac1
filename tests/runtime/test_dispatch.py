"""When a busy queue fetches again: at once with half its slots free, else after the cooldown.

The dispatch cooldown makes slots freed one by one refill with one fetch
instead of one each; it must not keep half a queue idle, which with short
jobs would cap a queue at ``limit`` jobs per cooldown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from oban import JobState, Oban
from oban.config import RuntimeConfig
from oban.runtime.producer import Producer
from tests.conftest import wait_for
from tests.runtime import workers
from tests.runtime.workers import GATE, Effects


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_queue_with_half_its_slots_free_fetches_without_waiting_for_the_cooldown(
    make_oban: Callable[..., Oban],
    effects: Effects,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    real_init = Producer.__init__

    def long_cooldown(self: Producer, *args: Any, config: RuntimeConfig, **kwargs: Any) -> None:
        # A cooldown well beyond the wait below: a fetch that waited for it shows.
        real_init(self, *args, config=replace(config, dispatch_cooldown=30.0), **kwargs)

    monkeypatch.setattr(Producer, "__init__", long_cooldown)
    with make_oban(queues={"default": 4}, backend=backend) as oban:
        held = oban.enqueue_many([workers.Gated.new({"n": n}) for n in range(2)])
        wait_for(
            lambda: all(effects.started(job.id) for job in held),
            message="two of the four slots are held",
        )
        later = oban.enqueue_many([workers.Complete.new({"n": n}) for n in range(2)])
        wait_for(
            lambda: all(effects.started(job.id) for job in later),
            timeout=10,
            message="jobs run in the two free slots while the others are busy",
        )
        GATE.set()
        wait_for(
            lambda: all(_state(oban, job.id) is JobState.COMPLETED for job in [*held, *later]),
            message="every job completed",
        )


def _state(oban: Oban, job_id: int | None) -> JobState | None:
    found = oban.get_job(job_id or 0)
    return None if found is None else found.state
