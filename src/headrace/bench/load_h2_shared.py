"""gRPC over HTTP/2 connections that several load-generator threads share, as perf_analyzer's do.

perf_analyzer's gRPC contexts go through tritonclient's C++ client, which puts up to 6
clients on one channel, one HTTP/2 connection (``TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT``):
at concurrency 16 its 16 requests in flight travel on 3 connections. A server reads a
connection's frames in order, so how requests are spread over connections is part of the load
it sees. With ``--grpc-streams-per-connection N`` (N > 1) the load generator does the same:
the threads of a worker process take turns on connections of N streams each
(:class:`SharedConnections`), each connection read by one thread that hands every stream its
frames (:class:`SharedH2Connection`). A calling thread writes its request under the
connection's lock and sleeps until its stream has the answer, the hand-over from a reader
thread to the waiting caller that perf_analyzer's contexts make too. The frames, settings and
flow control are :mod:`headrace.bench.load_h2`'s.
"""

from __future__ import annotations

import socket
import struct
import threading

from headrace.bench.load_h2 import (
    _ACK,
    _CONTINUATION,
    _DATA,
    _DEFAULT_WINDOW,
    _END_HEADERS,
    _END_STREAM,
    _GOAWAY,
    _HEADERS,
    _MAX_STREAM_ID,
    _PING,
    _RST_STREAM,
    _SETTINGS,
    _WINDOW_UPDATE,
    DecoupledAnswer,
    H2Error,
    _frame,
    _grpc_message,
    check_stream_response,
    data_content,
    decoupled_answer,
    frame_header,
    goaway_error,
    open_connection,
    read_exactly,
    request_headers,
    reset_text,
    settings_changes,
    take_message,
    window_increment,
    window_updates,
)

__all__ = ["SharedConnections", "SharedH2Connection", "SharedStreamCall", "SharedUnaryCall"]


class _Stream:
    """One stream's state, guarded by its connection's lock."""

    __slots__ = ("ended", "error_text", "headers", "id", "inbox", "pending_end", "ready", "window")

    def __init__(self, lock: threading.Lock, headers: bytes) -> None:
        self.id = 0  # given when its HEADERS go out
        self.inbox = bytearray()
        self.ended = self.pending_end = False
        self.error_text = ""
        self.window = 0
        self.headers = headers  # the HEADERS frame's block, sent with the first DATA
        self.ready = threading.Condition(lock)


