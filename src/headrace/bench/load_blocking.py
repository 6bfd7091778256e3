"""Blocking senders for the load generator: one thread per request in flight.

A closed-loop slot is a thread that sends, waits and sends again; an open-loop process hands
each scheduled request to an idle thread of a pool. Every request is one blocking call that
releases the GIL while it waits, so a slot costs the client no event loop, no task and no
future per request: at concurrency 1, where throughput is 1 / latency, each microsecond the
client spends shows in the result, and at high concurrency each one is CPU the server lacks on
a machine they share.

- HTTP: a keep-alive HTTP/1.1 connection per thread, each request one ``sendall`` of pre-built
  bytes; only the status line, the headers it needs and the body's length are read.
- gRPC: the raw ``ModelInfer`` method of a sync channel, sent the pre-serialized
  ``ModelInferRequest`` and handed back the response's bytes without parsing them (a failed
  call raises ``grpc.RpcError``).
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
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
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
_RECV_BYTES = 1 << 16


class BlockingCall:
    """Send one pre-built request and wait for its whole response; raise if it failed.

    Safe to call from many threads at once; ``close()`` (from any thread) ends the calls in
    progress with an error, which is how a stopping worker frees threads stuck on a server."""

    def __init__(self, send: Callable[[], None], close: Callable[[], None]) -> None:
        self.send = send
        self.close = close


def grpc_call(address: str, body: bytes, timeout_s: float) -> BlockingCall:
    """The raw ``ModelInfer`` RPC over one sync channel (shared by every thread)."""
    import grpc

    channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
    infer = channel.unary_unary(f"{GRPC_SERVICE}/ModelInfer")

    def send() -> None:
        infer(body, timeout=timeout_s)

    return BlockingCall(send, channel.close)


def grpc_stream_call(address: str, body: bytes) -> BlockingCall:
    """``ModelStreamInfer``: a stream per thread, one request in flight on each at a time.

    perf_analyzer keeps one stream per context (one per request in flight at a concurrency);
    here each thread's stream carries its requests one after another, and the response read
    back is the answer to the request just written. A response is parsed only far enough to
    see whether it carries an error message."""
    import grpc

    channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
    open_stream = channel.stream_stream(f"{GRPC_SERVICE}/ModelStreamInfer")
    local = threading.local()
    outboxes: list[queue.SimpleQueue[bytes | None]] = []
    lock = threading.Lock()

    def send() -> None:
        stream = getattr(local, "stream", None)
        if stream is None:
            outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
            with lock:
                outboxes.append(outbox)
            stream = local.stream = (outbox, open_stream(iter(outbox.get, None)))
        stream[0].put(body)
        raw = next(stream[1])
        if raw[:1] == _ERROR_MESSAGE_TAG:
            raise RuntimeError(_stream_error(raw))

    def close() -> None:
        with lock:
            for outbox in outboxes:
                outbox.put(None)
        channel.close()

    return BlockingCall(send, close)


_ERROR_MESSAGE_TAG = b"\x0a"
"""``ModelStreamInferResponse.error_message`` (field 1, length-delimited), serialized first."""


def _stream_error(raw: bytes) -> str:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelStreamInferResponse.FromString(raw)
    return response.error_message or f"stream response {raw[:100]!r}"


def http_call(address: str, message: bytes, timeout_s: float) -> BlockingCall:
    """POST the pre-built ``message`` over this thread's own keep-alive connection."""
    host, _, port = address.rpartition(":")
    local = threading.local()
    opened: list[HttpConnection] = []
    lock = threading.Lock()

    def send() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = HttpConnection(host, int(port), timeout_s)
            with lock:
                opened.append(connection)
        connection.post(message)

    def close() -> None:
        with lock:
            for connection in opened:
                connection.close()

    return BlockingCall(send, close)


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
