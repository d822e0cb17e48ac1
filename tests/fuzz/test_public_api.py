"""Bad input at the public API (``oban.__all__``) meets only Oban's own errors.

Whatever a caller passes, the library either accepts it or raises a subclass
of :class:`oban.ObanError` naming what is wrong: a ``TypeError`` or
``OverflowError`` escaping from deep inside (orjson, SQLite, datetime) is a
bug. And what it accepts it stores so that another reader gets it back: a
second, independent Oban on the same SQLite file, and plain ``sqlite3`` with
``json.loads`` (nothing of Oban), read back what was inserted.

Each property runs a bounded number of examples (``SETTINGS``), so the file
belongs to the fast suite.
"""

from __future__ import annotations

import json
import sqlite3
import string
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import oban
from oban import Job, Oban, ObanError, Worker, worker

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@worker(queue="fuzz")
class Fuzzed(Worker):
    """The worker every fuzzed job names; it returns at once."""

    def process(self, job: Job) -> None:
        return None


# -- strategies ---------------------------------------------------------------------


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, else ``bad`` (``one_of`` would weigh every
    branch of both alike, and ``bad`` has many)."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda n: bad if n == 0 else good)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
)
"""Values of the wrong kind for almost any option."""

plain_texts = st.text(max_size=20)
"""Unicode text as hypothesis makes it (no lone surrogates), quotes and dots included."""

texts = st.one_of(
    plain_texts,
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
    st.text(alphabet="ab \x00$.'\"\\", max_size=6),
)
"""Any text: also lone surrogates (no UTF-8 form) and NUL (PostgreSQL refuses it)."""

big_ints = st.integers(min_value=-(2**70), max_value=2**70)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(plain_texts, inner, max_size=4),
    ),
    max_leaves=12,
)
"""JSON values, big ints, NUL and quotes in strings included; tuples become lists."""

documents = st.dictionaries(plain_texts, json_values, max_size=5)
"""What ``args=`` or ``meta=`` is usually given."""

bad_documents = st.one_of(
    st.dictionaries(texts, st.sampled_from([float("nan"), float("inf"), 2**70]), min_size=1),
    st.dictionaries(st.one_of(st.integers(), st.none()), json_values, min_size=1, max_size=2),
    st.dictionaries(texts, st.builds(object), min_size=1, max_size=1),
    st.dictionaries(st.text(st.characters(categories=["Cs"]), min_size=1), json_values, min_size=1),
    junk,
)
"""What JSON cannot hold: NaN, infinities, 70-bit ints, keys that are not text (or
have no UTF-8 form), objects."""

moments = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=23, minutes=59)))),
)
delays = st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.floats(), st.timedeltas())
unique_specs = st.one_of(
    st.booleans(),
    st.fixed_dictionaries(
        {},
        optional={
            "period": st.one_of(st.floats(), big_ints, st.timedeltas(), st.none()),
            "fields": st.lists(st.sampled_from(["worker", "queue", "args", "meta"]), min_size=1),
            "keys": st.lists(plain_texts, max_size=3),
            "states": st.one_of(
                st.lists(st.sampled_from([s.value for s in oban.JobState]), min_size=1),
                st.sampled_from(["all", "incomplete", "scheduled", "successful"]),
            ),
            "timestamp": st.sampled_from(["inserted_at", "scheduled_at"]),
        },
    ),
)
replace_specs = st.dictionaries(
    st.sampled_from([s.value for s in oban.JobState]),
    st.lists(st.sampled_from(["args", "meta", "tags", "priority", "queue", "max_attempts"])),
    max_size=3,
)

out_of_range_ints = st.one_of(
    st.sampled_from([-1, 0, 10, 32_768, 2**31, 2**63, 2**64, 2**70, -(2**70)]), big_ints
)
bad_names = st.one_of(st.sampled_from(["", "  ", "\ud800", "q\x00"]), texts)
"""Queue names no engine can use or store: blank, a lone surrogate, NUL."""

