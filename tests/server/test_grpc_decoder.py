"""InferRequestDecoder: replayed headers decode as the full path does, errors included."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from headrace.errors import InvalidInput
from headrace.server.grpc.codec import decode_infer_request, split_infer_request
from headrace.server.grpc.decoder import InferRequestDecoder
from headrace.server.memory import SharedMemoryRegistry


def _wire(x: np.ndarray, *, raw: list[bytes] | None = None, request_id: str = "r") -> bytes:
    message = service_pb2.ModelInferRequest(model_name="m", model_version="1", id=request_id)
    message.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    message.inputs.add(name="s", datatype="BYTES", shape=[1])
    message.parameters["priority"].uint64_param = 2
    message.parameters["custom"].string_param = "v"
    message.outputs.add(name="y")
    message.raw_input_contents.extend(raw if raw is not None else [x.tobytes(), b"\3\0\0\0abc"])
    return message.SerializeToString()


def _full(wire: bytes) -> object:
    return decode_infer_request(*split_infer_request(wire))


def test_a_replayed_header_decodes_as_the_full_path_does() -> None:
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    first = decoder.decode(_wire(np.zeros((2, 3), np.float32)))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    wire = _wire(x)
    replayed = decoder.decode(wire)
    expected = _full(wire)
    assert replayed.inputs.keys() == expected.inputs.keys()  # type: ignore[attr-defined]
    np.testing.assert_array_equal(replayed.inputs["x"], x)
    assert np.shares_memory(replayed.inputs["x"], np.frombuffer(wire, np.uint8))
    assert not replayed.inputs["x"].flags.writeable
    assert list(replayed.inputs["s"]) == [b"abc"]
    for field in ("model_name", "model_version", "id", "outputs", "parameters", "priority"):
        assert getattr(replayed, field) == getattr(expected, field), field
    # each request gets its own parameters, never the remembered header's
    assert replayed.parameters == {"custom": "v"}
    assert replayed.parameters is not first.parameters
    np.testing.assert_array_equal(first.inputs["x"], np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "raw",
    [
        [b"\0" * 20, b"\3\0\0\0abc"],  # 20 bytes where [2, 3] FP32 needs 24
        [b"\0" * 24, b"\x09\0\0\0abc"],  # BYTES framing runs past the end
        [b"\0" * 24],  # one raw content for two inputs
    ],
)
def test_a_replayed_header_refuses_what_the_full_path_refuses(raw: list[bytes]) -> None:
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    decoder.decode(_wire(np.zeros((2, 3), np.float32)))
    wire = _wire(np.zeros((2, 3), np.float32), raw=raw)
    with pytest.raises(InvalidInput) as full:
        _full(wire)
    with pytest.raises(InvalidInput) as replayed:
        decoder.decode(wire)
    assert str(replayed.value) == str(full.value)


def test_requests_with_typed_contents_are_decoded_in_full_each_time() -> None:
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    for values in ([1.0, 2.0], [3.0, 4.0]):
        message = service_pb2.ModelInferRequest(model_name="m")
        message.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp32_contents.extend(
            values
        )
        request = decoder.decode(message.SerializeToString())
        np.testing.assert_array_equal(request.inputs["x"], np.array(values, np.float32))


def test_malformed_requests_are_refused_and_headers_kept_are_bounded() -> None:
    decoder = InferRequestDecoder(None, capacity=2)
    with pytest.raises(InvalidInput, match="malformed ModelInferRequest"):
        decoder.decode(_wire(np.zeros(2, np.float32))[:-3])
    for size, request_id in ((2, "a"), (3, "b"), (4, "c"), (2, "d")):  # three headers
        request = decoder.decode(_wire(np.ones(size, np.float32), request_id=request_id))
        assert request.id == request_id
        np.testing.assert_array_equal(request.inputs["x"], np.ones(size, np.float32))
    assert len(decoder._plans) == 2


def test_numbered_requests_share_one_kept_header_and_keep_their_own_ids() -> None:
    """perf_analyzer numbers its stream requests; the id is not part of what is kept."""
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    x = np.ones((2, 3), np.float32)
    ids = ["0", "281474976710656", "", "é-unicode"]
    decoded = [decoder.decode(_wire(x, request_id=i)) for i in ids]
    assert [d.id for d in decoded] == ids
    assert len(decoder._plans) == 1  # one header kept for all four
    for request, request_id in zip(decoded, ids):
        expected = _full(_wire(x, request_id=request_id))
        for field in ("model_name", "model_version", "id", "outputs", "parameters", "priority"):
            assert getattr(request, field) == getattr(expected, field), field


def test_a_header_with_a_second_id_field_is_never_replayed_with_the_first() -> None:
    # protobuf keeps the last of a repeated scalar field: the request's id is "second"
    message = service_pb2.ModelInferRequest(model_name="m", id="first")
    message.inputs.add(name="x", datatype="FP32", shape=[1])
    late = service_pb2.ModelInferRequest(id="second").SerializeToString()
    raw = service_pb2.ModelInferRequest(raw_input_contents=[b"\0" * 4]).SerializeToString()
    wire = message.SerializeToString() + late + raw
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    assert [decoder.decode(wire).id for _ in range(3)] == ["second"] * 3
    assert _full(wire).id == "second"  # type: ignore[attr-defined]


def test_a_replayed_refusal_names_its_own_request_id() -> None:
    decoder = InferRequestDecoder(SharedMemoryRegistry())
    decoder.decode(_wire(np.zeros((2, 3), np.float32), request_id="first"))
    wire = _wire(np.zeros((2, 3), np.float32), raw=[b"\0" * 20, b"\3\0\0\0abc"], request_id="later")
    with pytest.raises(InvalidInput) as full:
        _full(wire)
    with pytest.raises(InvalidInput) as replayed:
        decoder.decode(wire)
    assert str(replayed.value) == str(full.value)
    assert "later" in str(replayed.value) and "first" not in str(replayed.value)
