"""The database thread limiter is sized to the engine's connection pool.

More threads than pooled connections would only queue inside the pool (and
time out there under load); an engine without a sized pool gets a default.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from oban import Inline, Lite
from oban.runtime.database import DEFAULT_THREADS, Database, pool_threads


def test_threads_follow_the_pool_size(tmp_path: Path) -> None:
    bind = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}", pool_size=3)
    try:
        engine = Lite(bind)
        assert pool_threads(engine) == 3
        assert Database(engine).threads == 3
    finally:
        bind.dispose()


def test_an_engine_without_a_sized_pool_gets_the_default(tmp_path: Path) -> None:
    bind = sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}", poolclass=NullPool)
    try:
        assert pool_threads(Lite(bind)) == DEFAULT_THREADS
    finally:
        bind.dispose()
    assert pool_threads(Inline()) == DEFAULT_THREADS


def test_an_explicit_thread_count_wins() -> None:
    assert Database(Inline(), threads=2).threads == 2
