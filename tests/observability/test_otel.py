"""OpenTelemetry: a trace started in a request continues in the job; spans follow the
messaging conventions; metrics from the attempts and the database. In-memory
SDK exporters, handed to Oban through ``otel.configure`` (the global providers
are never set, so other tests run without an SDK)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from oban import Job, JobState, Oban, job_events
from oban.attempt import execute_blocking
from oban.observability import otel
from tests.conftest import SqlDatabase, wait_for
from tests.observability import workers


@pytest.fixture
def oban_options() -> dict[str, Any]:
    return {"poll_interval": 0.05, "stage_interval": 0.05}


class Sdk:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    made = Sdk()
    otel.configure(tracer_provider=made.tracer_provider, meter_provider=made.meter_provider)
    workers.SEEN_SPANS.clear()
    yield made
    otel.configure()
    otel.set_enabled(True)
    made.meter_provider.shutdown()


async def wait_until(condition: Callable[[], object], *, what: str, within: float = 20.0) -> None:
    deadline = anyio.current_time() + within
    while not condition():
        if anyio.current_time() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_a_trace_started_in_a_request_continues_in_the_job(
    database: SqlDatabase, sdk: Sdk
) -> None:
    tracer = sdk.tracer_provider.get_tracer("app")
    async with database.make_oban(queues={"obs": 2}) as oban:
        with tracer.start_as_current_span("GET /signup") as request:
            queued = await oban.enqueue_async(workers.Traced.new({}))
            queued_async = await oban.enqueue_async(workers.AsyncTraced.new({}))
        await wait_until(lambda: len(sdk.spans("process obs")) == 2, what="two process spans")

    assert otel.META_KEY in queued.meta
    assert queued.meta[otel.META_KEY]["traceparent"].startswith("00-")
    trace_id = request.get_span_context().trace_id
    sends = sdk.spans("send obs")
    assert len(sends) == 2
    for send in sends:
        assert send.kind is SpanKind.PRODUCER
        assert send.parent is not None
        assert send.parent.span_id == request.get_span_context().span_id
        assert send.attributes is not None
        assert send.attributes["messaging.system"] == "oban"
        assert send.attributes["messaging.destination.name"] == "obs"
        assert send.attributes["messaging.operation.type"] == "send"
    ids = {str(queued.id), str(queued_async.id)}
    assert {s.attributes["messaging.message.id"] for s in sends if s.attributes} == ids
    processes = sdk.spans("process obs")
    send_ids = {send.context.span_id for send in sends}
    for span in processes:
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == trace_id  # the request's trace goes on
        assert span.parent is not None
        assert span.parent.span_id in send_ids  # first attempt: child of its send span
        assert next(link.context.span_id for link in span.links) in send_ids
        assert span.attributes is not None
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["oban.job.state"] == "completed"
        assert span.attributes["oban.job.attempt"] == 1
    # Inside the job (a def job's thread and an async job alike) its process span is current.
    process_ids = {span.context.span_id for span in processes}
    assert sorted(kind for kind, _, _ in workers.SEEN_SPANS) == ["async", "def"]
    assert {span_id for _, _, span_id in workers.SEEN_SPANS} == process_ids
    assert {tid for _, tid, _ in workers.SEEN_SPANS} == {trace_id}


def test_a_failure_marks_the_span_and_a_retry_starts_its_own_linked_trace(sdk: Sdk) -> None:
    oban = Oban(testing="inline")
    failed = oban.enqueue(workers.Fail.new({"n": 1}))
    assert failed.state is JobState.RETRYABLE
    (span,) = sdk.spans("process obs")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "Boom"
    assert [event.name for event in span.events] == ["exception"]
    (send,) = sdk.spans("send obs")

    # Attempt 2 of the same job, as a node would fetch it after the backoff.
    now = datetime.now(timezone.utc)
    again = Job.from_row(
        {
            "id": 99, "worker": failed.worker, "queue": "obs", "args": {}, "meta": failed.meta,
            "state": JobState.EXECUTING, "attempt": 2, "max_attempts": 3,
            "scheduled_at": now, "attempted_at": now, "inserted_at": now,
        }
    )  # fmt: skip
    execute_blocking(again, clock=lambda: now)
    retry = sdk.spans("process obs")[-1]
    assert retry.parent is None  # a trace of its own: backoffs never stretch the request's
    assert retry.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in retry.links] == [send.context.span_id]


def _by(points: list[Any], *keys: str) -> dict[Any, Any]:
    return {
        tuple(p.attributes[key] for key in keys) if len(keys) > 1 else p.attributes[keys[0]]: (
            p.count if hasattr(p, "count") else p.value
        )
        for p in points
    }


def test_metrics_of_attempts_and_of_the_database(database: SqlDatabase, sdk: Sdk) -> None:
    oban = database.make_oban(queues={"obs": 1, "paused": 1})
    queue_state = ("messaging.destination.name", "oban.job.state")
    with oban:
        oban.pause_queue("paused")
        oban.enqueue(workers.Succeed.new({}))
        oban.enqueue(workers.Fail.new({"n": 2}))
        oban.enqueue_many([Job("app.Later", queue="paused") for _ in range(2)])

        def settled() -> dict[str, list[Any]] | None:
            found = sdk.metrics()
            jobs = _by(found.get("oban.jobs", []), *queue_state)
            durations = sum(p.count for p in found.get("oban.job.duration", []))
            acked = jobs.get(("obs", "completed")) == jobs.get(("obs", "retryable")) == 1
            if durations == 2 and acked:
                return found
            return None

        found = wait_for(settled, message="both attempts measured and acked")
    assert isinstance(found, dict)
    assert _by(found["oban.job.duration"], "oban.job.state") == {"completed": 1, "retryable": 1}
    assert {p.attributes["messaging.destination.name"] for p in found["oban.job.duration"]} == {
        "obs"
    }
    jobs = _by(found["oban.jobs"], *queue_state)
    assert jobs[("paused", "available")] == 2
    assert jobs[("obs", "retryable")] == 1
    assert _by(found["oban.queue.depth"], "messaging.destination.name")["paused"] == 2
    assert _by(found["oban.queue.lag"], "messaging.destination.name")["paused"] >= 0
    assert _by(found["oban.queue.lag"], "oban.name") == {oban.name: pytest.approx(0, abs=60)}
    oban.close()


def test_telemetry_otel_false_turns_it_off(sdk: Sdk) -> None:
    oban = Oban(testing="inline", telemetry_otel=False)
    done = oban.enqueue(workers.Succeed.new({}))
    assert done.state is JobState.COMPLETED
    assert sdk.spans() == []
    assert otel.META_KEY not in done.meta


def test_without_an_sdk_an_attempt_is_not_observed() -> None:
    """The global providers are the API's placeholders here: nothing is built per job."""
    otel.configure()
    assert otel.AVAILABLE
    assert otel.enabled
    assert not otel.active()
    job = Job("app.Any", queue="obs")
    assert job_events.observe(job) is None
    done = Oban(testing="inline").enqueue(workers.Succeed.new({}))
    assert otel.META_KEY not in done.meta
