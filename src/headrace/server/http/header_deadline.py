"""A header read timeout for the aiohttp door, which has none of its own.

aiohttp waits as long as a client takes to send a request's headers, so a client that sends
one byte a second (slowloris) holds its connection for good. The door therefore serves
aiohttp's protocol through :class:`HeaderDeadline`, a thin protocol in front of each
connection's that closes it when a request's headers take longer than
``--http-header-timeout``, as granian's HTTP/1 ``header_read_timeout`` does:

- on a new connection the clock starts at once, so a client that connects and sends nothing
  is cut off too;
- between requests on a keep-alive connection it starts at the first byte of the next one
  (idle time is aiohttp's keep-alive timeout's, not this one's);
- it stops when aiohttp starts handling a request (the door's middleware calls
  :meth:`HeaderDeadline.request_started`); from then on ``--http-body-timeout`` bounds the body.

Everything runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["HeaderDeadline"]


class HeaderDeadline(asyncio.Protocol):
    """One connection: forwards every event to aiohttp's protocol and keeps the deadline.

    ``by_protocol`` maps aiohttp's protocol to this object while the connection lives, so
    the middleware, which sees only aiohttp's request, finds its connection's deadline.
    """

    __slots__ = ("_busy", "_by_protocol", "_inner", "_loop", "_timeout_s", "_timer", "_transport")

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        timeout_s: float,
        by_protocol: MutableMapping[Any, HeaderDeadline],
    ) -> None:
        self._inner = factory()
        self._timeout_s = timeout_s
        self._by_protocol = by_protocol
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0
        """Requests of this connection that aiohttp is handling now."""

    # -- asyncio.Protocol, forwarded ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._by_protocol[self._inner] = self
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and not self._busy:
            self._arm()  # the first byte of the next request's headers
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._by_protocol.pop(self._inner, None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- the door's middleware ----------------------------------------------------------------

    def request_started(self) -> None:
        """aiohttp has a request's headers and handles it: the clock stops."""
        self._busy += 1
        self._disarm()

    def request_ended(self) -> None:
        """That request is answered; the clock starts again at the next byte."""
        self._busy -= 1

    # -- the clock ----------------------------------------------------------------------------

    def _arm(self) -> None:
        self._timer = self._loop.call_later(self._timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self._busy and self._transport is not None:
            self._transport.abort()  # at once: a slow client may not read a polite close
