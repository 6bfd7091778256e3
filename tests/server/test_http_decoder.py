"""InferBodyDecoder: replayed binary-extension headers decode as the full path does, errors
included."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headrace.errors import InvalidInput
from headrace.server.http.codec import DecodedRequest, decode_infer_request
from headrace.server.http.decoder import InferBodyDecoder
from headrace.server.memory import SharedMemoryRegistry

_BYTES = b"\3\0\0\0abc"


def _body(
    x: np.ndarray,
    *,
    tail: bytes | None = None,
    request_id: str = "r",
    x_size: int | None = None,
    s_size: int = len(_BYTES),
) -> tuple[bytes, int]:
    """A body with an FP32 input ``x`` and a BYTES input ``s`` (``tail``: the bytes after the
    header instead of theirs), and its header length."""
    header = {
        "id": request_id,
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": x.nbytes if x_size is None else x_size},
            },
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": s_size},
            },
        ],
        "parameters": {"priority": 2, "custom": "v", "binary_data_output": True},
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    return head + (tail if tail is not None else x.tobytes() + _BYTES), len(head)


def _full(body: bytes, header_length: int) -> DecodedRequest:
    return decode_infer_request("m", "1", body, header_length, SharedMemoryRegistry())


def _decode(decoder: InferBodyDecoder, body: bytes, header_length: int) -> DecodedRequest:
    return decoder.decode("m", "1", body, header_length, SharedMemoryRegistry())


def _refused_alike(decoder: InferBodyDecoder, body: bytes, header_length: int) -> None:
    """The decoder refuses ``body`` in the full path's words."""
    with pytest.raises(InvalidInput) as full:
        _full(body, header_length)
    with pytest.raises(InvalidInput) as replayed:
        _decode(decoder, body, header_length)
    assert str(replayed.value) == str(full.value)


def test_a_replayed_header_decodes_as_the_full_path_does() -> None:
    decoder = InferBodyDecoder()
    first = _decode(decoder, *_body(np.zeros((2, 3), np.float32)))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, header_length = _body(x)
    replayed = _decode(decoder, body, header_length)
    assert len(decoder._plans) == 1
    expected = _full(body, header_length)
    request, wanted = replayed.request, expected.request
    assert request.inputs.keys() == wanted.inputs.keys()
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert np.shares_memory(request.inputs["x"], np.frombuffer(body, np.uint8))
    assert not request.inputs["x"].flags.writeable
    assert list(request.inputs["s"]) == [b"abc"]
    for field in ("model_name", "model_version", "id", "outputs", "parameters", "priority"):
        assert getattr(request, field) == getattr(wanted, field), field
    assert replayed.binary_default == expected.binary_default is True
    assert dict(replayed.binary_outputs) == dict(expected.binary_outputs) == {"y": False}
    # each request gets its own parameters, never the remembered header's
    assert request.parameters == {"custom": "v"}
    assert request.parameters is not first.request.parameters
    np.testing.assert_array_equal(first.request.inputs["x"], np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "tail",
    [
        b"\0" * 20 + _BYTES,  # 4 bytes short: the body is not the header's size
        b"\0" * 24 + _BYTES + b"\0",  # a byte after the last input
        b"\0" * 24 + b"\x09\0\0\0abc",  # BYTES framing runs past its input
    ],
)
def test_a_replayed_header_refuses_what_the_full_path_refuses(tail: bytes) -> None:
    decoder = InferBodyDecoder()
    _decode(decoder, *_body(np.zeros((2, 3), np.float32)))
    body, header_length = _body(np.zeros((2, 3), np.float32), tail=tail)
    _refused_alike(decoder, body, header_length)


def test_headers_that_failed_are_not_kept_and_refused_each_time() -> None:
    decoder = InferBodyDecoder()
    x = np.zeros(4, np.float32)
    body, header_length = _body(x, x_size=12)  # FP32 [4] needs 16 bytes, the header says 12
    for _ in range(2):
        with pytest.raises(InvalidInput, match="byte size mismatch"):
            _decode(decoder, body, header_length)
    assert len(decoder._plans) == 0


