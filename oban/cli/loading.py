"""Finding the ``Oban`` a command works on: the user's (``--app``) or one built here.

``--app module:attr`` names an instance in the user's code, which carries its
own database, prefix, queues and node; otherwise ``--database`` (and
``--prefix``, ``--queues``, ``--node``) build one. Whichever of the two comes
from the more important source wins (a flag over ``OBAN_*`` over
``[tool.oban]``), so ``--database`` still points a one-off command elsewhere
when ``OBAN_APP`` is set; given at the same level they are ambiguous and
refused.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

from ..config import SHUTDOWN_GRACE
from ..errors import ConfigError
from ..oban import Oban
from .settings import CliError, Setting

__all__ = ["NO_DATABASE", "Target", "choose", "import_modules", "load_app", "open_oban"]

_MISSING = object()

NO_DATABASE = "no database: pass --database or set OBAN_DATABASE_URL or [tool.oban] database"


@dataclass(frozen=True)
class Target:
    """The Oban a command works on, and whether this process made it (and closes it)."""

    oban: Oban
    owned: bool

    @property
    def where(self) -> str:
        """The database, password hidden, and the prefix: for messages."""
        bind = self.oban.bind
        url = "no database" if bind is None else bind.url.render_as_string(hide_password=True)
        return url if self.oban.prefix is None else f"{url} (prefix {self.oban.prefix})"

    def close(self) -> None:
        """Release the pool of an Oban made here; the app's own is the app's business."""
        if self.owned:
            self.oban.close()


def ensure_cwd_importable() -> None:
    """Put the working directory on ``sys.path``, as ``python -m`` would.

    A console script's ``sys.path`` starts at the script's own directory, so
    without this ``--app myapp:oban`` run in the project would not find ``myapp``.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _import(module_name: str, source: str) -> object:
    ensure_cwd_importable()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CliError(f"bad {source}: no module named {module_name!r}") from exc
        raise CliError(f"importing {module_name!r} ({source}) failed: {exc}") from exc
    except Exception as exc:
        raise CliError(
            f"importing {module_name!r} ({source}) failed: {type(exc).__name__}: {exc}"
        ) from exc


def import_modules(names: list[str], source: str) -> None:
    """Import the modules that define workers, so that they register."""
    for name in names:
        _import(name, source)


def load_app(setting: Setting) -> Oban:
    """The ``Oban`` instance named by ``module:attr`` (``attr`` defaults to ``oban``)."""
    spec = str(setting.value).strip()
    module_name, _, attr = spec.partition(":")
    if not module_name or ":" in attr:
        raise CliError(f"bad {setting.source}: expected module:attribute, got {spec!r}")
    found = _import(module_name, setting.source)
    for part in (attr or "oban").split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            raise CliError(
                f"bad {setting.source}: {module_name!r} has no attribute {attr or 'oban'!r}"
            )
    if not isinstance(found, Oban):
        raise CliError(
            f"bad {setting.source}: {spec!r} is a {type(found).__name__}, not an Oban instance"
        )
    return found


def choose(app: Setting | None, database: Setting | None) -> Setting:
    """The setting the Oban comes from: the app or the database, whichever ranks first."""
    if app is None and database is None:
        raise CliError(NO_DATABASE)
    if app is None or database is None:
        chosen = app or database
        assert chosen is not None  # one of them is set (checked above)
        return chosen
    if app.rank == database.rank:
        raise CliError(f"{app.source} and {database.source} both say where jobs are: keep one")
    return app if app.rank < database.rank else database


def _refuse_with_app(app: Setting, others: list[Setting | None]) -> None:
    """Flags that only build an Oban make no sense next to the app's own instance."""
    for other in others:
        if other is not None and other.is_flag:
            raise CliError(
                f"{other.source} does not apply with {app.source}: "
                "the app's Oban has its own; drop one of them"
            )


def open_oban(
    *,
    app: Setting | None,
    database: Setting | None,
    prefix: Setting | None,
    queues: dict[str, int] | None = None,
    queues_setting: Setting | None = None,
    node: Setting | None = None,
    grace: float | None = None,
) -> Target:
    """The Oban to work on: loaded from the app, or built from the database settings."""
    chosen = choose(app, database)
    if chosen is app:
        _refuse_with_app(chosen, [prefix, queues_setting, node])
        return Target(load_app(chosen), owned=False)
    try:
        made = Oban(
            str(chosen.value),
            queues=queues or {},
            prefix=None if prefix is None else str(prefix.value),
            node=None if node is None else str(node.value),
            shutdown_grace=SHUTDOWN_GRACE if grace is None else grace,
        )
    except ConfigError as exc:
        raise CliError(f"bad {chosen.source}: {exc}") from exc
    return Target(made, owned=True)
