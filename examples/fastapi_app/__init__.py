"""A FastAPI app that enqueues Oban jobs in its requests' transactions (see README.md)."""

from __future__ import annotations
