"""Where the CLI's settings come from: flags, then ``OBAN_*``, then ``[tool.oban]``.

Each setting is looked up in that order and remembers where it was found,
so an error names the very place to fix (``--queues``, ``OBAN_QUEUES`` or
``[tool.oban] queues in /app/pyproject.toml``). Plain functions on plain
values: nothing here touches a database.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SETTINGS",
    "CliError",
    "Setting",
    "Sources",
    "find_pyproject",
    "parse_grace",
    "parse_imports",
    "parse_queues",
]

SETTINGS: dict[str, tuple[str, str]] = {
    "database": ("--database", "OBAN_DATABASE_URL"),
    "prefix": ("--prefix", "OBAN_PREFIX"),
    "app": ("--app", "OBAN_APP"),
    "queues": ("--queues", "OBAN_QUEUES"),
    "import": ("--import", "OBAN_IMPORT"),
    "node": ("--node", "OBAN_NODE"),
    "grace": ("--grace", "OBAN_GRACE"),
}
"""Each setting's ``[tool.oban]`` key -> its flag and its environment variable."""

FLAG, ENV, FILE = 0, 1, 2
"""Ranks of the sources, most important first."""

QUEUES_HINT = "expected name:limit[,name:limit...], e.g. default:10,mailers:5"


class CliError(Exception):
    """A problem the user can fix, told as one line on stderr (no traceback)."""


@dataclass(frozen=True)
class Setting:
    """One setting's value and where it came from."""

    value: object
    source: str
    """How the user wrote it: ``--queues``, ``OBAN_QUEUES``, ``[tool.oban] queues in ...``."""
    rank: int
    """:data:`FLAG`, :data:`ENV` or :data:`FILE`: which source wins when two are given."""

    @property
    def is_flag(self) -> bool:
        return self.rank == FLAG


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a directory above it."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_tool_table(path: Path | None) -> dict[str, Any]:
    """``[tool.oban]`` of the file at ``path``; empty when there is no file or no table."""
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    table = document.get("tool", {}).get("oban", {})
    if not isinstance(table, dict):
        raise CliError(f"[tool.oban] in {path} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(SETTINGS))
    if unknown:
        raise CliError(
            f"unknown key(s) {', '.join(unknown)} in [tool.oban] of {path}; "
            f"known: {', '.join(sorted(SETTINGS))}"
        )
    return table


@dataclass
class Sources:
    """The environment and ``[tool.oban]`` that flags fall back on."""

    environ: Mapping[str, str]
    table: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def discover(cls, environ: Mapping[str, str], cwd: Path) -> Sources:
        """The process's environment and the nearest pyproject.toml above ``cwd``."""
        path = find_pyproject(cwd)
        return cls(environ, read_tool_table(path), path)

    def get(self, name: str, flag: object = None) -> Setting | None:
        """The setting ``name``: the flag if given, else its variable, else the file."""
        flag_name, variable = SETTINGS[name]
        if flag is not None and flag != ():
            return Setting(flag, flag_name, FLAG)
        if self.environ.get(variable, "").strip():
            return Setting(self.environ[variable].strip(), variable, ENV)
        if name in self.table:
            return Setting(self.table[name], f"[tool.oban] {name} in {self.path}", FILE)
        return None

    def text(self, name: str, flag: object = None) -> Setting | None:
        """Like :meth:`get` for a setting that must be a non-empty string."""
        found = self.get(name, flag)
        if found is not None and (not isinstance(found.value, str) or not found.value.strip()):
            raise CliError(f"bad {found.source}: expected a non-empty string, got {found.value!r}")
        return found


def parse_queues(setting: Setting) -> dict[str, int]:
    """``default:10,mailers:5`` (or a TOML table / list of such items) -> name -> limit."""
    value = setting.value
    if isinstance(value, Mapping):
        items = [(str(name), limit) for name, limit in value.items()]
    elif isinstance(value, str):
        items = [_queue_item(item, setting) for item in _split(value)]
    elif isinstance(value, (list, tuple)):
        items = [_queue_item(str(item), setting) for text in value for item in _split(str(text))]
    else:
        raise CliError(f"bad {setting.source}: {QUEUES_HINT}; got {value!r}")
    queues: dict[str, int] = {}
    for name, limit in items:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise CliError(f"bad {setting.source}: queue {name!r} needs a limit of at least 1")
        if name in queues:
            raise CliError(f"bad {setting.source}: queue {name!r} is given twice")
        queues[name] = limit
    if not queues:
        raise CliError(f"bad {setting.source}: {QUEUES_HINT}; got {value!r}")
    return queues


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _queue_item(item: str, setting: Setting) -> tuple[str, object]:
    name, colon, limit = item.partition(":")
    if not colon or not name.strip() or not limit.strip().isdigit():
        raise CliError(f"bad {setting.source} item {item!r}: {QUEUES_HINT}")
    return name.strip(), int(limit)


def parse_imports(setting: Setting | None) -> list[str]:
    """Module names from repeated flags, commas, or a TOML list, in order, once each."""
    if setting is None:
        return []
    value = setting.value
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(text, str) for text in value):
        texts = [str(text) for text in value]
    else:
        raise CliError(f"bad {setting.source}: expected module names, got {value!r}")
    return list(dict.fromkeys(name for text in texts for name in _split(text)))


def parse_grace(setting: Setting | None) -> float | None:
    """Seconds (>= 0) that running jobs get to finish at a stop; None: the Oban's default."""
    if setting is None:
        return None
    value = setting.value
    try:
        seconds = float(value) if isinstance(value, (str, int, float)) else math.nan
    except ValueError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise CliError(f"bad {setting.source}: expected seconds >= 0, got {value!r}")
    return seconds
