"""The header timeout of the granian door, kept apart from its keep-alive timeout.

granian's HTTP/1 (hyper) has one timer for two things: a connection whose next request's
headers are not all in within ``header_read_timeout`` of the previous response (or of the
connect) is closed. So an idle kept-alive connection was closed at the header timeout too, and
a client that reused it at that moment saw "connection closed" (the soak's control client,
reloading every 30 s, met the 30 s timer). Triton's HTTP server keeps idle connections open,
and clients such as tritonclient's keep theirs for as long as they like. Hence two timeouts,
as nginx and Go's servers have them: hyper's timer becomes the keep-alive timeout
(``--http-keepalive-timeout``, long), and :class:`HeaderWatch` enforces the header timeout
(``--http-header-timeout``): a connection that has received bytes since its last request and
has not completed a request's headers within the timeout, or that has sent no request at all
within it, is cut (``shutdown``), as a slow-header (slowloris) client should be.

The watch needs no help from granian: every tick it finds the door's connections among the
process's own file descriptors (``/proc/net/tcp*`` gives the established sockets on the door's
port, ``/proc/self/fd`` which of them are ours), reads how many bytes each has received
(``TCP_INFO``) and compares with the requests the door has seen from that peer. It works where
those exist (Linux); elsewhere :func:`supported` is false and the door keeps hyper's single
timer at the header timeout (idle connections then close at it, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["Conn", "HeaderWatch", "judge", "own_sockets", "peer_at", "peer_of", "supported"]

_log = logging.getLogger(__name__)
_BYTES_RECEIVED = struct.Struct("=Q")
_BYTES_RECEIVED_AT = 128
"""Offset of ``tcpi_bytes_received`` in Linux's ``struct tcp_info`` (since 4.1)."""
_TCP_INFO_LEN = _BYTES_RECEIVED_AT + _BYTES_RECEIVED.size
_ESTABLISHED = "01"
_PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
_MAX_TICK_S = 1.0


def supported() -> bool:
    """Whether this system lets the watch see the door's connections (Linux's /proc and a
    ``TCP_INFO`` with the bytes received)."""
    if not hasattr(socket, "TCP_INFO") or not os.path.isdir("/proc/self/fd"):
        return False
    if not os.path.exists(_PROC_TCP[0]):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            info = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return False
    return len(info) >= _TCP_INFO_LEN


@dataclass
class Conn:
    """What the watch last saw of one connection."""

    received: int = 0
    """Bytes received when its peer's last request began or ended (or when first seen)."""
    events: int = 0
    """Requests begun plus requests ended, from its peer, then."""
    owing_since: float | None = None
    """When it began to owe the door a request's headers (None: idle after a request, or
    busy with one)."""


def judge(
    conn: Conn, received: int, events: int, in_flight: int, now: float, timeout_s: float
) -> bool:
    """Update ``conn`` with what a tick saw; whether the connection is to be cut.

    A connection with a request in flight, or whose peer began or ended one since the last
    tick, owes nothing. One that never sent a request owes its first headers from when it was
    first seen; one that did, from when bytes arrive after its last request ended (hyper's
    keep-alive timer closes it if none arrive). Either is cut once it has owed ``timeout_s``.
    """
    if in_flight or events != conn.events:
        conn.received, conn.events, conn.owing_since = received, events, None
        return False
    if conn.owing_since is None and (events == 0 or received > conn.received):
        conn.owing_since = now
    return conn.owing_since is not None and now - conn.owing_since >= timeout_s


Peer = tuple[str, int]


def peer_of(client: str) -> Peer:
    """granian's ``host:port`` (``scope.client``) as the watch keys peers."""
    host, _, port = client.rpartition(":")
    return peer_at(host, int(port) if port.isdigit() else -1)


def peer_at(host: str, port: int) -> Peer:
    """A socket's peer address as the watch keys peers (IPv4-mapped IPv6 as IPv4)."""
    return host.strip("[]").removeprefix("::ffff:"), port


