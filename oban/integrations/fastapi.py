"""Run Oban inside a FastAPI (or Starlette) app, and enqueue in a route's transaction.

One line starts the runtime with the app and stops it with the app::

    app = FastAPI(lifespan=oban_lifespan(oban))
    app = FastAPI(lifespan=oban_lifespan(oban, lifespan=my_lifespan))  # with yours

The runtime runs in the server's own event loop (``await oban.start_async()``
at startup): no extra thread, and ``async def process`` jobs share the loop
with the requests. At shutdown it stops gracefully, as leaving ``async with
oban`` does: fetching stops, running jobs get ``Oban(shutdown_grace=...)``
seconds, the rest go back to ``available``.

The app's own lifespan (``lifespan=``) is the *outer* one: the resources it
sets up (an async engine, clients the workers use) exist before the first job
runs and are torn down only after the last one has finished. What it yields
(Starlette lifespan state) is passed through unchanged.

Enqueueing in the request's transaction is plain Oban: ``await
oban.enqueue_async(job, conn=session)`` with the route's ``AsyncSession``. The
job row commits or rolls back with the business rows. :data:`ObanDep` hands a
route the app's instance.

Oban takes a *sync* URL (``sqlite:///app.db``, ``postgresql+psycopg://...``);
the app's ``create_async_engine`` takes the async one for the same database
(``sqlite+aiosqlite:///app.db``, ``postgresql+psycopg://...``). SQLAlchemy's
asyncio extension runs on asyncio only; the lifespan itself works on trio too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, TypeVar, overload

try:
    from fastapi import Depends, Request
    from starlette.applications import Starlette
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "oban.integrations.fastapi needs FastAPI: pip install 'oban[fastapi]'"
    ) from exc

from ..oban import Oban

__all__ = ["ObanDep", "get_oban", "oban_lifespan"]

AppT = TypeVar("AppT")
StateT = TypeVar("StateT")

STATE_KEY = "oban"
"""The attribute of ``app.state`` the lifespan stores the instance under."""


@overload
def oban_lifespan(
    oban: Oban, lifespan: None = None, *, run_queues: bool = True
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]: ...


@overload
def oban_lifespan(
    oban: Oban,
    lifespan: Callable[[AppT], AbstractAsyncContextManager[StateT]],
    *,
    run_queues: bool = True,
) -> Callable[[AppT], AbstractAsyncContextManager[StateT]]: ...


def oban_lifespan(
    oban: Oban,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    *,
    run_queues: bool = True,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A lifespan for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``.

    Args:
        oban: the instance to run; stored as ``app.state.oban`` for :func:`get_oban`.
        lifespan: the app's own lifespan, entered first and left last, so what
            it sets up outlives every job; its state (if it yields one) is kept.
        run_queues: ``False`` runs no queues in this process (enqueue only),
            for when a separate worker process runs them.

    The runtime is started and stopped in the lifespan's one task, as anyio
    task groups require, and only once the app's lifespan has started.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            state = None if lifespan is None else await stack.enter_async_context(lifespan(app))
            app_state = getattr(app, "state", None)
            if app_state is not None:
                setattr(app_state, STATE_KEY, oban)
            if run_queues:
                # ``async with oban`` rather than start/stop: an exception or
                # cancellation at shutdown reaches the runtime's task group.
                await stack.enter_async_context(oban)
            yield state

    return run


def get_oban(request: Request) -> Oban:
    """The app's Oban instance (set by :func:`oban_lifespan`), as a FastAPI dependency."""
    found = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(found, Oban):
        raise RuntimeError(
            "this app has no Oban instance: create it with "
            "FastAPI(lifespan=oban_lifespan(oban)) (and run it with its lifespan)"
        )
    return found


ObanDep = Annotated[Oban, Depends(get_oban)]
"""A route parameter ``oban: ObanDep`` receives the app's instance."""
