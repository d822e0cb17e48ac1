"""The import layering of the ``oban`` package, checked from its source.

Oban is built in layers so each part can be used, tested and replaced without
the parts above it: the job model works with no database, a storage engine
works with no runtime (the Inline engine and the test helpers rely on that),
the runtime drives any engine through the ``Engine`` protocol, and the face
(``Oban`` and ``oban/__init__.py``) composes them all.  An import that reaches
*up* a layer ties a lower part to a higher one; it is also how import cycles
and "partially initialized module" errors start.  These tests keep that true:

* every module under ``oban/`` has a layer in ``MODULE_LAYERS``;
* no import, anywhere in a module (function bodies and ``if TYPE_CHECKING:``
  blocks included), reaches a higher layer;
* the imports that run (``if TYPE_CHECKING:`` excluded) form no cycle;
* every module can be the first one imported in a fresh interpreter.

They read the source with ``ast`` and import nothing from ``oban`` in-process.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

LAYERS: tuple[str, ...] = ("errors", "model", "storage", "runtime", "face", "above")
"""Lowest first: a module may import modules of its own layer or of a lower one.

errors   -- the exception types, which everything raises; imports nothing from oban.
model    -- jobs, states, uniqueness, results, workers, config: plain Python, no SQL.
storage  -- the schema, migrations and engines: how jobs live in a database.
runtime  -- producers, executor, notifier: what runs jobs, on top of an engine.
face     -- ``Oban`` and ``oban/__init__.py``: the public surface composing the rest.
above    -- testing helpers, CLI and integrations: may import anything.
"""

MODULE_LAYERS: dict[str, str] = {
    "oban.errors": "errors",
    "oban.states": "model",
    "oban.job": "model",
    "oban.unique": "model",
    "oban.results": "model",
    "oban.backoff": "model",
    "oban.outcomes": "model",
    "oban.worker": "model",
    "oban._registry": "model",
    "oban.config": "model",
    "oban.attempt": "model",
    "oban.queue_info": "model",
    "oban.cron_schedule": "model",
    "oban.cron": "model",
    "oban.telemetry": "model",
    "oban.job_events": "model",
    "oban.observability": "model",
    "oban.observability.log": "model",
    "oban.observability.otel": "model",
    "oban.observability.prometheus": "above",
    "oban.engines.stats": "storage",
    "oban.schema": "storage",
    "oban.migrations": "storage",
    "oban.engines.*": "storage",
    "oban.runtime.*": "runtime",
    "oban.oban": "face",
    "oban": "face",
    "oban.testing.*": "above",
    "oban.cli.*": "above",
    "oban.integrations.*": "above",
    "oban.web.*": "above",
}
"""The layer of each module: add one line here when you add a module.

A plain name is that module only (``"oban"`` is ``oban/__init__.py``, not the
whole package); ``"pkg.*"`` is the package ``pkg`` and every module below it.
The most specific entry wins.  Names of modules that do not exist yet are
fine: they say where the module goes once it is written.
"""

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "oban"
"""The package under test: this repository's source, not an installed copy."""

MIN_MODULES = 15
"""Fewer modules than this means the walker is broken, not that the code is clean."""


@dataclass(frozen=True)
class Import:
    """One import edge: ``importer`` imports ``target`` at ``location``."""

    importer: str
    target: str
    location: str
    type_only: bool

    def __str__(self) -> str:
        return f"{self.importer} -> {self.target} ({self.location})"


@dataclass(frozen=True)
class PackageImports:
    """A package's modules (dotted name -> file) and every import between them."""

    root: Path
    package: str
    modules: Mapping[str, Path]
    imports: tuple[Import, ...]


def layer_of(module: str, table: Mapping[str, str] = MODULE_LAYERS) -> str | None:
    """The layer of ``module``: its exact entry, else its nearest ``pkg.*`` entry."""
    if module in table:
        return table[module]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        pattern = ".".join(parts[:end]) + ".*"
        if pattern in table:
            return table[pattern]
    return None


