"""Native OpenTelemetry instrumentation: traces across the queue, and metrics.

On whenever ``opentelemetry-api`` is importable (the ``otel`` extra), with
no setup call: Oban asks the global tracer and meter providers, which do
nothing until the application installs an SDK. :func:`configure` turns it
off (``Oban(telemetry_otel=False)`` does that) or points it at providers of
its own instead of the global ones.

Traces follow the OpenTelemetry messaging conventions (``messaging.system =
"oban"``, the queue as ``messaging.destination.name``):

- ``send <queue>`` (PRODUCER) around each ``enqueue``/``enqueue_many``; its
  trace context is written into each job's ``meta["otel"]`` (W3C
  ``traceparent``), so it survives the database and other processes;
- ``process <queue>`` (CONSUMER) around each attempt, current while the job
  runs so its own spans nest under it, with a span *link* to the enqueuing
  span. The first attempt is also its child, so a trace started in a request
  continues into the job; a retry starts a trace of its own (linked), so a
  backoff of hours does not stretch the request's trace.

Metrics: ``oban.job.duration`` (histogram, seconds, by queue, worker and
resulting state) from the attempts this process runs, and, read from the
database of every running instance at each collection, ``oban.jobs``
(by queue and state), ``oban.queue.depth`` and ``oban.queue.lag`` (gauges).
Every process running Oban reports the same database figures: aggregate
them with ``max``, not ``sum``.

With no SDK installed the attempt pays one provider check; nothing is built.
This module is in the model layer: the database figures come from readers
the face registers (:func:`add_reader`), never from SQL here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..job import Job, JobState

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import Link, ProxyTracerProvider, SpanKind, Status, StatusCode

    AVAILABLE = True
except ImportError:  # the otel extra is not installed: every function is a no-op
    AVAILABLE = False

_PROXY_METER_PROVIDER: type | None = None
"""The API's placeholder meter provider class (private, so looked up guarded):
while the global provider is one, no SDK is installed and nothing is recorded."""
if AVAILABLE:
    with contextlib.suppress(ImportError, AttributeError):
        from opentelemetry.metrics import _internal as _metrics_internal

        _PROXY_METER_PROVIDER = _metrics_internal._ProxyMeterProvider

__all__ = [
    "AVAILABLE",
    "META_KEY",
    "QueueFigures",
    "add_reader",
    "configure",
    "enabled",
    "remove_reader",
    "set_enabled",
]

logger = logging.getLogger("oban")

META_KEY = "otel"
"""``job.meta[META_KEY]``: the enqueuing span's W3C trace context (``traceparent``, ...)."""
SYSTEM = "oban"
SCOPE = "oban"

enabled: bool = AVAILABLE
"""Whether Oban instruments at all (``configure(enabled=...)``)."""
_tracer_provider: Any = None
_meter_provider: Any = None
_lock = threading.Lock()