class SharedH2Connection:
    """One HTTP/2 connection, any number of streams, one reader thread."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # the server's windows grew
        self.streams: dict[int, _Stream] = {}
        self.next_stream = 1
        self.send_window = _DEFAULT_WINDOW
        self.stream_window_start = _DEFAULT_WINDOW
        self.max_frame = 16384
        self.failure: BaseException | None = None
        self.buffer = bytearray()
        sock = open_connection(host, port, timeout_s)
        sock.settimeout(None)  # the reader waits as long as the connection lives
        self.sock = sock
        self.reader = threading.Thread(target=self._read_loop, name="h2-reader", daemon=True)
        self.reader.start()

    @property
    def broken(self) -> bool:
        return self.failure is not None

    def open(self, block: bytes) -> _Stream:
        """A new stream whose HEADERS (``block``) go out with its first message.

        Its id is given then, under the lock that sends them: HTTP/2 wants a client's new
        streams to appear in increasing id order, which threads taking ids first and sending
        later would break (a lower id sent after a higher one is a closed stream)."""
        with self.lock:
            self._check()
            return _Stream(self.lock, block)

    def send(self, state: _Stream, message: bytes, end: bool) -> None:
        """One gRPC message on the stream within the frame size and both windows."""
        body = b"\x00" + struct.pack(">I", len(message)) + message
        with self.lock:
            self._check()
            out = []
            if state.headers:
                if self.next_stream > _MAX_STREAM_ID:
                    raise H2Error("the connection has used every stream id")
                state.id = self.next_stream
                self.next_stream += 2
                state.window = self.stream_window_start
                self.streams[state.id] = state
                out.append(_frame(_HEADERS, _END_HEADERS, state.id, state.headers))
                state.headers = b""
            sent = 0
            while sent < len(body):
                self._check()
                if state.ended:
                    raise H2Error(f"the server ended the stream: {state.error_text}")
                room = min(self.max_frame, self.send_window, state.window)
                if room <= 0:
                    if out:
                        self.sock.sendall(b"".join(out))
                        out = []
                    if not self.room.wait(self.timeout_s):
                        raise H2Error(f"no flow-control window within {self.timeout_s:g} s")
                    continue
                chunk = body[sent : sent + room]
                sent += len(chunk)
                self.send_window -= len(chunk)
                state.window -= len(chunk)
                last = end and sent == len(body)
                out.append(_frame(_DATA, _END_STREAM if last else 0, state.id, chunk))
            self.sock.sendall(b"".join(out))

    def next_message(self, state: _Stream) -> bytes:
        """The stream's next gRPC message (a ``ModelStreamInfer`` response)."""
        with self.lock:
            while True:
                message = take_message(state.inbox)
                if message is not None:
                    return message
                if state.ended:
                    raise H2Error(f"the server ended the stream: {state.error_text or 'no reason'}")
                self._wait(state)

    def finish(self, state: _Stream) -> tuple[bytes, str]:
        """Wait for a unary stream to end; its DATA and its trailers' message, and forget it."""
        with self.lock:
            try:
                while not state.ended:
                    self._wait(state)
                return bytes(state.inbox), state.error_text
            finally:
                self.streams.pop(state.id, None)

    def forget(self, state: _Stream) -> None:
        with self.lock:
            self.streams.pop(state.id, None)

    def close(self) -> None:
        """End the connection; calls waiting on it fail."""
        with self.lock:
            if self.failure is None:
                self.failure = H2Error("the connection was closed")
            self._wake_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _wait(self, state: _Stream) -> None:
        self._check()
        if not state.ready.wait(self.timeout_s):
            self._check()
            raise H2Error(f"no answer within {self.timeout_s:g} s")

    def _check(self) -> None:
        if self.failure is not None:
            raise H2Error(f"{self.host}:{self.port}: {self.failure}")

    def _wake_all(self) -> None:
        for state in self.streams.values():
            state.ready.notify_all()
        self.room.notify_all()

    def _read_loop(self) -> None:
        try:
            while True:
                length, kind, flags, target = frame_header(self._exactly(9))
                payload = self._exactly(length)
                with self.lock:
                    self._dispatch(kind, flags, target, payload)
        except BaseException as exc:  # every waiter must hear of it
            with self.lock:
                if self.failure is None:
                    self.failure = exc
                self._wake_all()

    def _dispatch(self, kind: int, flags: int, target: int, payload: bytes) -> None:
        """One frame, under the lock (see :meth:`GrpcH2Connection._read_frame`)."""
        state = self.streams.get(target)
        if kind == _DATA:
            if payload:
                self.sock.sendall(window_updates(target, len(payload), flags))
            if state is not None:
                state.inbox += data_content(payload, flags)
                state.ended |= bool(flags & _END_STREAM)
                state.ready.notify()
        elif kind in (_HEADERS, _CONTINUATION) and state is not None:
            if kind == _HEADERS:
                state.pending_end = bool(flags & _END_STREAM)
            if state.pending_end:
                state.error_text += _grpc_message(payload)
            if state.pending_end and flags & _END_HEADERS:
                state.ended = True
                state.ready.notify()
        elif kind == _SETTINGS and not flags & _ACK:
            self._settings(payload)
            self.sock.sendall(_frame(_SETTINGS, _ACK, 0))
            self.room.notify_all()
        elif kind == _PING and not flags & _ACK:
            self.sock.sendall(_frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            if target == 0:
                self.send_window += window_increment(payload)
            elif state is not None:
                state.window += window_increment(payload)
            self.room.notify_all()
        elif kind == _RST_STREAM and state is not None:
            state.error_text = reset_text(payload)
            state.ended = True
            state.ready.notify()
        elif kind == _GOAWAY:
            raise goaway_error(payload)

    def _settings(self, payload: bytes) -> None:
        max_frame, initial_window = settings_changes(payload)
        if max_frame is not None:
            self.max_frame = max_frame
        if initial_window is not None:
            for state in self.streams.values():
                state.window += initial_window - self.stream_window_start
            self.stream_window_start = initial_window

    def _exactly(self, size: int) -> bytes:
        return read_exactly(self.sock, self.buffer, size, f"{self.host}:{self.port}")


class SharedConnections:
    """A worker process's connections: thread k of the process uses connection k // N."""

    def __init__(self, host: str, port: int, per_connection: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.per_connection = per_connection
        self.lock = threading.Lock()
        self.connections: dict[int, SharedH2Connection] = {}
        self.threads = 0
        self.closed = False

    def seat(self) -> int:
        """The connection index of the next thread to call."""
        with self.lock:
            index = self.threads // self.per_connection
            self.threads += 1
            return index

    def get(self, index: int) -> SharedH2Connection:
        """Connection ``index``, opened (or opened again after it broke) when needed."""
        with self.lock:
            if self.closed:
                raise H2Error("the load generator is stopping")
            connection = self.connections.get(index)
            if connection is None or connection.broken:
                connection = SharedH2Connection(self.host, self.port, self.timeout_s)
                self.connections[index] = connection
            return connection

    def close(self) -> None:
        with self.lock:
            self.closed = True
            connections = list(self.connections.values())
        for connection in connections:
            connection.close()


class SharedUnaryCall:
    """One thread's unary calls (``ModelInfer``), each a new stream on its shared connection."""

    def __init__(self, pool: SharedConnections, path: str) -> None:
        self.pool = pool
        self.index = pool.seat()
        self.block = request_headers(path, f"{pool.host}:{pool.port}")
        self.connection: SharedH2Connection | None = None

    def call(self, message: bytes) -> None:
        connection = self.connection
        if connection is None or connection.broken:
            connection = self.connection = self.pool.get(self.index)
        stream = connection.open(self.block)
        try:
            connection.send(stream, message, end=True)
        except BaseException:
            connection.forget(stream)
            raise
        data, error_text = connection.finish(stream)
        if len(data) < 5:
            raise H2Error(f"gRPC call failed: {error_text or 'trailers without a message'}")

    def close(self) -> None:
        """Nothing of its own: the pool, closed by whoever made it, holds the connections."""


class SharedStreamCall:
    """One thread's ``ModelStreamInfer`` stream on its shared connection: each call writes one
    request and reads the next response, or a decoupled model's responses up to the final one
    (:func:`~headrace.bench.load_h2.decoupled_answer`)."""

    def __init__(self, pool: SharedConnections, path: str, decoupled: bool = False) -> None:
        self.pool = pool
        self.index = pool.seat()
        self.block = request_headers(path, f"{pool.host}:{pool.port}")
        self.connection: SharedH2Connection | None = None
        self.stream: _Stream | None = None
        self.decoupled = decoupled

    def call(self, message: bytes) -> DecoupledAnswer | None:
        try:
            if self.connection is None or self.stream is None or self.connection.broken:
                self.connection = self.pool.get(self.index)
                self.stream = self.connection.open(self.block)
            connection, stream = self.connection, self.stream
            connection.send(stream, message, end=False)
            if self.decoupled:
                return decoupled_answer(lambda: connection.next_message(stream))
            response = connection.next_message(stream)
        except BaseException:
            self._drop()
            raise
        check_stream_response(response)
        return None

    def _drop(self) -> None:
        connection, self.connection = self.connection, None
        stream, self.stream = self.stream, None
        if connection is not None and stream is not None:
            connection.forget(stream)

    def close(self) -> None:
        """Nothing of its own: the pool, closed by whoever made it, holds the connections."""