def discover_modules(package_dir: Path) -> dict[str, Path]:
    """Every module file under ``package_dir`` by dotted name (a package by its __init__)."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def guards_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` (or ``typing.TYPE_CHECKING``)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def walk_imports(
    node: ast.AST, type_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node``, at any depth, and whether it is type-only.

    A hand-written walk rather than ``ast.walk`` because it must know which
    imports sit in the body of an ``if TYPE_CHECKING:`` (its ``else`` runs).
    """
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, type_only
    elif isinstance(node, ast.If) and guards_type_checking(node.test):
        for statement in node.body:
            yield from walk_imports(statement, True)
        for statement in node.orelse:
            yield from walk_imports(statement, type_only)
    else:
        for child in ast.iter_child_nodes(node):
            yield from walk_imports(child, type_only)


def base_of_import_from(module: str, path: Path, statement: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from, relative levels resolved."""
    if statement.level == 0:
        return statement.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    parts = parts[: len(parts) - (statement.level - 1)]
    if statement.module:
        parts.append(statement.module)
    return ".".join(parts)


def named_modules(
    module: str, path: Path, statement: ast.Import | ast.ImportFrom, modules: Mapping[str, Path]
) -> list[str]:
    """The dotted names a statement imports: ``from p import x`` is ``p.x`` if that is a module."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = base_of_import_from(module, path, statement)
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
        for alias in statement.names
    ]


def existing_module(name: str, package: str, modules: Mapping[str, Path]) -> str | None:
    """The module of ``package`` that ``name`` lands in, or None for stdlib/third party."""
    if name != package and not name.startswith(package + "."):
        return None
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else None


def imports_of_module(
    module: str, path: Path, package_dir: Path, modules: Mapping[str, Path]
) -> Iterator[Import]:
    """The in-package imports of one module, one per statement and target."""
    location = path.relative_to(package_dir.parent).as_posix()
    package = package_dir.name
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for statement, type_only in walk_imports(tree):
        targets = {
            target
            for name in named_modules(module, path, statement, modules)
            if (target := existing_module(name, package, modules)) is not None
        }
        for target in sorted(targets - {module}):
            yield Import(module, target, f"{location}:{statement.lineno}", type_only)


def collect_imports(package_dir: Path) -> PackageImports:
    """Every module of the package at ``package_dir`` and all imports between them."""
    modules = discover_modules(package_dir)
    imports = tuple(
        found
        for module, path in modules.items()
        for found in imports_of_module(module, path, package_dir, modules)
    )
    return PackageImports(package_dir.parent, package_dir.name, modules, imports)


def unassigned_modules(found: PackageImports) -> list[str]:
    """A message for each existing module that has no layer in the table."""
    return [
        f"{module} ({path.relative_to(found.root).as_posix()}) has no layer: "
        "add it to the layer table MODULE_LAYERS"
        for module, path in found.modules.items()
        if layer_of(module) is None
    ]


def upward_imports(found: PackageImports) -> list[str]:
    """A message for each import (type-only ones too) that reaches a higher layer."""
    messages: list[str] = []
    for edge in found.imports:
        importer_layer, target_layer = layer_of(edge.importer), layer_of(edge.target)
        if importer_layer is None or target_layer is None:
            continue  # reported by unassigned_modules
        if LAYERS.index(target_layer) > LAYERS.index(importer_layer):
            kind = " [type-only]" if edge.type_only else ""
            messages.append(
                f"{edge}{kind}: layer {importer_layer!r} may not import layer "
                f"{target_layer!r} (a module imports only its own layer or lower ones)"
            )
    return messages


def modules_run_by(edge: Import) -> list[str]:
    """The modules an import executes: the packages on the way to the target, and it.

    ``import a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first.  The
    importer's own packages are left out of the way there: they were already
    running when the importer started (that implicit submodule -> parent edge
    would put every module on a cycle through ``oban/__init__.py``, which
    imports them all).  The target always counts, so an explicit
    ``from oban import X`` is an edge to the face.
    """
    already_running = set(packages_of(edge.importer))
    on_the_way = [name for name in packages_of(edge.target)[:-1] if name not in already_running]
    return [*on_the_way, edge.target]


