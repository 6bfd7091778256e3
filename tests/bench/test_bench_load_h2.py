"""The HTTP/2 client's encodings on known inputs (RFC 7541's examples)."""

from __future__ import annotations

from headrace.bench.load_h2 import _grpc_message, _integer, request_headers


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
