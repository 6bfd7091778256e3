"""A minimal HTTP/2 client for unary gRPC: pre-built frames over one blocking socket.

The load generator's unary gRPC requests go through this rather than the ``grpc`` package,
whose per-call cost in Python (about 100 µs on a shared 2-core machine) showed in full at
concurrency 1, where throughput is 1 / latency. Each connection carries one request at a
time (one connection per thread), so the client keeps no stream table: it writes a HEADERS
frame whose HPACK block was encoded once (static-table names, literal values, never
indexed) and the request's DATA frames, then reads frames until its answer is in.

What it does of HTTP/2 (RFC 9113) and gRPC's mapping onto it:

- the connection preface and SETTINGS (no push; the largest receive windows, so the server
  never waits on the client; ``SETTINGS_HEADER_TABLE_SIZE`` 0, so nothing the server sends
  refers to an HPACK dynamic table); SETTINGS and PING are acknowledged;
- every DATA frame received is acknowledged at once with WINDOW_UPDATE frames for its stream
  (while open) and the connection, as gRPC's C-core clients (tritonclient, perf_analyzer) do:
  seen through a frame-counting proxy, perf_analyzer sends two WINDOW_UPDATEs per response,
  most often in a TCP segment of their own. The server reads and handles them like any frame,
  so a generator that left them out would measure a server doing less work per request than
  under a real client (the gRPC streaming points of ``benchmarks/bench_load_vs_perf_analyzer.py``,
  see ``benchmarks/README.md``);
- its own sends respect the server's flow-control windows and maximum frame size;
- a unary call succeeds when a gRPC message arrived and the stream ended; one that fails
  ends with trailers alone (no message). On a ``ModelStreamInfer`` stream
  (:class:`GrpcH2Stream`) each call writes one message and reads the next one back, which
  failed if it carries an error message. RST_STREAM and GOAWAY fail a call too. Responses
  are not decoded further (as perf_analyzer does not), except a decoupled model's
  (:func:`decoupled_answer`): its request asks for the empty final response, and the call
  reads responses until the one flagged ``triton_final_response``;
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

__all__ = [
    "DecoupledAnswer",
    "GrpcH2Connection",
    "GrpcH2Stream",
    "H2Error",
    "check_stream_response",
    "data_content",
    "decoupled_answer",
    "frame_header",
    "goaway_error",
    "open_connection",
    "read_exactly",
    "reset_text",
    "settings_changes",
    "settings_entries",
    "take_message",
    "window_increment",
    "window_updates",
]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
_MAX_STREAM_ID = 2**31 - 1
_RECV_BYTES = 1 << 16
_SETTINGS_MAX_FRAME_SIZE, _SETTINGS_INITIAL_WINDOW_SIZE = 5, 4


class H2Error(ConnectionError):
    """The server refused or reset the call, or broke the protocol; the message says how."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK's prefix-coded integer (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(index: int, value: str) -> bytes:
    """A header field without indexing, its name from the static table, its value raw."""
    data = value.encode()
    return _integer(index, 4) + _integer(len(data), 7) + data


def _literal_name(name: str, value: str) -> bytes:
    """A header field without indexing, name and value both raw."""
    key, data = name.encode(), value.encode()
    return b"\x00" + _integer(len(key), 7) + key + _integer(len(data), 7) + data


def request_headers(path: str, authority: str) -> bytes:
    """The HPACK block of every request: POST, http, path, authority, gRPC content type."""
    method_post, scheme_http, name_path, name_authority, name_content_type = 3, 6, 4, 1, 31
    return (
        bytes((0x80 | method_post, 0x80 | scheme_http))
        + _literal(name_path, path)
        + _literal(name_authority, authority)
        + _literal(name_content_type, "application/grpc")
        + _literal_name("te", "trailers")
    )


def window_updates(stream: int, size: int, flags: int) -> bytes:
    """The WINDOW_UPDATE frames that give back ``size`` bytes of a DATA frame just received:
    its stream's (unless the frame ended the stream) and the connection's."""
    increment = struct.pack(">I", size)
    update = _frame(_WINDOW_UPDATE, 0, 0, increment)
    if flags & _END_STREAM:
        return update
    return _frame(_WINDOW_UPDATE, 0, stream, increment) + update


def frame_header(header: bytes) -> tuple[int, int, int, int]:
    """A frame's 9-byte header: payload length, type, flags and stream id."""
    length = int.from_bytes(header[:3], "big")
    return length, header[3], header[4], int.from_bytes(header[5:9], "big") & _MAX_STREAM_ID


def data_content(payload: bytes, flags: int) -> bytes:
    """A DATA frame's content, its padding (if any) removed."""
    return payload[1 : len(payload) - payload[0]] if flags & _PADDED else payload


def window_increment(payload: bytes) -> int:
    """A WINDOW_UPDATE frame's increment."""
    return int.from_bytes(payload[:4], "big") & _MAX_WINDOW