def packages_of(module: str) -> list[str]:
    """``module`` and every package above it: ``a.b.c`` is ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def runtime_graph(found: PackageImports) -> dict[str, dict[str, Import]]:
    """Who runs whom on import, each edge with the import that causes it."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in found.modules}
    for edge in found.imports:
        if edge.type_only:
            continue
        for ran in modules_run_by(edge):
            if ran in found.modules:
                graph[edge.importer].setdefault(ran, edge)
    return graph


def shortest_path(graph: Mapping[str, Mapping[str, Import]], start: str, end: str) -> list[str]:
    """The shortest chain of modules from ``start`` to ``end`` (breadth first), or []."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == end:
            chain = [current]
            while (previous := came_from[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for successor in graph[current]:
            if successor not in came_from:
                came_from[successor] = current
                queue.append(successor)
    return []


def edges_of(cycle: list[str]) -> list[tuple[str, str]]:
    """The edges of a cycle ``[a, b, c]``: a -> b, b -> c and c -> a."""
    return list(zip(cycle, [*cycle[1:], cycle[0]], strict=True))


def import_cycles(found: PackageImports) -> list[list[str]]:
    """Short cycles that, together, contain every edge lying on any cycle.

    Not every simple cycle (there can be very many): the shortest cycle
    through each edge, shortest first, keeping one only if it shows an edge
    no earlier one did.  Every import that takes part in a cycle is named.
    """
    graph = runtime_graph(found)
    candidates = [
        [importer, *back[:-1]]
        for importer, successors in graph.items()
        for target in successors
        if (back := shortest_path(graph, target, importer))
    ]
    cycles: list[list[str]] = []
    shown: set[tuple[str, str]] = set()
    for cycle in sorted(candidates, key=lambda cycle: (len(cycle), cycle)):
        if not shown.issuperset(edges_of(cycle)):
            cycles.append(cycle)
            shown.update(edges_of(cycle))
    return cycles


def cycle_messages(found: PackageImports) -> list[str]:
    """A message per cycle: the chain, then the import behind each of its edges."""
    graph = runtime_graph(found)
    messages: list[str] = []
    for cycle in import_cycles(found):
        chain = " -> ".join([*cycle, cycle[0]])
        lines = [f"import cycle: {chain}"]
        for importer, target in edges_of(cycle):
            edge = graph[importer][target]
            via = "" if edge.target == target else f", which runs it to import {edge.target}"
            lines.append(f"    {importer} -> {target} ({edge.location}{via})")
        messages.append("\n".join(lines))
    return messages


IMPORT_FIRST_SCRIPT = """
import importlib, json, sys
root, package, *names = sys.argv[1:]
sys.path.insert(0, root)
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""
"""Imports each module as the first of its package, in one interpreter for speed."""


def import_first_failures(found: PackageImports) -> list[str]:
    """A message per module that fails when it is the first of its package imported.

    Which module comes first decides the order modules initialise in, and a
    cycle only breaks ("partially initialized module") for some of the orders.
    """
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_FIRST_SCRIPT, str(found.root), found.package, *found.modules],
        capture_output=True,
        text=True,
        cwd=found.root,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return [f"the import-first subprocess crashed:\n{result.stderr}"]
    failures: dict[str, str] = json.loads(result.stdout)
    return [f"{name} fails when imported first: {error}" for name, error in failures.items()]


def fail_on(rule: str, problems: list[str]) -> None:
    """Fail with the rule and one problem per line, without the traceback noise."""
    if problems:
        pytest.fail(
            f"{len(problems)} problem(s) with the rule: {rule}\n" + "\n".join(problems),
            pytrace=False,
        )


@pytest.fixture(scope="module")
def oban_imports() -> PackageImports:
    """The oban package's modules and imports, read once for all the tests here."""
    return collect_imports(PACKAGE_DIR)