def test_json_data_and_bodies_without_the_header_length_are_decoded_in_full_each_time() -> None:
    decoder = InferBodyDecoder()
    for values in ([1.0, 2.0], [3.0, 4.0]):
        header = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": values}]}
        body = json.dumps(header).encode()
        for header_length in (len(body), None):
            decoded = _decode(decoder, body, header_length)  # type: ignore[arg-type]
            np.testing.assert_array_equal(decoded.request.inputs["x"], np.array(values, np.float32))
    assert len(decoder._plans) == 0


def test_models_and_versions_keep_headers_apart_and_headers_kept_are_bounded() -> None:
    decoder = InferBodyDecoder(capacity=2)
    for size in (2, 3, 4, 2):  # three headers
        x = np.ones(size, np.float32)
        decoded = _decode(decoder, *_body(x))
        np.testing.assert_array_equal(decoded.request.inputs["x"], x)
    assert len(decoder._plans) == 2
    body, header_length = _body(np.ones(2, np.float32))
    for _ in range(2):
        other = decoder.decode("other", "", body, header_length, None)
        assert (other.request.model_name, other.request.model_version) == ("other", "")


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_numbered_requests_share_one_kept_header_and_keep_their_own_ids(
    separators: tuple[str, str],
) -> None:
    """tritonclient writes ``{"id": "7", ...``, perf_analyzer ``{"id":"",...``."""
    decoder = InferBodyDecoder()
    x = np.ones((2, 3), np.float32)
    ids = ["0", "281474976710656", "", "é-unicode", "with space"]
    for request_id in ids:
        body, header_length = _body(x, request_id=request_id)
        parsed = json.loads(body[:header_length])
        head = json.dumps(parsed, separators=separators, ensure_ascii=False).encode()
        body, header_length = head + body[header_length:], len(head)
        decoded = _decode(decoder, body, header_length)
        expected = _full(body, header_length)
        assert decoded.request.id == expected.request.id == request_id
        broken = body[:-7] + b"\x09\0\0\0abc"  # BYTES framing past its input
        _refused_alike(decoder, broken, header_length)
    assert len(decoder._plans) == 1  # one header kept for all of them


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b'{"id":"a","inputs":%s,"id":"b"}', "a second id: JSON's last one wins"),
        (b'{"id":"a\\u0041","inputs":%s}', "an escape in the id"),
        (b'{"inputs":%s,"id":"a"}', "the id not first"),
    ],
)
def test_ids_that_cannot_be_cut_safely_are_decoded_in_full(head: bytes, why: str) -> None:
    decoder = InferBodyDecoder()
    x = np.ones(2, np.float32)
    inputs = json.dumps(
        [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]
    ).encode()
    header = head % inputs
    body = header + x.tobytes()
    for _ in range(2):
        decoded = _decode(decoder, body, len(header))
        assert decoded.request.id == _full(body, len(header)).request.id, why
    other = head.replace(b'"a', b'"c', 1) % inputs
    decoded = _decode(decoder, other + x.tobytes(), len(other))
    assert decoded.request.id == _full(other + x.tobytes(), len(other)).request.id, why


def test_an_id_with_a_control_character_is_refused_as_the_full_path_refuses() -> None:
    decoder = InferBodyDecoder()
    x = np.ones(2, np.float32)
    _decode(decoder, *_body(x, request_id="ok"))
    body, header_length = _body(x, request_id="ok")
    bad = body.replace(b'"ok"', b'"o\x01"', 1)
    _refused_alike(decoder, bad, header_length)


def test_a_negative_capacity_is_refused_and_zero_keeps_nothing() -> None:
    with pytest.raises(ValueError, match="negative"):
        InferBodyDecoder(capacity=-1)
    decoder = InferBodyDecoder(capacity=0)
    for _ in range(2):
        _decode(decoder, *_body(np.ones(2, np.float32)))
    assert len(decoder._plans) == 0