def settings_changes(payload: bytes) -> tuple[int | None, int | None]:
    """What a SETTINGS frame changes for a client: the maximum frame size and the initial
    stream window (None where it leaves them)."""
    max_frame = initial_window = None
    for key, value in settings_entries(payload):
        if key == _SETTINGS_MAX_FRAME_SIZE:
            max_frame = value
        elif key == _SETTINGS_INITIAL_WINDOW_SIZE:
            initial_window = value
    return max_frame, initial_window


def reset_text(payload: bytes) -> str:
    """Why a RST_STREAM frame ended a stream."""
    return f"the server reset the stream (error code {payload[:4].hex()})"


def goaway_error(payload: bytes) -> H2Error:
    """The error a GOAWAY frame makes of every call on the connection."""
    return H2Error(f"the server closed the connection (GOAWAY {payload[4:8].hex()})")


def take_message(inbox: bytearray) -> bytes | None:
    """The first whole gRPC message in ``inbox`` (length-prefixed), removed; None if none yet."""
    if len(inbox) < 5:
        return None
    size = int.from_bytes(inbox[1:5], "big")
    if len(inbox) < 5 + size:
        return None
    message = bytes(inbox[5 : 5 + size])
    del inbox[: 5 + size]
    return message


def check_stream_response(response: bytes) -> None:
    """Raise if a ``ModelStreamInferResponse`` carries an error message."""
    if response[:1] == _ERROR_MESSAGE_TAG:
        raise H2Error(f"stream response with an error: {_stream_error(response)}")


DecoupledAnswer = tuple[int, int]
"""A decoupled request's answer: when its last response with outputs arrived
(``time.monotonic_ns``; the final response's arrival when none had outputs), and how many
responses carried outputs (the empty final response not counted)."""


def decoupled_answer(next_message: Callable[[], bytes]) -> DecoupledAnswer:
    """Read one decoupled request's responses off its stream, up to the final one.

    The request asked for ``triton_enable_empty_final_response``, so its last response says
    ``triton_final_response``. Latency is timed to the last response that carries outputs, as
    perf_analyzer times a decoupled request (to its last response, or the one before an empty
    final response). A request answered by nothing but the empty final response is timed to
    it (perf_analyzer leaves such a request out). An error response fails the request (the
    caller then drops the stream, so that nothing of this request is read as the next one's)."""
    from tritonclient.grpc import service_pb2

    last_ns = 0
    responses = 0
    while True:
        message = next_message()
        arrived_ns = time.monotonic_ns()
        response = service_pb2.ModelStreamInferResponse.FromString(message)
        if response.error_message:
            raise H2Error(f"the server answered with an error: {response.error_message}")
        answer = response.infer_response
        if answer.outputs or answer.raw_output_contents:
            responses += 1
            last_ns = arrived_ns
        final = answer.parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            return last_ns or arrived_ns, responses


