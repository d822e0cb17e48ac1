"""A Flask app that enqueues Oban jobs in Flask-SQLAlchemy's transaction (see README.md)."""

from __future__ import annotations
