"""The threads a queue runs its ``def`` jobs in, handed work without a wake-up per job.

``anyio.to_thread.run_sync`` once per job gives each call to one idle worker
thread (waking it) and wakes the event loop once per result; with short jobs
those two hand-offs, and the fight for the GIL they start, cost more than the
jobs (py-spy of 20 no-op ``def`` jobs at a time: a quarter of the loop
thread's time in the queue put that wakes a worker). Here a queue's calls go
into one queue that its threads serve: a thread that finishes a job takes
the next waiting one without being woken, and the results of every job that
finished meanwhile go back to the loop with one wake-up.

Each thread is an anyio worker thread, held by one task of the pool for the
pool's life, so code in a job can still use ``anyio.from_thread``; each call
runs in a copy of the submitting task's context (contextvars: the job's
tracing span, for one). A call whose caller is cancelled (a timeout, a stop)
is abandoned, as with ``abandon_on_cancel=True``: its thread runs it to the
end and what it returns is dropped. The pool starts a thread whenever more
calls are in flight than it has threads, so it never holds more threads than
the most calls it had at once (the queue's limit, plus abandoned ones).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from .loops import Loop

__all__ = ["ThreadPool"]

T = TypeVar("T")


class _Call(Generic[T]):
    """One function to run in a thread, and what became of it."""

    __slots__ = ("context", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()
        self.done = anyio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """In a pool thread."""
        try:
            self.value = self.context.run(self.fn)
        except BaseException as exc:  # handed to the caller, as to_thread would raise it
            self.error = exc


class ThreadPool:
    """Threads serving one queue's ``def`` jobs; see the module docstring.

    Args:
        tasks: the task group holding the threads' tasks and the loop that
            hands results back; it must outlive every call (see :meth:`close`).
    """

    def __init__(self, tasks: TaskGroup, name: str) -> None:
        self._tasks = tasks
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        """Threads started and not told to end."""
        self._in_flight = 0
        """Calls submitted whose function has not returned yet (abandoned ones included)."""
        self._finished: list[_Call[Any]] = []
        self._wake_sent = False
        self._receive, self._send = socket.socketpair()
        self._receive.setblocking(False)
        self._send.setblocking(False)
        self._limiter = anyio.CapacityLimiter(math.inf)  # the queue's slots are the limit
        self._delivery = Loop(f"handing back the results of {name}", self._deliver, interval=0)
        tasks.start_soon(self._delivery.run)

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the pool's threads. Cancelling the caller abandons the
        call: the thread runs it to the end, and its result is dropped."""
        call = _Call(fn)
        with self._lock:
            self._in_flight += 1
            start = self._in_flight > self._threads
            if start:
                self._threads += 1
        if start:
            self._tasks.start_soon(self._hold_thread)
        self._calls.put(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]  # set by run() when no error

    def close(self) -> None:
        """Tell every thread to end once its current call (if any) returns.

        No call may be submitted after this. The caller then cancels the
        task group: a thread still in a call (abandoned by its caller) goes
        on in the background, and ends after it.
        """
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._calls.put(None)
        self._delivery.stop()
        self._wake()

    def dispose(self) -> None:
        """Close the wake-up sockets, once the task group has ended."""
        self._receive.close()
        self._send.close()

    async def _hold_thread(self) -> None:
        await anyio.to_thread.run_sync(self._serve, limiter=self._limiter, abandon_on_cancel=True)

    def _serve(self) -> None:
        """A pool thread: run calls until told to end."""
        while True:
            call = self._calls.get()
            if call is None:
                return
            call.run()
            with self._lock:
                self._in_flight -= 1
                self._finished.append(call)
                wake = not self._wake_sent
                self._wake_sent = True
            if wake:
                self._wake()

    def _wake(self) -> None:
        # Full (the loop is far behind: it will read it anyway) or closed (it is gone).
        with contextlib.suppress(OSError):
            self._send.send(b"\0")

    async def _deliver(self) -> None:
        """On the loop: wait for a wake-up, then finish every call that returned."""
        await anyio.wait_readable(self._receive)
        with contextlib.suppress(BlockingIOError):
            self._receive.recv(4096)
        with self._lock:
            finished, self._finished = self._finished, []
            self._wake_sent = False
        for call in finished:
            call.done.set()
