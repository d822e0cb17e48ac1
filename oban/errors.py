"""Every exception Oban raises on purpose.

One root, so ``except oban.ObanError`` catches all of them; each message says
what to do about it. Errors from the database driver are translated at the
engine boundary with ``raise ... from`` so the original stays attached::

    ObanError
     +-- JobValidationError (also a ValueError)  bad job options or args
     +-- ConfigError        (also a ValueError)  bad Oban(...) options
     +-- UnknownWorkerError                      a worker name that resolves to nothing
     +-- NotRunningError                         an operation that needs a started Oban
     +-- AlreadyRunningError                     start() of an Oban that is running
     +-- InstanceNotFoundError                   a worker enqueues through a missing Oban
     +-- DatabaseError                           the database failed or went away
     +-- SchemaError                             the oban_jobs table is missing or old
     +-- EngineError                             an engine asked for what it cannot do
     +-- JobTimeoutError                         recorded on an attempt past its timeout
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunningError",
    "ConfigError",
    "DatabaseError",
    "EngineError",
    "InstanceNotFoundError",
    "JobTimeoutError",
    "JobValidationError",
    "NotRunningError",
    "ObanError",
    "SchemaError",
    "UnknownWorkerError",
]


class ObanError(Exception):
    """Root of every error Oban raises on purpose."""


class JobValidationError(ObanError, ValueError):
    """A job option or its args are invalid; the message names the field."""


class ConfigError(ObanError, ValueError):
    """An ``Oban(...)`` option is invalid; the message names the option."""


class UnknownWorkerError(ObanError):
    """A job names a worker this process cannot find.

    Raised inside an attempt, so the job fails and retries with backoff like any
    other failure: during a rolling deploy an older node may see a job for a
    worker only the newer code has, and nothing must be lost.
    """


class NotRunningError(ObanError):
    """An operation needs a started Oban (``start()``, ``with oban:`` or ``async with``)."""


class AlreadyRunningError(ObanError):
    """``start()``/``start_async()`` of an ``Oban`` that is already running: stop it first."""


class InstanceNotFoundError(ObanError):
    """A worker enqueued itself, but no ``Oban`` instance with its name exists."""


class DatabaseError(ObanError):
    """The database failed or could not be reached; the cause is attached."""


class SchemaError(DatabaseError):
    """The Oban tables are missing or out of date: run ``oban.migrate()``."""


class EngineError(ObanError):
    """The engine in use cannot do what was asked (e.g. Inline has no storage)."""


class JobTimeoutError(ObanError):
    """An attempt ran past its worker's timeout; recorded in the job's errors, never raised."""
