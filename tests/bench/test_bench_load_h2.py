"""The HTTP/2 client's encodings on known inputs (RFC 7541's examples) and its flow control."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from headrace.bench.load_h2 import (
    GrpcH2Stream,
    H2Error,
    _grpc_message,
    _integer,
    decoupled_answer,
    request_headers,
)
from headrace.bench.load_h2_shared import SharedConnections, SharedStreamCall


def test_prefix_integers_as_rfc_7541_c1() -> None:
    assert _integer(10, 5) == bytes([0b01010])
    assert _integer(1337, 5) == bytes([0b11111, 0b10011010, 0b00001010])
    assert _integer(42, 8) == bytes([42])
    assert _integer(16, 4) == bytes([0x0F, 0x01])


def test_request_headers_are_static_names_and_raw_values() -> None:
    block = request_headers("/svc/Method", "127.0.0.1:8001")
    assert block[:2] == bytes([0x83, 0x86])  # :method POST, :scheme http
    assert block[2:4] == bytes([0x04, len("/svc/Method")])  # :path, literal value
    assert b"/svc/Method" in block and b"127.0.0.1:8001" in block
    assert b"\x0f\x10\x10application/grpc" in block  # content-type (index 31)
    assert block.endswith(b"\x00\x02te\x08trailers")


def test_grpc_message_read_only_when_raw() -> None:
    raw = b"\x00\x0bgrpc-status\x015" + b"\x00\x0cgrpc-message\x05nope!"
    assert _grpc_message(raw) == "nope!"
    huffman = b"\x00\x0cgrpc-message\x85abcde"
    assert _grpc_message(huffman) == ""
    assert _grpc_message(b"") == ""


def _read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, int, int, bytes]:
    while len(buffer) < 9 or len(buffer) < 9 + int.from_bytes(buffer[:3], "big"):
        chunk = sock.recv(65536)
        assert chunk, "the client closed the connection"
        buffer += chunk
    length = int.from_bytes(buffer[:3], "big")
    kind, flags = buffer[3], buffer[4]
    stream = int.from_bytes(buffer[5:9], "big")
    payload = bytes(buffer[9 : 9 + length])
    del buffer[: 9 + length]
    return kind, flags, stream, payload


def _one_stream_server(listener: socket.socket, seen: list[tuple[int, int, int]]) -> None:
    """Answers one message on stream 1, then records the client's frames until it closes."""
    sock, _ = listener.accept()
    with sock:
        buffer = bytearray()
        while len(buffer) < 24:
            buffer += sock.recv(65536)
        assert buffer[:24] == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        del buffer[:24]
        sock.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # our SETTINGS, empty
        while True:
            kind, _, stream, payload = _read_frame(sock, buffer)
            if kind == 0 and stream == 1:  # the request's DATA
                break
        response = b"\x00" + (100).to_bytes(4, "big") + bytes(100)
        sock.sendall(len(response).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big"))
        sock.sendall(response)
        sock.settimeout(5)
        try:
            while True:
                kind, _, stream, payload = _read_frame(sock, buffer)
                if kind == 8:  # WINDOW_UPDATE
                    seen.append((kind, stream, int.from_bytes(payload, "big")))
        except (AssertionError, OSError):
            pass


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_each_data_frame_received_is_given_back_to_stream_and_connection(shared: bool) -> None:
    """As gRPC's C-core clients do: WINDOW_UPDATEs for the stream and the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[tuple[int, int, int]] = []
    server = threading.Thread(target=_one_stream_server, args=(listener, seen), daemon=True)
    server.start()
    path = "/inference.GRPCInferenceService/ModelStreamInfer"
    if shared:
        pool = SharedConnections("127.0.0.1", port, 6, 5.0)
        call = SharedStreamCall(pool, path)
        call.call(b"request")
        call.close()
        pool.close()
    else:
        own = GrpcH2Stream("127.0.0.1", port, path, 5.0)
        own.call(b"request")
        own.close()
    server.join(10)
    listener.close()
    updates = [(stream, size) for _, stream, size in seen if size == 105]
    assert sorted(updates) == [(0, 105), (1, 105)]


def _stream_response(outputs: int = 0, final: bool | None = None, error: str = "") -> bytes:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelStreamInferResponse(error_message=error)
    for index in range(outputs):
        response.infer_response.outputs.add(name=f"OUT{index}", datatype="INT32", shape=[1])
        response.infer_response.raw_output_contents.append(bytes(4))
    if final is not None:
        response.infer_response.parameters["triton_final_response"].bool_param = final
    return response.SerializeToString()


def test_a_decoupled_answer_reads_to_the_final_flag_and_counts_responses_with_outputs() -> None:
    three = [_stream_response(1, False)] * 3
    # after the final flag: the next request's first response
    messages = iter([*three, _stream_response(final=True), _stream_response(1, False)])
    before = time.monotonic_ns()
    answered_ns, responses = decoupled_answer(lambda: next(messages))
    assert responses == 3
    assert before <= answered_ns <= time.monotonic_ns()
    assert next(messages) == _stream_response(1, False)  # not read: it is not this request's
    # a final response with outputs counts; one without the flag set true does not end it
    messages = iter([_stream_response(2), _stream_response(1, True)])
    assert decoupled_answer(lambda: next(messages))[1] == 2


def _handed_apart(responses: list[bytes]) -> tuple[list[int], Callable[[], bytes]]:
    """A reader's source handing ``responses`` 10 ms apart, and when it handed each."""
    handed: list[int] = []

    def next_message() -> bytes:
        if handed:
            time.sleep(0.01)
        handed.append(time.monotonic_ns())
        return responses.pop(0)

    return handed, next_message


def test_a_decoupled_answer_is_timed_at_its_last_response_with_outputs() -> None:
    """As perf_analyzer: the last response, or the one before an empty final response."""
    responses = [_stream_response(1, False), _stream_response(1, False)]
    handed, next_message = _handed_apart([*responses, _stream_response(final=True)])
    answered_ns, count = decoupled_answer(next_message)
    assert count == 2 and len(handed) == 3
    assert handed[1] <= answered_ns < handed[2]  # the second response, not the empty final
    handed, next_message = _handed_apart([_stream_response(1, False), _stream_response(1, True)])
    answered_ns, count = decoupled_answer(next_message)
    assert count == 2 and handed[1] <= answered_ns  # a final response with outputs


def test_a_decoupled_answer_with_no_outputs_is_timed_at_its_final_response() -> None:
    handed, next_message = _handed_apart([_stream_response(final=False)] * 2)
    answered_ns, count = decoupled_answer(
        lambda: next_message() if len(handed) < 2 else _stream_response(final=True)
    )
    assert count == 0 and answered_ns >= handed[-1]


def test_a_decoupled_answer_fails_on_an_error_response() -> None:
    messages = iter([_stream_response(1, False), _stream_response(error="negative input -1")])
    with pytest.raises(H2Error, match="negative input -1"):
        decoupled_answer(lambda: next(messages))