def set_enabled(flag: bool) -> None:
    """Turn the instrumentation on (if ``opentelemetry-api`` is importable) or off.

    Process-wide, as the providers are: ``Oban(telemetry_otel=False)`` calls it.
    """
    global enabled, _checked_at
    enabled = bool(flag) and AVAILABLE
    _checked_at = float("-inf")


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of the global ones (None: the global ones again),
    for an application that keeps its providers to itself, and for tests."""
    global _tracer_provider, _meter_provider, _instruments, _checked_at
    with _lock:
        _checked_at = float("-inf")
        _tracer_provider = tracer_provider
        if meter_provider is not _meter_provider:
            _meter_provider = meter_provider
            _instruments = None  # made again on the new provider at the next use


RECHECK = 1.0
"""Seconds between looks at the global providers: asking them costs microseconds
(``get_tracer_provider()`` reads the environment each time), which an attempt
must not pay; an SDK installed later is seen within this long."""

_checked_at = float("-inf")
_live_tracer: Any = None
_live_meter = False


def _refresh() -> None:
    """Look at the providers again if the last look is older than :data:`RECHECK`."""
    global _checked_at, _live_tracer, _live_meter
    now = time.monotonic()
    if now - _checked_at < RECHECK:
        return
    provider = _tracer_provider or trace.get_tracer_provider()
    _live_tracer = None if isinstance(provider, ProxyTracerProvider) else provider.get_tracer(SCOPE)
    proxy = _PROXY_METER_PROVIDER
    _live_meter = _meter_provider is not None or (
        proxy is None or not isinstance(metrics.get_meter_provider(), proxy)
    )
    _checked_at = now


def _tracer() -> Any:
    """The tracer to use, or None when no SDK would record anything."""
    if not enabled:
        return None
    _refresh()
    return _live_tracer


def _meter_live() -> bool:
    if not enabled:
        return False
    _refresh()
    return _live_meter


def active() -> bool:
    """Whether an attempt needs observing for OpenTelemetry (an SDK is installed)."""
    if not enabled:
        return False
    _refresh()
    return _live_tracer is not None or _live_meter


# -- enqueue ----------------------------------------------------------------------------


class _Sending:
    """What ``with sending(jobs) as sent`` gives: ``sent.saved(jobs)`` after the insert."""

    def __init__(self, span: Any = None) -> None:
        self.span = span

    def saved(self, jobs: Sequence[Job]) -> None:
        span = self.span
        if span is None:
            return
        if len(jobs) == 1 and jobs[0].id is not None:
            span.set_attribute("messaging.message.id", str(jobs[0].id))
        conflicts = sum(1 for job in jobs if job.conflict)
        if conflicts:
            span.set_attribute("oban.conflicts", conflicts)


_NOT_SENDING = _Sending()


def _carries_context(job: Job) -> bool:
    """Whether trace context may go in this job's meta: not where the whole meta
    decides uniqueness (a fresh traceparent would make every job unique)."""
    spec = job.unique
    return spec is None or "meta" not in spec.fields or bool(spec.keys)


@contextlib.contextmanager
def sending(jobs: Sequence[Job]) -> Iterator[_Sending]:
    """Around an insert of ``jobs``: a ``send`` span whose context each job carries."""
    tracer = _tracer() if jobs else None
    if tracer is None:
        yield _NOT_SENDING
        return
    queues = sorted({job.queue for job in jobs})
    destination = queues[0] if len(queues) == 1 else None
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if destination is not None:
        attributes["messaging.destination.name"] = destination
    if len(jobs) > 1:
        attributes["messaging.batch.message_count"] = len(jobs)
    name = f"send {destination}" if destination is not None else "send"
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        for job in jobs:
            if _carries_context(job):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                job.meta = {**job.meta, META_KEY: carrier}
        yield _Sending(span)


# -- one attempt ------------------------------------------------------------------------


class Attempt:
    """The ``process`` span of one attempt (current while it runs) and its duration."""

    __slots__ = ("job", "span", "started", "token")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.started = time.perf_counter()
        self.span: Any = None
        self.token: Any = None
        tracer = _tracer()
        if tracer is None:
            return
        carried = job.meta.get(META_KEY)
        links = []
        parent = None
        if isinstance(carried, dict):
            sent = propagate.extract({str(k): str(v) for k, v in carried.items()})
            sent_span = trace.get_current_span(sent).get_span_context()
            if sent_span.is_valid:
                links.append(Link(sent_span, {"messaging.operation.type": "send"}))
                if job.attempt <= 1:
                    parent = sent
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "oban.job.worker": job.worker,
            "oban.job.attempt": job.attempt,
            "oban.job.max_attempts": job.max_attempts,
        }
        self.span = tracer.start_span(
            f"process {job.queue}",
            context=parent if parent is not None else otel_context.Context(),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def finished(self, state: JobState, error: BaseException | str | None) -> None:
        duration = time.perf_counter() - self.started
        span = self.span
        if span is not None:
            span.set_attribute("oban.job.state", state.value)
            if error is not None and state in (JobState.RETRYABLE, JobState.DISCARDED):
                if isinstance(error, BaseException):
                    span.record_exception(error)
                    span.set_attribute("error.type", type(error).__qualname__)
                message = str(error).partition("\n")[0]
                span.set_status(Status(StatusCode.ERROR, message))
            if self.token is not None:
                with contextlib.suppress(Exception):  # a context switched under us
                    otel_context.detach(self.token)
            span.end()
        if _meter_live():
            _histogram().record(
                duration,
                {
                    "messaging.destination.name": self.job.queue,
                    "oban.job.worker": self.job.worker,
                    "oban.job.state": state.value,
                },
            )


def attempt(job: Job) -> Attempt | None:
    """Start observing an attempt for OpenTelemetry; None when nothing would record it."""
    if not active():
        return None
    return Attempt(job)


# -- metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    """One queue as a reader reports it: jobs per state, and its lag in seconds."""

    queue: str
    counts: Mapping[str, int]
    lag: float


Reader = Callable[[], Iterable[QueueFigures]]

_readers: dict[int, tuple[str, Reader]] = {}
_reader_ids = iter(range(1, 1 << 62))
_instruments: tuple[Any, ...] | None = None
_CACHE_SECONDS = 1.0
_cache: dict[int, tuple[float, list[QueueFigures]]] = {}


def add_reader(name: str, reader: Reader) -> int:
    """Report ``reader()``'s figures (as instance ``name``) at each collection; its id."""
    _ensure_instruments()
    with _lock:
        reader_id = next(_reader_ids)
        _readers[reader_id] = (name, reader)
    return reader_id