OPTIONS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "queue": (st.text(min_size=1, max_size=20), mostly(bad_names, junk)),
    "priority": (st.integers(min_value=0, max_value=9), mostly(out_of_range_ints, junk)),
    "max_attempts": (st.integers(min_value=1, max_value=32_767), mostly(out_of_range_ints, junk)),
    "scheduled_at": (moments, junk),
    "schedule_in": (delays, mostly(st.integers(min_value=2**40), junk)),
    "tags": (
        st.lists(st.one_of(plain_texts, st.integers()), max_size=4),
        mostly(st.lists(bad_names, min_size=1), st.one_of(texts, junk)),
    ),
    "meta": (documents, bad_documents),
    "unique": (
        unique_specs,
        mostly(
            st.fixed_dictionaries({"keys": st.lists(bad_names, min_size=1)}),
            st.one_of(st.dictionaries(texts, junk, max_size=2), junk),
        ),
    ),
    "replace": (replace_specs, st.one_of(st.dictionaries(texts, junk, min_size=1), junk)),
}
"""Each option of ``Worker.new``: (values of its kind, edges included; values of no use)."""


@st.composite
def job_options(draw: st.DrawFn) -> dict[str, Any]:
    """A few options of ``Worker.new``, at most one of them spoilt (so most jobs are stored)."""
    names = sorted(draw(st.sets(st.sampled_from(sorted(OPTIONS)), max_size=4)))
    spoilt = draw(st.one_of(st.none(), st.sampled_from(names))) if names else None
    return {name: draw(OPTIONS[name][name == spoilt]) for name in names}


def accepted_or_oban_error(make: Callable[[], Any]) -> Any:
    """``make()``'s value, or None when it raised an ObanError; anything else fails."""
    try:
        value = make()
    except ObanError as exc:
        event(f"refused: {type(exc).__name__}")
        return None
    event("accepted")
    return value


# -- where accepted jobs go ---------------------------------------------------------


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "oban.db"
    bind = sa.create_engine(f"sqlite:///{path}")
    oban.migrate(bind)
    bind.dispose()
    return path


@pytest.fixture(scope="module")
def writer(lite_file: Path) -> Iterator[Oban]:
    instance = Oban(f"sqlite:///{lite_file}", name="fuzz-writer", testing="manual")
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def reader(lite_file: Path) -> Iterator[Oban]:
    """A second Oban with its own SQLAlchemy engine: another process's view of the file."""
    instance = Oban(f"sqlite:///{lite_file}", name="fuzz-reader", testing="manual")
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def inline() -> Iterator[Oban]:
    instance = Oban(testing="inline", name="fuzz-inline")
    yield instance
    instance.close()


def raw_row(path: Path, job_id: int) -> dict[str, Any]:
    """The row as plain ``sqlite3`` and ``json`` read it, nothing of Oban in between."""
    # closing(): a sqlite3 connection's own ``with`` ends the transaction, not the
    # connection (Python 3.13 warns of every one left open).
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM oban_jobs WHERE id = ?", (job_id,)).fetchone()
    assert row is not None, f"job {job_id} is not in the file"
    document = dict(row)
    for column in ("args", "meta", "tags", "errors", "attempted_by"):
        document[column] = json.loads(document[column])
    return document


def assert_read_back(saved: Job, lite_file: Path, reader: Oban) -> None:
    assert saved.id is not None
    found = reader.get_job(saved.id)
    assert found is not None, f"a second reader cannot find job {saved.id}"
    assert "undecodable" not in found.extra, found.extra
    for name in ("worker", "queue", "priority", "max_attempts", "args", "meta", "tags", "state"):
        assert getattr(found, name) == getattr(saved, name), name
    assert found.scheduled_at == saved.scheduled_at
    raw = raw_row(lite_file, saved.id)
    assert raw["args"] == saved.args
    assert raw["meta"] == saved.meta
    assert raw["tags"] == saved.tags
    assert (raw["queue"], raw["priority"], raw["max_attempts"]) == (
        saved.queue,
        saved.priority,
        saved.max_attempts,
    )


# -- properties ---------------------------------------------------------------------


@SETTINGS
@given(args=mostly(documents, bad_documents), options=job_options())
def test_job_options_are_accepted_and_read_back_or_refused_by_name(
    args: Any, options: dict[str, Any], writer: Oban, reader: Oban, lite_file: Path
) -> None:
    job = accepted_or_oban_error(lambda: Fuzzed.new(args, **options))
    if job is None:
        return
    saved = accepted_or_oban_error(lambda: writer.enqueue(job))
    if saved is None:
        return
    assert_read_back(saved, lite_file, reader)


