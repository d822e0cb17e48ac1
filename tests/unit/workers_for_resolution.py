"""Workers that resolve_worker() finds by importing this module (see test_worker.py).

Nothing may import this module at collection time: the tests delete it from
``sys.modules`` and from the worker registry, then resolve names inside it.
"""

from __future__ import annotations

from typing import Any

from oban import Job, job, worker

CALLS: list[str] = []
"""Anything here that runs appends to this list; resolution must run nothing."""


@worker(queue="resolved", max_attempts=4)
class Resolvable:
    def process(self, job: Job) -> None:
        CALLS.append("Resolvable.process")


class Outer:
    @worker(queue="nested")
    class Inner:
        def process(self, job: Job) -> None:
            CALLS.append("Outer.Inner.process")


@job(queue="functions")
def resolvable_function(name: str) -> None:
    CALLS.append(f"resolvable_function({name})")


def not_a_worker(*args: Any, **kwargs: Any) -> None:
    CALLS.append("not_a_worker")


class PlainClass:
    def __init__(self) -> None:
        CALLS.append("PlainClass()")

    def process(self, job: Job) -> None:
        CALLS.append("PlainClass.process")


class UndecoratedSubclass(Resolvable):
    def __init__(self) -> None:
        CALLS.append("UndecoratedSubclass()")


NOT_CALLABLE = 42
