"""One timer for the deadlines of every body read in flight.

Each request's body read is bounded by ``--http-body-timeout``. ``asyncio.wait_for`` bounds an
await by wrapping it in a task and a future of its own, and ``asyncio.timeout`` by a timer
handle of its own: both once per request, a few percent of the event loop's time under load,
for a deadline that almost never passes. :class:`ReadDeadlines` notes each read's deadline in
a table and looks at the table on one timer, every ``min(1 s, timeout / 4)`` while reads are
in flight: a read past its deadline has its task cancelled, and the await raises
``TimeoutError`` instead. A deadline is thus kept to within a quarter of the timeout (or 1 s).

Cancelling a task that someone else cancelled too (a client that went away) is told apart:
the read raises ``TimeoutError`` only when the deadline was the one cancel, by the task's
cancel count (Python 3.11+; on 3.10 each read falls back to ``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["ReadDeadlines"]

T = TypeVar("T")
_UNCANCEL = hasattr(asyncio.Task, "uncancel")


class ReadDeadlines:
    """Deadlines of ``timeout_s`` for awaits on one event loop's tasks."""

    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.every_s = min(1.0, timeout_s / 4)
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def within(self, awaitable: Awaitable[T], task: asyncio.Task[Any] | None) -> T:
        """``await awaitable``, run by ``task`` (the caller's), or ``TimeoutError`` once the
        deadline has passed."""
        if task is None or not _UNCANCEL:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + self.timeout_s
        if self._timer is None:
            self._timer = loop.call_later(self.every_s, self._sweep, loop)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() == 0:  # type: ignore[attr-defined]
                raise TimeoutError(f"not done within {self.timeout_s:g} s") from None
            raise
        finally:
            del self._deadlines[task]
            self._expired.discard(task)

    def pending(self) -> int:
        """Reads with a deadline now (for tests and diagnosis)."""
        return len(self._deadlines)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for task, deadline in self._deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._deadlines:
            self._timer = loop.call_later(self.every_s, self._sweep, loop)
