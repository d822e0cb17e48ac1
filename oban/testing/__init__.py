"""Test helpers for code that uses Oban: run jobs, assert on what was enqueued, drain queues.

- :func:`process_job` runs one attempt of a job with no database and returns
  the job as its row would be after it;
- :func:`all_enqueued`, :func:`assert_enqueued`, :func:`refute_enqueued`
  look at the jobs waiting to run (``available`` or ``scheduled``);
- :func:`drain_queue` runs a queue's jobs in the calling thread;
- :func:`mode` switches an instance to ``inline`` or ``manual`` for a block.

Each has an ``_async`` twin. The pytest plugin (:mod:`oban.testing.plugin`,
loaded automatically once ``oban`` is installed) adds fixtures. The helpers
raise ``AssertionError`` with their own messages, so they read the same
under pytest, unittest or ``python -O``; the code lives in private modules
so that pytest can rewrite their asserts (it must be told before they are
imported, and a package cannot be told about itself from its own body).
"""

from __future__ import annotations

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pass
else:
    pytest.register_assert_rewrite(
        "oban.testing._common",
        "oban.testing._drain",
        "oban.testing._enqueued",
        "oban.testing._mode",
        "oban.testing._process",
    )

from ._drain import RESULT_KEYS, drain_queue, drain_queue_async
from ._enqueued import (
    ENQUEUED_STATES,
    SCHEDULED_AT_TOLERANCE,
    all_enqueued,
    all_enqueued_async,
    assert_enqueued,
    assert_enqueued_async,
    refute_enqueued,
    refute_enqueued_async,
)
from ._mode import mode
from ._process import process_job, process_job_async

__all__ = [
    "ENQUEUED_STATES",
    "RESULT_KEYS",
    "SCHEDULED_AT_TOLERANCE",
    "all_enqueued",
    "all_enqueued_async",
    "assert_enqueued",
    "assert_enqueued_async",
    "drain_queue",
    "drain_queue_async",
    "mode",
    "process_job",
    "process_job_async",
    "refute_enqueued",
    "refute_enqueued_async",
]