def remove_reader(reader_id: int) -> None:
    with _lock:
        _readers.pop(reader_id, None)
        _cache.pop(reader_id, None)


def _figures() -> list[tuple[str, QueueFigures]]:
    """Every reader's figures, read at most once a second (three gauges, one read)."""
    now = time.monotonic()
    found: list[tuple[str, QueueFigures]] = []
    for reader_id, (name, reader) in list(_readers.items()):
        cached = _cache.get(reader_id)
        if cached is None or now - cached[0] > _CACHE_SECONDS:
            try:
                cached = (now, list(reader()))
            except Exception as exc:  # a collection never fails because the database did
                logger.warning("OpenTelemetry metrics could not read the Oban tables: %s", exc)
                cached = (now, [])
            _cache[reader_id] = cached
        found.extend((name, figures) for figures in cached[1])
    return found


def _observe_jobs(options: Any) -> Iterator[Any]:
    for name, figures in _figures():
        for state in JobState:
            yield metrics.Observation(
                figures.counts.get(state.value, 0),
                {"oban.name": name, "messaging.destination.name": figures.queue,
                 "oban.job.state": state.value},
            )  # fmt: skip


def _observe_depth(options: Any) -> Iterator[Any]:
    for name, figures in _figures():
        depth = figures.counts.get(JobState.AVAILABLE.value, 0)
        attributes = {"oban.name": name, "messaging.destination.name": figures.queue}
        yield metrics.Observation(depth, attributes)


def _observe_lag(options: Any) -> Iterator[Any]:
    for name, figures in _figures():
        attributes = {"oban.name": name, "messaging.destination.name": figures.queue}
        yield metrics.Observation(figures.lag, attributes)


def _meter() -> Any:
    provider = _meter_provider or metrics.get_meter_provider()
    return provider.get_meter(SCOPE)


def _ensure_instruments() -> tuple[Any, ...] | None:
    global _instruments
    if not AVAILABLE:
        return None
    with _lock:
        if _instruments is None:
            meter = _meter()
            _instruments = (
                meter.create_histogram(
                    "oban.job.duration", unit="s", description="Seconds each attempt ran."
                ),
                meter.create_observable_gauge(
                    "oban.jobs",
                    callbacks=[_observe_jobs],
                    unit="{job}",
                    description="Jobs in the table, by queue and state (from the database).",
                ),
                meter.create_observable_gauge(
                    "oban.queue.depth",
                    callbacks=[_observe_depth],
                    unit="{job}",
                    description="Available jobs waiting to run, by queue (from the database).",
                ),
                meter.create_observable_gauge(
                    "oban.queue.lag",
                    callbacks=[_observe_lag],
                    unit="s",
                    description="Seconds the queue's oldest available job has waited.",
                ),
            )
        return _instruments


def _histogram() -> Any:
    instruments = _ensure_instruments()
    assert instruments is not None  # only called where AVAILABLE
    return instruments[0]