def settings_entries(payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS frame's (identifier, value) pairs."""
    return [struct.unpack_from(">HI", payload, at) for at in range(0, len(payload) - 5, 6)]


def read_exactly(sock: socket.socket, buffer: bytearray, size: int, peer: str) -> bytes:
    """``size`` bytes from ``buffer``, filled from ``sock`` as needed; the rest stays."""
    while len(buffer) < size:
        chunk = sock.recv(_RECV_BYTES)
        if not chunk:
            raise H2Error(f"{peer} closed the connection")
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


def open_connection(host: str, port: int, timeout_s: float) -> socket.socket:
    """A TCP connection that has sent the client preface, our SETTINGS (no push, no HPACK
    dynamic table, the largest stream window) and the largest connection window."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header_table_size, enable_push = 1, 2
    settings = struct.pack(
        ">HIHIHI",
        header_table_size,
        0,
        enable_push,
        0,
        _SETTINGS_INITIAL_WINDOW_SIZE,
        _MAX_WINDOW,
    )
    sock.sendall(
        _PREFACE
        + _frame(_SETTINGS, 0, 0, settings)
        + _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - _DEFAULT_WINDOW))
    )
    return sock


class GrpcH2Connection:
    """One HTTP/2 connection to a gRPC server, one unary call on it at a time."""

    def __init__(self, host: str, port: int, path: str, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.block = request_headers(path, f"{host}:{port}")
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.next_stream = 1
        # the stream in use: its DATA so far, whether it ended, the text of its trailers
        self.inbox = bytearray()
        self.ended = self.pending_end = False
        self.error_text = ""

    def call(self, message: bytes) -> None:
        """Send one serialized request message; raise unless a response message came back."""
        try:
            if self.sock is None or self.next_stream > _MAX_STREAM_ID:
                self.close()
                self._connect()
            stream = self._begin()
            self._send_data(stream, message, end=True)
            while not self.ended:
                self._read_frame(stream)
            if len(self.inbox) < 5:
                raise H2Error(
                    f"gRPC call failed: {self.error_text or 'trailers without a message'}"
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buffer.clear()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _connect(self) -> None:
        self.sock = open_connection(self.host, self.port, self.timeout_s)
        self.next_stream = 1
        self.send_window = _DEFAULT_WINDOW  # the connection's, for our DATA
        self.stream_window_start = _DEFAULT_WINDOW  # each new stream's, from the server's SETTINGS
        self.stream_window = 0
        self.max_frame = 16384

    def _begin(self) -> int:
        """Open the next stream (its HEADERS go out with its first DATA)."""
        stream = self.next_stream
        self.next_stream += 2
        self.stream_window = self.stream_window_start
        self.inbox.clear()
        self.ended = self.pending_end = False
        self.error_text = ""
        self.headers_due = True
        return stream

    def _send_data(self, stream: int, message: bytes, end: bool) -> None:
        """One gRPC message as DATA frames within the frame size and both windows."""
        assert self.sock is not None
        body = b"\x00" + struct.pack(">I", len(message)) + message
        out = []
        if self.headers_due:
            out.append(_frame(_HEADERS, _END_HEADERS, stream, self.block))
            self.headers_due = False
        sent = 0
        while sent < len(body):
            room = min(self.max_frame, self.send_window, self.stream_window)
            if room <= 0:
                self.sock.sendall(b"".join(out))
                out = []
                self._read_frame(stream)  # until the server's WINDOW_UPDATE
                if self.ended:
                    raise H2Error(f"the server ended the stream: {self.error_text}")
                continue
            chunk = body[sent : sent + room]
            sent += len(chunk)
            self.send_window -= len(chunk)
            self.stream_window -= len(chunk)
            last = end and sent == len(body)
            out.append(_frame(_DATA, _END_STREAM if last else 0, stream, chunk))
        self.sock.sendall(b"".join(out))

    def _read_frame(self, stream: int) -> None:
        length, kind, flags, target = frame_header(self._exactly(9))
        payload = self._exactly(length)
        if kind == _DATA:
            if length:
                self._send(window_updates(target, length, flags))
            if target == stream:
                self.inbox += data_content(payload, flags)
                self.ended |= bool(flags & _END_STREAM)
        elif kind in (_HEADERS, _CONTINUATION) and target == stream:
            if kind == _HEADERS:
                self.pending_end = bool(flags & _END_STREAM)
            if self.pending_end:
                self.error_text += _grpc_message(payload)
            self.ended |= self.pending_end and bool(flags & _END_HEADERS)
        elif kind == _SETTINGS and not flags & _ACK:
            self._settings(payload)
            self._send(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING and not flags & _ACK:
            self._send(_frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            if target == 0:
                self.send_window += window_increment(payload)
            elif target == stream:
                self.stream_window += window_increment(payload)
        elif kind == _RST_STREAM and target == stream:
            raise H2Error(reset_text(payload))
        elif kind == _GOAWAY:
            raise goaway_error(payload)

    def _settings(self, payload: bytes) -> None:
        max_frame, initial_window = settings_changes(payload)
        if max_frame is not None:
            self.max_frame = max_frame
        if initial_window is not None:
            self.stream_window += initial_window - self.stream_window_start
            self.stream_window_start = initial_window

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def _exactly(self, size: int) -> bytes:
        assert self.sock is not None
        return read_exactly(self.sock, self.buffer, size, f"{self.host}:{self.port}")


class GrpcH2Stream(GrpcH2Connection):
    """One long-lived stream (``ModelStreamInfer``) on its own connection: each call writes
    one request message on it and reads the next response message back, or, for a decoupled
    model, every response up to the final one (:func:`decoupled_answer`)."""

    stream = 0

    def __init__(
        self, host: str, port: int, path: str, timeout_s: float, decoupled: bool = False
    ) -> None:
        super().__init__(host, port, path, timeout_s)
        self.decoupled = decoupled

    def call(self, message: bytes) -> DecoupledAnswer | None:  # type: ignore[override]
        """Send one message on the stream; raise if the response carries an error message."""
        try:
            if self.sock is None:
                self._connect()
                self.stream = self._begin()
            self._send_data(self.stream, message, end=False)
            if self.decoupled:
                return decoupled_answer(self._next_message)
            response = self._next_message()
        except BaseException:
            self.close()
            raise
        check_stream_response(response)
        return None

    def _next_message(self) -> bytes:
        while True:
            message = take_message(self.inbox)
            if message is not None:
                return message
            if self.ended:
                raise H2Error(f"the server ended the stream: {self.error_text or 'no reason'}")
            self._read_frame(self.stream)


_ERROR_MESSAGE_TAG = b"\x0a"
"""``ModelStreamInferResponse.error_message`` (field 1, length-delimited), serialized first
when set: a response that starts with it failed."""


def _stream_error(response: bytes) -> str:
    from tritonclient.grpc import service_pb2

    return str(service_pb2.ModelStreamInferResponse.FromString(response).error_message)


def _grpc_message(block: bytes) -> str:
    """``grpc-message`` from a trailers block when the server wrote it as a raw literal
    (best effort: a Huffman-coded value is left out)."""
    at = block.find(b"grpc-message")
    if at < 0:
        return ""
    at += len(b"grpc-message")
    if at >= len(block) or block[at] & 0x80:
        return ""
    size = block[at] & 0x7F
    if size == 0x7F:
        return ""
    return block[at + 1 : at + 1 + size].decode("utf-8", "replace")
