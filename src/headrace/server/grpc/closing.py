"""Closing the gRPC door without gRPC cancelling calls headrace never saw.

grpc.aio takes calls from gRPC core one at a time, on the event loop; calls that arrive
meanwhile wait in core's queue. ``server.stop()`` ends every call still in that queue with
CANCELLED before its GOAWAY tells the clients to stop sending, so under load a stop cancelled
a call or two that no handler had started, and the client could not tell whether it ran.

So the door closes in two steps. First the :class:`Gate` closes: every call a handler gets
from then on is refused with UNAVAILABLE by headrace itself (those waiting in core's queue
too, as the loop takes them in), while the calls already started run on. Then, once no call
has come in for :data:`QUIET_S` with the loop free all along (so none waits in core's queue),
or once the exit timeout is spent, gRPC stops: listening socket closed, GOAWAY, and the calls
in flight get what is left of the timeout.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["QUIET_S", "SHUTTING_DOWN", "Gate"]

QUIET_S = 0.1
"""How long no call may come in before gRPC stops. The loop takes a waiting call in within
a turn, so a tenth of a second without one, with the loop free, means none is waiting."""
_TICK_S = 0.02
_LATE_S = 0.05
"""A tick that wakes this much late means the loop was busy: calls may wait in core's queue."""
SHUTTING_DOWN = "server is shutting down; no new requests are accepted"
"""The refusal, in the core's words for an inference request that comes in while stopping."""


class Gate:
    """Open while serving; once closed, handlers refuse their calls and note when."""

    def __init__(self) -> None:
        self.closed = False
        self._last_call = 0.0

    def close(self) -> None:
        """Refuse every call from now on (the quiet period starts now)."""
        self.closed = True
        self._last_call = time.monotonic()

    def refused(self) -> None:
        """A handler refused a call: clients are still sending."""
        self._last_call = time.monotonic()

    async def quiet(self, deadline: float) -> None:
        """Return once no call has come in for :data:`QUIET_S` on a free loop, or at
        ``deadline`` (``time.monotonic()``), whichever comes first."""
        since = time.monotonic()
        while True:
            now = time.monotonic()
            since = max(since, self._last_call)
            if now >= deadline or now - since >= QUIET_S:
                return
            await asyncio.sleep(min(_TICK_S, deadline - now))
            woke = time.monotonic()
            if woke - now > _TICK_S + _LATE_S:
                since = woke  # the loop was busy: start over, calls may be waiting in core
