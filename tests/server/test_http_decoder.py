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
    with pytest.raises(InvalidInput) as full:
        _full(body, header_length)
    with pytest.raises(InvalidInput) as replayed:
        _decode(decoder, body, header_length)
    assert str(replayed.value) == str(full.value)


def test_headers_that_failed_are_not_kept_and_refused_each_time() -> None:
    decoder = InferBodyDecoder()
    x = np.zeros(4, np.float32)
    body, header_length = _body(x, x_size=12)  # FP32 [4] needs 16 bytes, the header says 12
    for _ in range(2):
        with pytest.raises(InvalidInput, match="byte size mismatch"):
            _decode(decoder, body, header_length)
    assert decoder._plans == {}


def test_json_data_and_bodies_without_the_header_length_are_decoded_in_full_each_time() -> None:
    decoder = InferBodyDecoder()
    for values in ([1.0, 2.0], [3.0, 4.0]):
        header = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": values}]}
        body = json.dumps(header).encode()
        for header_length in (len(body), None):
            decoded = _decode(decoder, body, header_length)  # type: ignore[arg-type]
            np.testing.assert_array_equal(decoded.request.inputs["x"], np.array(values, np.float32))
    assert decoder._plans == {}


def test_ids_models_and_versions_keep_headers_apart_and_headers_kept_are_bounded() -> None:
    decoder = InferBodyDecoder(capacity=2)
    x = np.ones(2, np.float32)
    for request_id in ("a", "b", "c", "a"):
        decoded = _decode(decoder, *_body(x, request_id=request_id))
        assert decoded.request.id == request_id
        np.testing.assert_array_equal(decoded.request.inputs["x"], x)
    assert len(decoder._plans) == 2
    body, header_length = _body(x)
    other = decoder.decode("other", "", body, header_length, None)
    assert (other.request.model_name, other.request.model_version) == ("other", "")
    again = decoder.decode("other", "", body, header_length, None)
    assert (again.request.model_name, again.request.model_version) == ("other", "")


def test_a_negative_capacity_is_refused_and_zero_keeps_nothing() -> None:
    with pytest.raises(ValueError, match="negative"):
        InferBodyDecoder(capacity=-1)
    decoder = InferBodyDecoder(capacity=0)
    for _ in range(2):
        _decode(decoder, *_body(np.ones(2, np.float32)))
    assert decoder._plans == {}
