"""Backpressure for SSE streams on the granian door, which has none of its own.

granian's RSGI response stream takes every chunk at once: ``send_bytes`` returns whether or not
the client reads, and what the socket cannot take waits in granian's memory. A
``generate_stream`` client that stops reading would so make the server hold the rest of the
stream (a 40 MB stream: +41 MB of server memory), past ``--max-stream-pending-responses``,
which counts only up to the hand-over. :class:`SendWindow` bounds what is handed over and not
yet acknowledged by the client's TCP stack (``TCP_INFO``'s bytes acked) to ``window_bytes``:
before each chunk the stream waits for the client to catch up, and gives up after
``--stream-send-timeout``. It finds the connection's socket among the process's own (as
:mod:`.header_watch` does) and holds a duplicate of it for the stream's life; where that is
impossible (not Linux) the stream runs unpaced, as granian alone would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time

from headrace.server.http.header_watch import Peer, own_sockets, peer_at

__all__ = ["DEFAULT_WINDOW_BYTES", "SendWindow", "StalledClient"]

_log = logging.getLogger(__name__)
DEFAULT_WINDOW_BYTES = 1 << 20
"""Bytes a stream may have handed over beyond what its client acknowledged."""
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120
"""Offset of ``tcpi_bytes_acked`` in Linux's ``struct tcp_info`` (since 4.1)."""
_TCP_INFO_LEN = _BYTES_ACKED_AT + _BYTES_ACKED.size
_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.0005, 0.01


class StalledClient(Exception):
    """The client acknowledged nothing of a full window for ``--stream-send-timeout``."""


class SendWindow:
    """One stream's window over its connection (see the module's docstring)."""

    def __init__(
        self, sock: socket.socket | None, timeout_s: float, window_bytes: int = DEFAULT_WINDOW_BYTES
    ) -> None:
        self._sock = sock
        self._timeout_s = timeout_s
        self._window = window_bytes
        self._base = self._acked() if sock is not None else 0
        self._handed = 0
        self._known_room = 0
        """Up to where ``_handed`` may grow before the acknowledgements are read again."""

    @classmethod
    def open(cls, port: int, peer: Peer, timeout_s: float) -> SendWindow:
        """The window of the door's connection (on ``port``) from ``peer``; unpaced when it
        cannot be found."""
        for inode, fd in own_sockets(port):
            try:
                dup = os.dup(fd)
            except OSError:
                continue
            sock = socket.socket(fileno=dup)
            try:
                address = sock.getpeername()
                if os.fstat(dup).st_ino == inode and peer_at(str(address[0]), address[1]) == peer:
                    return cls(sock, timeout_s)
            except OSError:
                pass
            sock.close()
        return cls(None, timeout_s)

    @property
    def paced(self) -> bool:
        return self._sock is not None

    async def room(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more fit the window; StalledClient past the timeout.

        The client's acknowledgements are read only once the room known from the last
        reading is spent (one system call per half window or so, not one per chunk)."""
        if self._sock is None:
            return
        self._handed += nbytes
        if self._handed <= self._known_room:
            return
        unacked = self._unacked()
        if unacked > self._window:
            deadline = time.monotonic() + self._timeout_s
            pause = _FIRST_PAUSE_S
            while unacked - nbytes > self._window // 2:  # this chunk is not sent yet
                if time.monotonic() > deadline:
                    raise StalledClient(
                        f"the client read nothing of {self._window} bytes for "
                        f"{self._timeout_s:g} s (--stream-send-timeout)"
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE_S)
                unacked = self._unacked()
        self._known_room = self._handed + self._window - unacked

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _unacked(self) -> int:
        return self._handed - (self._acked() - self._base)

    def _acked(self) -> int:
        assert self._sock is not None
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            return self._base + self._handed  # the connection is gone: nothing to wait for
        return _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]
