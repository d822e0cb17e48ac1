"""The ``engine`` fixture: every conformance test runs against every engine kind.

Tests never ask for an engine by name. They declare what they need with
``@pytest.mark.requires(Capability.X, ...)`` and are skipped, with a reason
naming the engine and the capability, on engines that do not declare it.

To add an engine kind, add one factory to ``ENGINE_FACTORIES``: a function
taking the pytest ``request`` (to pull the fixtures it needs, such as
``sqlite_url`` or ``postgres_url``) and returning a ready, empty engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from oban.engines import Capability, Engine, Inline, Lite
from oban.engines import create_bind as _create_bind

EngineFactory = Callable[[pytest.FixtureRequest], Engine]


def _lite(request: pytest.FixtureRequest) -> Engine:
    url = request.getfixturevalue("sqlite_url")  # a fresh, migrated file per test
    return Lite(_create_bind(url), owns_bind=True)


def _inline(request: pytest.FixtureRequest) -> Engine:
    return Inline()


# One entry per engine kind; the key is the test id ("test_x[lite]").
# PostgreSQL (Basic) needs a server: without one its tests skip (fail under CI=true).
def _basic(request: pytest.FixtureRequest) -> Engine:
    """Basic in a fresh PostgreSQL schema (its own prefix), dropped after the test."""
    from tests.postgres.support import fresh_schema

    return fresh_schema(request)


ENGINE_FACTORIES: dict[str, EngineFactory] = {
    "lite": _lite,
    "inline": _inline,
    "basic": _basic,
}


def required_capabilities(node: pytest.Item) -> set[Capability]:
    """Every capability asked for by ``requires`` markers on the test, class or module."""
    needed: set[Capability] = set()
    for marker in node.iter_markers("requires"):
        for capability in marker.args:
            needed.add(Capability(capability))
    return needed


def skip_unless_capable(engine: Engine, node: pytest.Item) -> None:
    """Skip the test when ``engine`` lacks a capability the test requires."""
    missing = sorted(
        capability.value
        for capability in required_capabilities(node)
        if capability not in engine.capabilities
    )
    if missing:
        pytest.skip(f"{engine.name} engine lacks capability {missing[0]!r}")


@pytest.fixture(params=list(ENGINE_FACTORIES))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A fresh, empty engine of each kind in ``ENGINE_FACTORIES``."""
    built = ENGINE_FACTORIES[request.param](request)
    try:
        skip_unless_capable(built, request.node)
        yield built
    finally:
        built.close()
