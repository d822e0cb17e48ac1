"""The demo's workers, in a module of their own.

A worker is stored by its module and name (``examples.demo_workers.SendWelcome``),
so a worker process can import it; one defined in the script being run would
be ``__main__.SendWelcome``, which no other process can find.
"""

from __future__ import annotations

import random
import threading
import time

import anyio
from rich.console import Console

from oban import Cancel, Job, Record, Snooze, Worker, job, worker

__all__ = ["Charge", "Report", "SendWelcome", "console", "remind", "say"]

console = Console(highlight=False)
print_lock = threading.Lock()


def say(queue: str, text: str) -> None:
    with print_lock:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [bold cyan]{queue:<7}[/] {text}")


@worker(queue="mailers", max_attempts=3)
class SendWelcome(Worker):
    """A sync worker (runs in a thread) that fails now and then."""

    def process(self, job: Job) -> object:
        user = job.args["user_id"]
        if job.args.get("flaky") and job.attempt < 3:
            say("mailers", f"[red]✗[/] welcome mail to user {user} failed (attempt {job.attempt})")
            raise ConnectionError("SMTP server said 421, try again later")
        if job.args.get("broken"):
            say("mailers", f"[red]✗[/] user {user} has no address (attempt {job.attempt})")
            raise ValueError(f"user {user} has no e-mail address")
        time.sleep(random.uniform(0.05, 0.3))  # noqa: S311 - simulated work
        say("mailers", f"[green]✓[/] welcome mail sent to user {user} (attempt {job.attempt})")
        return None

    def backoff(self, job: Job) -> int:
        return 1  # retry quickly for the demo (the default is 15 + 2**attempt s)


@worker(queue="default")
class Report(Worker):
    """An async worker that snoozes until its input is 'ready'."""

    async def process(self, job: Job) -> object:
        snoozed = int(job.meta.get("snoozed", 0))
        if snoozed < job.args["wait"]:
            say("default", f"[yellow]…[/] report {job.args['name']} not ready, snoozing 1s")
            return Snooze(1)
        await anyio.sleep(0.1)
        say("default", f"[green]✓[/] report {job.args['name']} built after {snoozed} snoozes")
        return Record({"rows": 42 * snoozed})


@worker(queue="default")
class Charge(Worker):
    """Cancels itself when the order is void."""

    def process(self, job: Job) -> object:
        if job.args.get("void"):
            say("default", f"[magenta]⊘[/] order {job.args['order']} is void, cancelling")
            return Cancel("order was voided")
        say("default", f"[green]✓[/] charged order {job.args['order']}")
        return None


@job(queue="default")
async def remind(user_id: int, text: str) -> None:
    """A function worker, scheduled for later."""
    say("default", f"[green]✓[/] reminder for user {user_id}: {text!r} (scheduled)")
