"""@worker, @job, the registry and resolve_worker()."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oban import (
    InstanceNotFoundError,
    Job,
    JobFunction,
    JobState,
    JobValidationError,
    UnknownWorkerError,
    Worker,
    job,
    worker,
)
from oban.unique import ReplaceSpec, UniqueSpec
from oban.worker import resolve_worker, worker_name

HELPER = "tests.unit.workers_for_resolution"

# `oban.worker` is the re-exported decorator, which shadows the submodule.
worker_module = importlib.import_module("oban.worker")


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers defined by a test stay out of the registry other tests see."""
    monkeypatch.setattr(worker_module, "_registry", dict(worker_module._registry))


@pytest.fixture
def fresh_helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The helper module is neither imported nor registered when the test starts."""
    monkeypatch.delitem(sys.modules, HELPER, raising=False)
    for name in list(worker_module._registry):
        if name.startswith(HELPER + "."):
            del worker_module._registry[name]
    yield
    sys.modules.pop(HELPER, None)


@worker(queue="mailers", max_attempts=5, priority=1, tags=["Email", "welcome"], meta={"v": 1})
class SendWelcome:
    def process(self, job: Job) -> str:
        return f"sent {job.args['user_id']}"


@worker()
class AsyncWorker(Worker):
    async def process(self, job: Job) -> int:
        return 1


# -- @worker ------------------------------------------------------------------------------


def test_worker_name_is_module_and_qualname() -> None:
    assert worker_name(SendWelcome) == "tests.unit.test_worker.SendWelcome"
    assert SendWelcome.__oban_worker__.name == "tests.unit.test_worker.SendWelcome"  # type: ignore[attr-defined]
    assert SendWelcome.new().worker == "tests.unit.test_worker.SendWelcome"  # type: ignore[attr-defined]


def test_nested_worker_name_uses_the_qualname() -> None:
    class Outer:
        @worker()
        class Inner:
            def process(self, job: Job) -> None: ...

    assert Outer.Inner.new().worker == (  # type: ignore[attr-defined]
        "tests.unit.test_worker.test_nested_worker_name_uses_the_qualname.<locals>.Outer.Inner"
    )


def test_worker_defaults_flow_to_new() -> None:
    job = SendWelcome.new({"user_id": 1})  # type: ignore[attr-defined]
    assert isinstance(job, Job)
    assert job.args == {"user_id": 1}
    assert job.queue == "mailers"
    assert job.max_attempts == 5
    assert job.priority == 1
    assert job.tags == ["email", "welcome"]
    assert job.meta == {"v": 1}
    assert job.state is JobState.AVAILABLE
    assert job.id is None


def test_new_jobs_do_not_share_the_default_meta_or_tags() -> None:
    first = SendWelcome.new()  # type: ignore[attr-defined]
    first.meta["mutated"] = True
    first.tags.append("mutated")
    second = SendWelcome.new()  # type: ignore[attr-defined]
    assert second.meta == {"v": 1}
    assert second.tags == ["email", "welcome"]


def test_bare_worker_defaults() -> None:
    job = AsyncWorker.new()
    assert (job.queue, job.max_attempts, job.priority, job.tags, job.meta, job.args) == (
        "default",
        20,
        0,
        [],
        {},
        {},
    )


def test_async_process_stays_a_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(AsyncWorker.process)
    assert AsyncWorker.new({"a": 1}).args == {"a": 1}


def test_sync_process_still_runs_directly() -> None:
    job = SendWelcome.new({"user_id": 9})  # type: ignore[attr-defined]
    assert SendWelcome().process(job) == "sent 9"


def test_worker_gains_new_and_enqueue_methods() -> None:
    for method in ("new", "enqueue", "enqueue_async"):
        assert callable(getattr(SendWelcome, method))


def test_per_job_overrides() -> None:
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    job = SendWelcome.new(  # type: ignore[attr-defined]
        {"user_id": 2},
        queue="urgent",
        max_attempts=1,
        priority=0,
        tags=["Other"],
        meta={"trace": "t"},
        scheduled_at=at,
    )
    assert job.queue == "urgent"
    assert job.max_attempts == 1
    assert job.priority == 0
    assert job.tags == ["other"]
    assert job.meta == {"trace": "t"}
    assert job.scheduled_at == at


def test_schedule_in_override() -> None:
    before = datetime.now(timezone.utc)
    job = SendWelcome.new({"user_id": 3}, schedule_in=60)  # type: ignore[attr-defined]
    after = datetime.now(timezone.utc)
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=60) <= job.scheduled_at <= after + timedelta(seconds=60)


def test_unique_and_replace_are_parsed_onto_the_job() -> None:
    job = SendWelcome.new(  # type: ignore[attr-defined]
        {}, unique={"period": 30}, replace={"scheduled": ["scheduled_at"]}
    )
    assert job.unique == UniqueSpec(period=30)
    assert job.replace == ReplaceSpec(((JobState.SCHEDULED, ("scheduled_at",)),))
    assert job.extra == {}


def test_worker_level_unique_applies_to_its_jobs() -> None:
    @worker(unique=True)
    class Unique:
        def process(self, job: Job) -> None: ...

    assert Unique.new().unique == UniqueSpec()  # type: ignore[attr-defined]


def test_unknown_option_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(JobValidationError) as info:
        SendWelcome.new({}, bogus=1, queues="x")  # type: ignore[attr-defined]
    message = str(info.value)
    assert "unknown job option 'bogus', 'queues'" in message
    assert "tests.unit.test_worker.SendWelcome" in message
    assert "valid options:" in message
    for option in ("queue", "max_attempts", "priority", "schedule_in", "tags", "meta"):
        assert option in message.split("valid options:")[1]


@pytest.mark.parametrize("args", [[1, 2], "user_id=1", 5, (("a", 1),)], ids=repr)
def test_non_dict_args(args: Any) -> None:
    with pytest.raises(JobValidationError, match="args must be a dict"):
        SendWelcome.new(args)  # type: ignore[attr-defined]


def test_per_job_validation_still_applies() -> None:
    with pytest.raises(JobValidationError, match="priority"):
        SendWelcome.new({}, priority=10)  # type: ignore[attr-defined]
    with pytest.raises(JobValidationError, match="args must be JSON-encodable"):
        SendWelcome.new({"s": {1}})  # type: ignore[attr-defined]


def test_worker_without_process_is_a_type_error() -> None:
    class NoProcess:
        def perform(self, job: Job) -> None: ...

    with pytest.raises(TypeError, match=r"process\(self, job\).*NoProcess"):
        worker()(NoProcess)


def test_worker_with_non_callable_process_is_a_type_error() -> None:
    class NotCallable:
        process = 5

    with pytest.raises(TypeError, match="process"):
        worker()(NotCallable)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 10}, "priority"),
        ({"queue": ""}, "queue"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"meta": {"s": {1}}}, "meta"),
        ({"tags": "email"}, "tags"),
        ({"meta": [("a", 1)]}, "meta"),
        ({"meta": "ab"}, "meta"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
    ],
)
def test_bad_decorator_defaults_fail_at_decoration(options: dict[str, Any], field: str) -> None:
    class Bad:
        def process(self, job: Job) -> None: ...

    with pytest.raises(JobValidationError, match=field):
        worker(**options)(Bad)
    assert worker_name(Bad) not in worker_module._registry


def test_decorated_worker_is_registered() -> None:
    assert worker_module._registry[worker_name(SendWelcome)] is SendWelcome


def test_enqueue_without_an_oban_instance_says_how_to_fix_it() -> None:
    with pytest.raises(InstanceNotFoundError, match="no Oban instance named 'oban'"):
        SendWelcome.enqueue({"user_id": 1})  # type: ignore[attr-defined]


def test_enqueue_uses_the_workers_oban_name() -> None:
    @worker(oban="reports")
    class Report:
        def process(self, job: Job) -> None: ...

    with pytest.raises(InstanceNotFoundError, match="'reports'"):
        Report.enqueue({})  # type: ignore[attr-defined]


# -- @job ---------------------------------------------------------------------------------


@job(queue="media", priority=2, tags=["Images"])
def resize(path: str, width: int, quality: int = 80) -> str:
    return f"{path}@{width}q{quality}"


@job()
async def fetch(url: str, retries: int = 3) -> str:
    return f"{url}x{retries}"


def test_job_function_is_still_callable() -> None:
    assert isinstance(resize, JobFunction)
    assert resize("a.png", 200) == "a.png@200q80"
    assert resize("a.png", width=100, quality=50) == "a.png@100q50"
    assert resize.__name__ == "resize"  # type: ignore[attr-defined]
    assert resize.__doc__ == resize.func.__doc__


def test_async_job_function_is_still_callable() -> None:
    assert asyncio.run(fetch("http://x")) == "http://xx3"


def test_job_function_name_and_defaults() -> None:
    job = resize.new("a.png", 200)
    assert job.worker == "tests.unit.test_worker.resize"
    assert job.queue == "media"
    assert job.priority == 2
    assert job.tags == ["images"]


def test_job_new_binds_arguments_by_name_with_defaults() -> None:
    assert resize.new("a.png", 200).args == {"path": "a.png", "width": 200, "quality": 80}
    assert resize.new("b.png", width=10, quality=1).args == {
        "path": "b.png",
        "width": 10,
        "quality": 1,
    }
    assert fetch.new(url="http://x").args == {"url": "http://x", "retries": 3}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), (("a.png",), {}), (("a.png", 1, 2, 3), {}), (("a.png", 1), {"colour": "red"})],
)
def test_job_new_with_wrong_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(JobValidationError, match=r"tests\.unit\.test_worker\.resize: "):
        resize.new(*args, **kwargs)


def test_job_new_with_unencodable_argument() -> None:
    with pytest.raises(JobValidationError, match="args must be JSON-encodable"):
        resize.new({1, 2}, 100)  # type: ignore[arg-type]


def test_job_options_sets_per_job_options() -> None:
    before = datetime.now(timezone.utc)
    job = resize.options(schedule_in=60).new("a.png", 200)
    after = datetime.now(timezone.utc)
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=60) <= job.scheduled_at <= after + timedelta(seconds=60)
    assert job.args == {"path": "a.png", "width": 200, "quality": 80}


def test_job_options_do_not_change_the_original() -> None:
    resize.options(queue="other", priority=9).new("a.png", 1)
    job = resize.new("a.png", 1)
    assert job.queue == "media"
    assert job.scheduled_at is None


def test_job_options_chain() -> None:
    job = resize.options(queue="other").options(priority=9).new("a.png", 1)
    assert (job.queue, job.priority) == ("other", 9)


def test_job_options_unknown_option() -> None:
    with pytest.raises(JobValidationError, match="unknown job option 'bogus'"):
        resize.options(bogus=True).new("a.png", 1)


def test_job_worker_class_runs_the_function_with_the_args() -> None:
    job = resize.new("a.png", 300, quality=10)
    assert resize.worker_class().process(job) == "a.png@300q10"  # type: ignore[attr-defined]


def test_async_job_worker_class_awaits_the_function() -> None:
    process = fetch.worker_class().process  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(process)
    assert asyncio.run(process(fetch.new("http://y", 1))) == "http://yx1"


def test_job_function_is_registered_and_resolves() -> None:
    assert resolve_worker("tests.unit.test_worker.resize") is resize.worker_class
    assert resolve_worker("tests.unit.test_worker.fetch") is fetch.worker_class


# -- resolve_worker -------------------------------------------------------------------------


def test_resolve_registry_hit() -> None:
    assert resolve_worker("tests.unit.test_worker.SendWelcome") is SendWelcome


def test_resolve_registry_hit_for_a_name_that_cannot_be_imported() -> None:
    @worker()
    class Local:
        def process(self, job: Job) -> None: ...

    assert resolve_worker(worker_name(Local)) is Local


@pytest.mark.usefixtures("fresh_helper")
def test_resolve_imports_the_module_of_a_worker() -> None:
    name = f"{HELPER}.Resolvable"
    assert HELPER not in sys.modules
    assert name not in worker_module._registry
    found = resolve_worker(name)
    assert HELPER in sys.modules
    assert found is sys.modules[HELPER].Resolvable
    assert found.__oban_worker__.queue == "resolved"
    assert worker_module._registry[name] is found
    assert resolve_worker(name) is found
    assert sys.modules[HELPER].CALLS == []


@pytest.mark.usefixtures("fresh_helper")
def test_resolve_nested_worker_by_import() -> None:
    found = resolve_worker(f"{HELPER}.Outer.Inner")
    assert found is sys.modules[HELPER].Outer.Inner
    assert found.__oban_worker__.queue == "nested"


@pytest.mark.usefixtures("fresh_helper")
def test_resolve_job_function_by_import() -> None:
    found = resolve_worker(f"{HELPER}.resolvable_function")
    assert found is sys.modules[HELPER].resolvable_function.worker_class
    assert sys.modules[HELPER].CALLS == []


def test_resolve_unknown_module() -> None:
    with pytest.raises(UnknownWorkerError, match=r"^unknown worker 'app\.jobs\.Mailer'") as info:
        resolve_worker("app.jobs.Mailer")
    assert "could not be imported" in str(info.value)
    assert "retry" in str(info.value)


def test_resolve_name_without_a_module_part() -> None:
    with pytest.raises(UnknownWorkerError, match=r"^unknown worker 'Mailer'.*no module part"):
        resolve_worker("Mailer")


@pytest.mark.usefixtures("fresh_helper")
def test_resolve_module_without_the_attribute() -> None:
    with pytest.raises(
        UnknownWorkerError,
        match=rf"^unknown worker '{HELPER}\.Missing': module '{HELPER}' has no 'Missing'",
    ):
        resolve_worker(f"{HELPER}.Missing")


def test_resolve_stdlib_module_without_the_attribute() -> None:
    with pytest.raises(UnknownWorkerError, match=r"^unknown worker 'os\.NoSuchWorker'"):
        resolve_worker("os.NoSuchWorker")


def test_resolve_something_that_is_not_a_worker() -> None:
    # Nothing is called: the helper-module cases below prove it with a call log.
    with pytest.raises(
        UnknownWorkerError, match=r"^unknown worker 'os\.path\.join': .*is not a worker"
    ):
        resolve_worker("os.path.join")
    assert "os.path.join" not in worker_module._registry


@pytest.mark.usefixtures("fresh_helper")
@pytest.mark.parametrize(
    "attr", ["not_a_worker", "PlainClass", "UndecoratedSubclass", "NOT_CALLABLE", "CALLS"]
)
def test_resolve_helper_objects_that_are_not_workers(attr: str) -> None:
    name = f"{HELPER}.{attr}"
    with pytest.raises(UnknownWorkerError, match="is not a worker; decorate it with @worker"):
        resolve_worker(name)
    assert sys.modules[HELPER].CALLS == []
    assert name not in worker_module._registry


def test_a_misspelt_decorator_option_names_itself() -> None:
    with pytest.raises(
        JobValidationError, match=r"unknown worker option 'queu'; valid options: queue"
    ):

        @worker(queu="mailers")  # type: ignore[call-arg]
        class Misspelt:
            def process(self, job: Job) -> None:
                return None
