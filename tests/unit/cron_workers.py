"""Workers with (and without) ``cron=``, for test_cron.py.

Imported only through that module's ``cron_workers`` fixture, which gives the
import a copy of the worker registry and forgets the module afterwards, so
these workers never show up in another test's registry.
"""

from __future__ import annotations

from oban import Job, job, worker

OBAN = "cron-tests"
"""The Oban instance name the cron workers here belong to."""


@worker(queue="reports", max_attempts=3, cron="@daily", oban=OBAN)
class DailyReport:
    def process(self, job: Job) -> None: ...


# The third expression is the first with other spacing: the same schedule.
@worker(cron=["*/15 * * * *", "0 9 * * MON-FRI", "*/15  *  * * *"], meta={"v": 1}, oban=OBAN)
class Poller:
    def process(self, job: Job) -> None: ...


@job(queue="maintenance", cron="@hourly", oban=OBAN)
def cleanup(days: int = 7) -> None: ...


@worker(cron="@daily", oban="another-instance")
class ElsewhereReport:
    def process(self, job: Job) -> None: ...


@worker(queue="mailers", max_attempts=5, priority=1, tags=["email"], meta={"source": "worker"})
class Mailer:
    """No schedule of its own: Oban(cron=[...]) entries use it."""

    def process(self, job: Job) -> None: ...


@job(queue="mailers")
def send(to: str, subject: str = "hello") -> None: ...


class NotAWorker:
    def process(self, job: Job) -> None: ...


class UndecoratedSubclass(Mailer):
    """Inherits Mailer's spec but is no worker of its own."""
