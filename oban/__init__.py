"""Oban for Python: background jobs as rows in your own SQL database.

Everything public is re-exported here; other modules are private.
"""

from __future__ import annotations

from . import telemetry
from .engines import Capability, Engine, Inline, Lite
from .engines.basic import Basic
from .errors import (
    AlreadyRunningError,
    ConfigError,
    DatabaseError,
    EngineError,
    InstanceNotFoundError,
    JobTimeoutError,
    JobValidationError,
    NotRunningError,
    ObanError,
    SchemaError,
    UnknownWorkerError,
)
from .job import Job, JobState
from .migrations import migrate
from .oban import Oban
from .queue_info import QueueInfo
from .results import Cancel, Record, Snooze
from .worker import JobFunction, Worker, job, worker

__all__ = [
    "AlreadyRunningError",
    "Basic",
    "Cancel",
    "Capability",
    "ConfigError",
    "DatabaseError",
    "Engine",
    "EngineError",
    "Inline",
    "InstanceNotFoundError",
    "Job",
    "JobFunction",
    "JobState",
    "JobTimeoutError",
    "JobValidationError",
    "Lite",
    "NotRunningError",
    "Oban",
    "ObanError",
    "QueueInfo",
    "Record",
    "SchemaError",
    "Snooze",
    "UnknownWorkerError",
    "Worker",
    "job",
    "migrate",
    "telemetry",
    "worker",
]

__version__ = "0.1.0"