@SETTINGS
@given(args=mostly(documents, bad_documents), options=job_options())
def test_inline_runs_what_it_accepts_or_refuses_by_name(
    args: Any, options: dict[str, Any], inline: Oban
) -> None:
    job = accepted_or_oban_error(lambda: Fuzzed.new(args, **options))
    if job is None:
        return
    ran = accepted_or_oban_error(lambda: inline.enqueue(job))
    if ran is not None:
        assert ran.args == json.loads(json.dumps(ran.args))


@SETTINGS
@given(
    worker_name=mostly(st.text(min_size=1), st.one_of(texts, junk)),
    state=mostly(st.sampled_from(list(oban.JobState)), st.one_of(texts, junk)),
    attempt=mostly(st.integers(min_value=0, max_value=20), st.one_of(big_ints, junk)),
)
def test_the_job_constructor_refuses_by_name(worker_name: Any, state: Any, attempt: Any) -> None:
    accepted_or_oban_error(lambda: Job(worker_name, state=state, attempt=attempt))


cron_tokens = st.sampled_from(
    ["*", "*/5", "1-5", "0", "1", "7", "59", "60", "1,2,3", "MON-FRI", "JAN", "L", "R", "*/0"]
)
cron_expressions = mostly(
    st.one_of(
        st.lists(cron_tokens, min_size=5, max_size=5).map(" ".join),
        st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot"]),
    ),
    st.one_of(
        st.lists(
            st.one_of(cron_tokens, st.from_regex(r"\A[0-9*/,\-]{1,6}\Z"), texts), max_size=7
        ).map(" ".join),
        texts,
        junk,
    ),
)
"""Five fields of the usual tokens (some out of range), aliases; or anything at all."""


@SETTINGS
@given(expression=cron_expressions, zone=mostly(st.timezone_keys(), st.one_of(texts, junk)))
def test_cron_expressions_and_zones_are_accepted_or_refused_by_name(
    expression: Any, zone: Any
) -> None:
    def build() -> Oban:
        return Oban(testing="inline", name="fuzz-cron", cron=[(expression, Fuzzed)], timezone=zone)

    instance = accepted_or_oban_error(build)
    if instance is not None:
        instance.close()


filter_values = st.one_of(
    texts,
    st.lists(st.one_of(texts, junk), max_size=3),
    st.sampled_from([s.value for s in oban.JobState]),
    junk,
)


@SETTINGS
@given(
    queue=filter_values,
    worker_ref=st.one_of(filter_values, st.just(Fuzzed)),
    state=filter_values,
    ids=st.one_of(st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=3), junk),
    limit=st.one_of(st.integers(min_value=-5, max_value=2000), junk),
    before=st.one_of(st.integers(min_value=-(2**70), max_value=2**70), junk),
    job_id=st.one_of(st.integers(min_value=-(2**70), max_value=2**70), junk),
)
def test_queries_take_any_filter_or_refuse_it_by_name(
    queue: Any,
    worker_ref: Any,
    state: Any,
    ids: Any,
    limit: Any,
    before: Any,
    job_id: Any,
    reader: Oban,
) -> None:
    listed = accepted_or_oban_error(
        lambda: reader.list_jobs(
            queue=queue, worker=worker_ref, state=state, ids=ids, limit=limit, before=before
        )
    )
    assert listed is None or isinstance(listed, list)
    accepted_or_oban_error(lambda: reader.get_job(job_id))


url_parts = st.sampled_from(
    ["sqlite", "sqlite+pysqlite", "sqlite+aiosqlite", "postgresql", "postgresql+psycopg",
     "postgresql+asyncpg", "mysql", "nosuch", "sqlite+nosuch", ""]
)  # fmt: skip
hosts = st.sampled_from(["", "127.0.0.1", "127.0.0.1:1", "[::1]", "host:port", ":", "@"])
paths = st.text(alphabet=string.ascii_letters + "/:?=&%.\x00 ", max_size=15)


@SETTINGS
@given(
    url=st.one_of(
        st.builds(lambda name: f"sqlite:///fuzz-{name}.db", paths),
        st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}", url_parts, hosts, paths),
        texts,
        junk,
    )
)
def test_database_urls_are_accepted_or_refused_by_name(url: Any) -> None:
    """Building an Oban never connects: a bad URL is refused as a ConfigError up front."""
    instance = accepted_or_oban_error(lambda: Oban(url, name="fuzz-url"))
    if instance is not None:
        instance.close()
