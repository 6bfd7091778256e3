"""Blocking senders for the load generator: one thread per request in flight.

A closed-loop slot is a thread that sends, waits and sends again; an open-loop process hands
each scheduled request to an idle thread of a pool. Every request is one blocking call that
releases the GIL while it waits, so a slot costs the client no event loop, no task and no
future per request: at concurrency 1, where throughput is 1 / latency, each microsecond the
client spends shows in the result, and at high concurrency each one is CPU the server lacks on
a machine they share.

- HTTP: a keep-alive HTTP/1.1 connection per thread, each request one ``sendall`` of pre-built
  bytes; only the status line, the headers it needs and the body's length are read.
- unary gRPC: the pre-serialized ``ModelInferRequest`` over HTTP/2 (pre-built frames), the
  response not parsed: a connection per thread (:mod:`headrace.bench.load_h2`), or, as
  perf_analyzer's contexts do, up to N threads sharing each connection, read by a thread of
  its own (:mod:`headrace.bench.load_h2_shared`);
- gRPC streaming: a ``ModelStreamInfer`` stream per thread, on connections the same way; for
  a decoupled model each call reads its request's responses up to the final one and returns
  when the first arrived and how many there were.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = [
    "BlockingCall",
    "HttpConnection",
    "describe",
    "grpc_call",
    "grpc_stream_call",
    "http_call",
]

GRPC_SERVICE = "/inference.GRPCInferenceService"
_RECV_BYTES = 1 << 16


class BlockingCall:
    """Send one pre-built request and wait for its whole response; raise if it failed.

    ``send`` returns None, or for a decoupled model's stream a
    :data:`~headrace.bench.load_h2.DecoupledAnswer`.

    Safe to call from many threads at once, each on its own connection (or stream), opened
    at its first call; ``close()`` (from any thread) closes them all, which ends the calls in
    progress with an error: how a stopping worker frees threads stuck on a server."""

    def __init__(
        self,
        connect: Callable[[], Any],
        send: Callable[[Any], Any],
        after_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._connect, self._send, self._after_close = connect, send, after_close
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def send(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            with self._lock:
                self._opened.append(connection)
        return self._send(connection)

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
        self._after_close()


def http_call(address: str, message: bytes, timeout_s: float) -> BlockingCall:
    """POST the pre-built ``message`` (request line, headers and body) over keep-alive
    HTTP/1.1."""
    host, _, port = address.rpartition(":")
    return BlockingCall(
        lambda: HttpConnection(host, int(port), timeout_s),
        lambda connection: connection.post(message),
    )


def grpc_call(address: str, body: bytes, timeout_s: float, per_connection: int = 1) -> BlockingCall:
    """``ModelInfer`` with the serialized request ``body`` over HTTP/2
    (:mod:`headrace.bench.load_h2`); ``per_connection`` > 1: that many threads share each
    connection (:mod:`headrace.bench.load_h2_shared`)."""
    return _grpc(address, "ModelInfer", body, timeout_s, per_connection)


def grpc_stream_call(
    address: str, body: bytes, timeout_s: float, per_connection: int = 1, decoupled: bool = False
) -> BlockingCall:
    """``ModelStreamInfer``, one request in flight on each thread's stream at a time.

    perf_analyzer keeps one stream per context (one per request in flight at a concurrency);
    here each thread's stream carries its requests one after another, so the response read
    back is the answer to the request just written (``decoupled``: the responses up to the
    final one). ``per_connection`` > 1: that many threads' streams share each connection, as
    perf_analyzer's contexts do."""
    return _grpc(address, "ModelStreamInfer", body, timeout_s, per_connection, decoupled)


def _grpc(
    address: str,
    method: str,
    body: bytes,
    timeout_s: float,
    per_connection: int,
    decoupled: bool = False,
) -> BlockingCall:
    from headrace.bench import load_h2, load_h2_shared

    host, _, port = address.rpartition(":")
    path = f"{GRPC_SERVICE}/{method}"
    streaming = method == "ModelStreamInfer"
    connect: Callable[[], Any]
    if per_connection > 1:
        pool = load_h2_shared.SharedConnections(host, int(port), per_connection, timeout_s)
        if streaming:
            connect = partial(load_h2_shared.SharedStreamCall, pool, path, decoupled)
        else:
            connect = partial(load_h2_shared.SharedUnaryCall, pool, path)
        return BlockingCall(connect, lambda call: call.call(body), after_close=pool.close)
    if streaming:
        connect = partial(load_h2.GrpcH2Stream, host, int(port), path, timeout_s, decoupled)
    else:
        connect = partial(load_h2.GrpcH2Connection, host, int(port), path, timeout_s)
    return BlockingCall(connect, lambda call: call.call(body))


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, reconnected after the server closes it."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def post(self, message: bytes) -> None:
        """Send ``message``; raise ``RuntimeError`` naming the status unless it is 200."""
        sock = self.sock or self._connect()
        try:
            sock.sendall(message)
            status, keep_alive, body = self._read_response(sock)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {bytes(body[:300])!r}")

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buffer.clear()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def _read_response(self, sock: socket.socket) -> tuple[int, bool, bytes]:
        """Status, whether the connection stays open, and the body (kept only for errors)."""
        head = self._until(sock, b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        keep_alive = fields.get("connection") != "close"
        if "content-length" in fields:
            return status, keep_alive, self._exactly(sock, int(fields["content-length"]))
        if fields.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self._until(sock, b"\r\n").split(b";")[0], 16)
                parts.append(self._exactly(sock, size + 2)[:-2])
                if size == 0:
                    return status, keep_alive, b"".join(parts)
        raise RuntimeError(f"HTTP {status} response without a length: {head[:300]!r}")

    def _until(self, sock: socket.socket, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill(sock)
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    def _exactly(self, sock: socket.socket, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill(sock)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(_RECV_BYTES)
        if not chunk:
            raise ConnectionError(f"{self.host}:{self.port} closed the connection")
        self.buffer += chunk


def describe(error: BaseException) -> str:
    """``Type: message``, with a gRPC error's code and details rather than its long repr."""
    code: Any = getattr(error, "code", None)
    details: Any = getattr(error, "details", None)
    if callable(code) and callable(details):
        return f"{type(error).__name__}: {code()}: {details()}"
    return f"{type(error).__name__}: {error}"
