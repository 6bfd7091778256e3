"""A bound on the responses of one stream that wait for its client to read them.

Why: a client that stops reading a stream (a gRPC ``ModelStreamInfer`` call, an HTTP
``generate_stream``) while a decoupled model keeps sending would otherwise make the server hold
every response until memory runs out. A :class:`StreamBacklog` counts a response from the
moment it is sent until the door has handed it to its transport (whose own buffers are bounded
by HTTP/2 flow control or the socket), and keeps that count near ``limit``:

- a sender on another thread (a decoupled model answering) waits in :meth:`reserve` until the
  client has read enough to make room, at most ``timeout_s`` (then its request fails);
- the door waits in :meth:`room` before it reads a stream's next request, so a client that
  sends faster than it reads is slowed, not buffered;
- a sender on the loop thread (a scheduler answering, an error) never waits (the loop must not
  block): it is counted with :meth:`add`, so the count may pass ``limit`` by at most one
  response per request in flight.

The door that reads responses releases each with :meth:`release` on the loop thread. Whoever
waited for room goes on once the count is down to half the limit, not at the first release,
so a fast model and a slower client trade places once per half a backlog, not per response.

A thread that hands many requests' responses over (a worker process's reader) must not wait
for one slow client: inside :func:`headrace.types.sending_without_waiting` its sends are counted at once and a
full backlog calls its ``on_full`` instead, which pauses that one request at its source and
resumes it through :meth:`StreamBacklog.when_room`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_STREAM_PENDING",
    "DEFAULT_STREAM_SEND_TIMEOUT_S",
    "StreamBacklog",
]

DEFAULT_MAX_STREAM_PENDING = 1024
"""Responses one stream may hold for a client that is not reading (``--max-stream-pending-
responses``)."""
DEFAULT_STREAM_SEND_TIMEOUT_S = 60.0
"""How long a decoupled model's send waits for room before its request fails
(``--stream-send-timeout``)."""


class StreamBacklog:
    """The count of one stream's responses that wait for its client, and the waits it causes.

    Thread-safe: :meth:`reserve`, :meth:`add` and :meth:`wake` may be called from any thread;
    :meth:`room`, :meth:`release` and :meth:`close` run on the loop thread.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_cond",
        "_low",
        "_on_room",
        "_sleepers",
        "_waiters",
        "limit",
        "overruns",
        "peak",
        "pending",
        "timeout_s",
    )

    def __init__(
        self,
        limit: int = DEFAULT_MAX_STREAM_PENDING,
        timeout_s: float = DEFAULT_STREAM_SEND_TIMEOUT_S,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a stream backlog's limit must be at least 1, got {limit}")
        if not timeout_s > 0:
            raise ValueError(f"a stream backlog's timeout must be positive, got {timeout_s}")
        self.limit = limit
        self.timeout_s = timeout_s
        self._low = limit // 2
        """Where waiters go on: a full backlog lets them go once it is down to this."""
        self.pending = 0
        """Responses sent and not yet handed to the client's transport."""
        self.peak = 0
        """The most that were ever pending at once (for tests and diagnosis)."""
        self.overruns = 0
        """Requests failed because a send waited past ``timeout_s`` (for tests and diagnosis)."""
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_room: list[Callable[[], None]] = []
        self._sleepers = 0
        """Threads waiting in :meth:`reserve` (a release with nobody waiting wakes nobody)."""

    @property
    def full(self) -> bool:
        return self.pending >= self.limit

    @property
    def overrun_message(self) -> str:
        """Why a send that waited past ``timeout_s`` failed its request, in flags."""
        return (
            f"the client did not read this stream's responses: {self.limit} were pending and "
            f"none was read for {self.timeout_s:g} s (--max-stream-pending-responses, "
            "--stream-send-timeout); the request is failed"
        )

    def add(self) -> None:
        """Count one response without waiting (loop-thread senders, the door's own)."""
        with self._cond:
            self.pending += 1
            self.peak = max(self.peak, self.pending)

    def reserve(self, gone: Callable[[], bool]) -> bool:
        """Count one response once there is room; False when none came within ``timeout_s``.

        Blocks the calling thread, so never call it on the loop's. Returns True at once when
        the backlog is closed or ``gone()`` (nobody reads the response anyway); :meth:`wake`
        makes a waiter check ``gone`` again.
        """
        with self._cond:
            if self.pending >= self.limit:
                deadline = time.monotonic() + self.timeout_s
                while self.pending > self._low and not self._closed and not gone():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._sleepers += 1
                    try:
                        self._cond.wait(left)
                    finally:
                        self._sleepers -= 1
            self.pending += 1
            self.peak = max(self.peak, self.pending)
            return True

    def wake(self) -> None:
        """Make waiting senders check whether their receiver has gone."""
        with self._cond:
            self._cond.notify_all()

    async def room(self) -> None:
        """Return at once while fewer than ``limit`` responses are pending; else once they
        are down to half of it (or the backlog is closed)."""
        if self.pending < self.limit:
            return
        while self.pending > self._low and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at once while fewer than ``limit`` are pending, else once they
        are down to half of it or the backlog closes; from any thread, and it may run on any."""
        with self._cond:
            if self.pending >= self.limit and not self._closed:
                self._on_room.append(callback)
                return
        callback()

    def release(self, count: int = 1) -> None:
        """``count`` responses have gone to the client's transport (or were dropped)."""
        with self._cond:
            self.pending -= count
            if self.pending > self._low:
                return
            if not (self._sleepers or self._on_room or self._waiters):
                return  # the common case: a response per release, nobody held back
            self._cond.notify_all()
        self._wake()

    def close(self) -> None:
        """The stream is over: nobody waits for room any more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        with self._cond:
            callbacks, self._on_room = self._on_room, []
        for callback in callbacks:
            callback()
