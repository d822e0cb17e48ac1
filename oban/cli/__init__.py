"""The ``oban`` command line: ``oban migrate``, ``oban start``, ``oban jobs`` and more.

Needs the ``cli`` extra (``pip install 'oban[cli]'``: click and rich). The
commands are in :mod:`oban.cli.main`; ``docs/cli.md`` describes them.
"""

from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