@dataclass
class HeaderWatch:
    """Cuts the door's connections that owe a request's headers for longer than
    ``timeout_s``; the door tells it when each request begins and ends (on the loop)."""

    port: int
    timeout_s: float
    cut: int = 0
    """Connections cut so far."""
    _in_flight: dict[Peer, int] = field(default_factory=dict)
    _events: dict[Peer, int] = field(default_factory=dict)
    _conns: dict[int, Conn] = field(default_factory=dict)
    _absent: set[Peer] = field(default_factory=set)
    _h2: set[Peer] = field(default_factory=set)
    """Peers on HTTP/2: between requests they send pings and window updates, not headers."""
    _task: asyncio.Task[None] | None = None

    def begin(self, peer: Peer, http_version: str = "1.1") -> None:
        """A request's headers are in (``peer``: :func:`peer_of` its ``scope.client``)."""
        if http_version == "2":
            self._h2.add(peer)  # hyper's HTTP/2 keep-alive settings govern the connection
        self._in_flight[peer] = self._in_flight.get(peer, 0) + 1
        self._events[peer] = self._events.get(peer, 0) + 1

    def end(self, peer: Peer) -> None:
        """The request begun from ``peer`` has been answered (or its client went away)."""
        self._events[peer] = self._events.get(peer, 0) + 1
        left = self._in_flight.get(peer, 1) - 1
        if left > 0:
            self._in_flight[peer] = left
        else:
            self._in_flight.pop(peer, None)

    def start(self) -> None:
        """Tick on the running loop until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(_MAX_TICK_S, self.timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            try:
                # Reading /proc is blocking work: a thread, so the loop keeps serving.
                peers = await asyncio.to_thread(self.tick, loop.time())
            except Exception:  # a failed look is retried next tick; never stop the door
                _log.exception("HTTP: looking at the door's connections failed")
                continue
            self._forget(peers)

    def tick(self, now: float) -> set[Peer]:
        """Look at every connection once and cut those that owe headers for too long;
        returns the peers seen (any thread: it only reads the request counts)."""
        seen: set[int] = set()
        peers: set[Peer] = set()
        for inode, fd in own_sockets(self.port):
            try:
                dup = os.dup(fd)
            except OSError:
                continue  # closed meanwhile
            with socket.socket(fileno=dup) as sock:
                try:
                    if os.fstat(dup).st_ino != inode:
                        continue  # the number now names another file: not ours to judge
                    address = sock.getpeername()
                    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
                except OSError:
                    continue
                peer = peer_at(str(address[0]), int(address[1]))
                seen.add(inode)
                peers.add(peer)
                received = _BYTES_RECEIVED.unpack_from(info, _BYTES_RECEIVED_AT)[0]
                conn = self._conns.setdefault(inode, Conn(received=received))
                events, busy = self._events.get(peer, 0), self._in_flight.get(peer, 0)
                if peer in self._h2:
                    busy = 1
                if judge(conn, received, events, busy, now, self.timeout_s):
                    self.cut += 1
                    _log.debug(
                        "HTTP: cutting %s:%d, no request headers within %g s "
                        "(--http-header-timeout)",
                        *peer,
                        self.timeout_s,
                    )
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        for inode in self._conns.keys() - seen:
            del self._conns[inode]
        return peers

    def _forget(self, peers: set[Peer]) -> None:
        """Drop the counts of peers absent from two looks in a row (their connections are
        gone; one look could miss a connection opened meanwhile), so memory stays bounded."""
        absent = {peer for peer in self._events if peer not in peers}
        for peer in absent & self._absent:
            if peer not in self._in_flight:
                del self._events[peer]
                self._h2.discard(peer)
        self._absent = absent


def own_sockets(port: int) -> list[tuple[int, int]]:
    """(inode, fd) of this process's established TCP sockets whose local port is ``port``."""
    inodes = _established_inodes(port)
    if not inodes:
        return []
    found: list[tuple[int, int]] = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = int(target[8:-1])
            if inode in inodes:
                found.append((inode, int(name)))
    return found


def _established_inodes(port: int) -> set[int]:
    """Inodes of the established TCP sockets (v4 and v6) whose local port is ``port``."""
    wanted = f":{port:04X}"
    inodes: set[int] = set()
    for path in _PROC_TCP:
        try:
            with open(path, encoding="ascii") as table:
                next(table, None)
                for line in table:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == _ESTABLISHED and fields[1].endswith(wanted):
                        inodes.add(int(fields[9]))
        except OSError:
            continue
    return inodes