def test_the_walker_sees_the_whole_package(oban_imports: PackageImports) -> None:
    """A walker that finds no modules, or no imports, would let the other tests pass vacuously."""
    assert len(oban_imports.modules) >= MIN_MODULES, sorted(oban_imports.modules)
    assert len(oban_imports.imports) >= len(oban_imports.modules), oban_imports.imports


def test_the_table_names_only_known_layers() -> None:
    """A misspelt layer would otherwise make its modules unassigned, or crash the check."""
    unknown = {name: layer for name, layer in MODULE_LAYERS.items() if layer not in LAYERS}
    assert unknown == {}, f"layers must be one of {LAYERS}"


def test_every_module_has_a_layer(oban_imports: PackageImports) -> None:
    fail_on("every module under oban/ has a layer", unassigned_modules(oban_imports))


def test_no_module_imports_a_higher_layer(oban_imports: PackageImports) -> None:
    fail_on(f"import only your own layer or lower ones {LAYERS}", upward_imports(oban_imports))


def test_there_are_no_import_cycles(oban_imports: PackageImports) -> None:
    fail_on("no import cycles (TYPE_CHECKING imports excluded)", cycle_messages(oban_imports))


def test_every_module_can_be_imported_first(oban_imports: PackageImports) -> None:
    fail_on(
        "every module imports first in a fresh interpreter", import_first_failures(oban_imports)
    )


FAKE_PACKAGES: dict[str, dict[str, str]] = {
    "clean": {
        "errors.py": "class Oops(Exception): ...\n",
        "job.py": "import typing\nif typing.TYPE_CHECKING:\n    from .unique import U\n",
        "unique.py": "from .job import *\n\ndef later():\n    from . import errors\n",
    },
    "upward": {"errors.py": "def f():\n    from oban import Oban\n    from oban.job import J\n"},
    "type_only_upward": {
        "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import oban.job\n",
        "job.py": "from .errors import *\n",
    },
    "cycle": {
        "job.py": "from .unique import U\nJ = 1\n",
        "unique.py": "from .job import J\nU = 1\n",
    },
    "unassigned": {"job.py": "", "secret.py": "from . import job\n"},
}
"""Tiny ``oban`` look-alikes: one clean, and one breaking each rule."""

EXPECTED_PROBLEMS: dict[str, tuple[int, int, int, int]] = {
    "clean": (0, 0, 0, 0),
    "upward": (0, 2, 0, 0),  # errors -> oban (the face) and errors -> oban.job
    "type_only_upward": (0, 1, 0, 0),
    "cycle": (0, 0, 1, 2),
    "unassigned": (1, 0, 0, 0),
}
"""Per fake: (unassigned, upward, cycles, import-first failures) the checks report."""


@pytest.mark.parametrize("name", sorted(FAKE_PACKAGES))
def test_the_checks_pass_and_fail_on_fake_packages(name: str, tmp_path: Path) -> None:
    """Each check passes on a clean package and names the problem a broken one has."""
    package_dir = tmp_path / "oban"
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    for filename, source in FAKE_PACKAGES[name].items():
        (package_dir / filename).write_text(source)
    found = collect_imports(package_dir)
    problems = (
        unassigned_modules(found),
        upward_imports(found),
        cycle_messages(found),
        import_first_failures(found),
    )
    assert tuple(map(len, problems)) == EXPECTED_PROBLEMS[name], problems


WITHOUT_PSYCOPG_SCRIPT = """
import sys, tempfile, os
sys.modules["psycopg"] = None  # import psycopg now raises ImportError, as when not installed
import oban
from oban import Job, Oban
path = os.path.join(tempfile.mkdtemp(), "jobs.db")
instance = Oban(f"sqlite:///{path}", testing="manual")
instance.migrate()
saved = instance.enqueue_many([Job("app.Worker", args={"n": n}) for n in range(100)])
assert len({job.id for job in saved}) == 100
instance.close()
print("ok")
"""


def test_oban_imports_and_runs_on_sqlite_without_psycopg() -> None:
    """psycopg is the PostgreSQL extra's: the README's demo installs only ``.[cli]``,
    so nothing imported by ``import oban`` may import it at module level."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
