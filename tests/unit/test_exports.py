"""The public surface: what `from oban import ...` promises."""

from __future__ import annotations

import inspect
from collections import Counter

import pytest

import oban

CONTRACT = ["Oban", "Job", "JobState", "worker", "job", "Snooze", "Cancel", "Record"]
"""The names DESIGN.md fixes; tests outside the repo import them."""


def test_every_exported_name_exists() -> None:
    missing = [name for name in oban.__all__ if not hasattr(oban, name)]
    assert missing == []


def test_all_has_no_duplicates() -> None:
    duplicates = [name for name, count in Counter(oban.__all__).items() if count > 1]
    assert duplicates == []


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_names_are_exported(name: str) -> None:
    assert name in oban.__all__
    assert getattr(oban, name) is not None


def test_contract_imports() -> None:
    from oban import Cancel, Job, JobState, Oban, Record, Snooze, job, worker

    assert inspect.isclass(Oban)
    assert inspect.isclass(Job)
    assert issubclass(JobState, str)
    assert callable(worker)
    assert callable(job)
    assert {Snooze.__name__, Cancel.__name__, Record.__name__} == {"Snooze", "Cancel", "Record"}


def test_errors_share_one_root() -> None:
    errors = [name for name in oban.__all__ if name.endswith("Error")]
    assert "ObanError" in errors
    for name in errors:
        assert issubclass(getattr(oban, name), oban.ObanError), name


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in oban.__all__
        if inspect.isclass(getattr(oban, name)) or inspect.isfunction(getattr(oban, name))
    ],
)
def test_public_classes_and_functions_have_docstrings(name: str) -> None:
    obj = getattr(oban, name)
    # __doc__ itself, not inspect.getdoc(): a class must not lean on its base's docstring.
    doc = obj.__doc__
    assert doc is not None, f"oban.{name} has no docstring"
    assert doc.strip(), f"oban.{name} has an empty docstring"


def test_version_is_a_string() -> None:
    assert isinstance(oban.__version__, str)
    assert oban.__version__


QUEUE_CONTROL = ["pause_queue", "resume_queue", "scale_queue", "start_queue", "stop_queue"]


@pytest.mark.parametrize("name", [*QUEUE_CONTROL, "check_queue", "check_all_queues"])
def test_queue_control_has_its_contract_names_and_async_twins(name: str) -> None:
    method = getattr(oban.Oban, name)
    twin = getattr(oban.Oban, f"{name}_async")
    assert inspect.iscoroutinefunction(twin)
    assert "local_only" in inspect.signature(method).parameters
    assert "local_only" in inspect.signature(twin).parameters


def test_is_leader_is_a_bool_property_and_queue_info_is_exported() -> None:
    assert isinstance(oban.Oban.__dict__["is_leader"], property)
    assert not oban.Oban(testing="inline").is_leader
    assert "QueueInfo" in oban.__all__


def test_telemetry_module_is_exported() -> None:
    from oban import telemetry

    assert "telemetry" in oban.__all__
    assert callable(telemetry.attach)
    assert callable(telemetry.detach)
