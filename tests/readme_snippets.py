"""The README's code blocks, by name, so the tests run what a reader copies.

Every fenced block in README.md is preceded by a marker line
``<!-- snippet: NAME -->`` (invisible when the README is rendered). Tests ask
for a block by that name; ``tests/test_readme.py`` checks that every block has
a marker and that every name is run by some test, so no snippet can rot
unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

_MARKER = re.compile(r"^<!-- snippet: ([a-z0-9][a-z0-9-]*) -->\s*$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Snippet:
    name: str | None  # None: a block without a marker (a test fails on it)
    lang: str
    code: str
    line: int  # 1-based line of the opening fence, for messages


@cache
def snippets(path: Path = README) -> tuple[Snippet, ...]:
    """Every fenced block of the file, in order, with the marker name before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    pending: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            pending = marker.group(1)
        elif fence:
            start = index
            index += 1
            body: list[str] = []
            while index < len(lines) and lines[index].rstrip() != "```":
                body.append(lines[index])
                index += 1
            found.append(Snippet(pending, fence.group(1), "\n".join(body) + "\n", start + 1))
            pending = None
        elif line.strip():
            pending = None  # a marker names only the block right after it
        index += 1
    return tuple(found)


def snippet(name: str, path: Path = README) -> str:
    """The code of the block named ``name``; a missing name fails loudly."""
    for block in snippets(path):
        if block.name == name:
            return block.code
    raise LookupError(f"README has no block marked <!-- snippet: {name} -->")
