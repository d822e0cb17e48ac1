"""Oban as a Flask extension: run the queues in the web process, or leave them to a worker.

::

    oban = Oban(db.engine, queues={"default": 10})   # or a URL; in an app context
    FlaskOban(oban, app)                             # or: ext = FlaskOban(oban); ext.init_app(app)

    @app.post("/signup")
    def signup():
        db.session.add(User(email=...))
        oban.enqueue(SendWelcome.new({...}), conn=db.session)   # same transaction
        db.session.commit()

The extension is stored as ``app.extensions["oban"]``; :func:`get_oban` finds
the instance from a view.

When the queues start: at the first request the process serves, in a
background thread (:meth:`oban.Oban.start`), not when the app is created,
because

* the Flask reloader (``flask run --debug``) imports the app in a parent
  process that only watches files and never serves; it must not run jobs
  with code that is about to be reloaded;
* a pre-forking server (gunicorn ``--preload``) creates the app before it
  forks, and threads do not survive a fork: each worker starts its own
  runtime at its first request;
* test suites create many apps, and an app that serves no request starts
  nothing.

They stop when the process exits (``atexit``, graceful: running jobs get
``Oban(shutdown_grace=...)`` seconds), or at :meth:`FlaskOban.stop`.
``run_queues=False`` never starts them: the process only enqueues, and a
separate worker process (``oban start``) runs the jobs. :meth:`FlaskOban.start`
starts them at once instead of at the first request.
"""

from __future__ import annotations

import atexit
import threading
from contextlib import suppress

try:
    from flask import Flask, current_app
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("oban.integrations.flask needs Flask: pip install 'oban[flask]'") from exc

from ..errors import NotRunningError
from ..oban import Oban

__all__ = ["EXTENSION_KEY", "FlaskOban", "get_oban"]

EXTENSION_KEY = "oban"
"""The key of ``app.extensions`` the extension is stored under."""


class FlaskOban:
    """Ties one Oban instance's queues to the life of the Flask process serving it.

    Args:
        oban: the instance; enqueue with it inside ``db.session``
            (``oban.enqueue(job, conn=db.session)``).
        app: the app, or ``None`` to call :meth:`init_app` later (app factories);
            several apps may share one extension, and so one runtime.
        run_queues: ``False`` leaves running jobs to another process.
    """

    def __init__(self, oban: Oban, app: Flask | None = None, *, run_queues: bool = True) -> None:
        self.oban = oban
        self.run_queues = run_queues
        self._lock = threading.Lock()
        self._started_by_request = False
        self._started_here = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``: ``app.extensions["oban"]``, and the start at its first request."""
        existing = app.extensions.get(EXTENSION_KEY)
        if existing is not None and existing is not self:
            raise RuntimeError(f"{app!r} already has an Oban extension: {existing!r}")
        app.extensions[EXTENSION_KEY] = self
        if self.run_queues:
            app.before_request(self._start_at_first_request)

    def __repr__(self) -> str:
        return f"FlaskOban({self.oban!r}, run_queues={self.run_queues})"

    @property
    def is_running(self) -> bool:
        return self.oban.is_running

    def start(self) -> None:
        """Start the queues now (in a background thread), unless they are running.

        Safe to call from several threads at once. The runtime is stopped at
        process exit unless :meth:`stop` was called first.
        """
        with self._lock:
            if self.oban.is_running:
                return
            self.oban.start()
            self._started_here = True
            atexit.register(self._stop_at_exit)

    def stop(self, grace: float | None = None) -> None:
        """Stop the queues this extension started (graceful; see :meth:`oban.Oban.stop`).

        Does nothing when they are not running, so tests can call it freely.
        """
        with self._lock:
            if not self._started_here:
                return
            self._started_here = False
            atexit.unregister(self._stop_at_exit)
            with suppress(NotRunningError):  # already stopped by its owner
                self.oban.stop(grace)

    def _start_at_first_request(self) -> None:
        # A before_request hook returning None lets the request go on. Every
        # request passes here, so the flag is read without the lock; start()
        # takes it. Set only once started: if the database was down, the next
        # request tries again. Once a request has started them, no later one
        # restarts them after stop().
        if self._started_by_request:
            return
        self.start()
        self._started_by_request = True

    def _stop_at_exit(self) -> None:
        self.stop()


def get_oban(app: Flask | None = None) -> Oban:
    """The Oban instance of ``app`` (the current app by default), set by :class:`FlaskOban`."""
    target = current_app if app is None else app
    extension = target.extensions.get(EXTENSION_KEY)
    if not isinstance(extension, FlaskOban):
        raise RuntimeError(
            f"{target!r} has no Oban extension: call FlaskOban(oban, app) or ext.init_app(app)"
        )
    return extension.oban
