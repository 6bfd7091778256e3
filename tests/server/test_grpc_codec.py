"""grpc_codec / grpc_messages: protobuf <-> headrace.types, without a server."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from headrace.errors import InternalError, InvalidInput
from headrace.server.grpc.codec import (
    decode_infer_request,
    encode_infer_response,
    encode_stream_response,
    split_infer_request,
)
from headrace.server.grpc.messages import (
    model_metadata_response,
    repository_index_response,
    statistics_response,
)
from headrace.server.reports import (
    BatchStatistics,
    Duration,
    ModelMetadata,
    ModelStatistics,
    RepositoryIndexEntry,
)
from headrace.types import DataType, InferenceResponse, TensorSpec


def _request(*tensors: tuple[str, str, list[int]]) -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name="m", model_version="2", id="r1")
    for name, datatype, shape in tensors:
        message.inputs.add(name=name, datatype=datatype, shape=shape)
    return message


def test_raw_numeric_inputs_are_zero_copy_views() -> None:
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    message = _request(("x", "FP16", [2, 3]))
    message.raw_input_contents.append(x.tobytes())
    request = decode_infer_request(message)
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "r1")
    out = request.inputs["x"]
    assert out.dtype == np.float16 and not out.flags.writeable
    np.testing.assert_array_equal(out, x)
    assert request.outputs is None


def test_split_keeps_raw_contents_as_views_of_the_received_bytes() -> None:
    x = np.arange(300, dtype=np.int32)  # 1200 bytes: a two-byte length varint
    message = _request(("x", "INT32", [300]), ("s", "BYTES", [1]))
    message.parameters["priority"].uint64_param = 3
    message.raw_input_contents.extend([x.tobytes(), b"\3\0\0\0abc"])
    wire = message.SerializeToString()
    header, raw = split_infer_request(wire)
    assert header.model_name == "m" and len(header.raw_input_contents) == 0
    request = decode_infer_request(header, raw)
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert np.shares_memory(request.inputs["x"], np.frombuffer(wire, np.uint8))
    assert list(request.inputs["s"]) == [b"abc"] and request.priority == 3
    # Fields in any order: raw contents first, header fields after.
    raw_only = service_pb2.ModelInferRequest(raw_input_contents=[x.tobytes(), b""])
    rest = service_pb2.ModelInferRequest()
    rest.CopyFrom(message)
    del rest.raw_input_contents[:]
    header, raw = split_infer_request(raw_only.SerializeToString() + rest.SerializeToString())
    assert header == rest and [bytes(r) for r in raw] == [x.tobytes(), b""]


@pytest.mark.parametrize("cut", [1, 5, -1])
def test_split_refuses_truncated_messages(cut: int) -> None:
    message = _request(("x", "FP32", [2]))
    message.raw_input_contents.append(b"\0" * 8)
    wire = message.SerializeToString()
    with pytest.raises(InvalidInput, match="malformed ModelInferRequest"):
        split_infer_request(wire[:cut])


def test_raw_bytes_input_is_length_prefixed() -> None:
    items = [b"", "héllo".encode(), b"\x00\xff"]
    raw = b"".join(struct.pack("<I", len(i)) + i for i in items)
    message = _request(("s", "BYTES", [3]))
    message.raw_input_contents.append(raw)
    assert list(decode_infer_request(message).inputs["s"]) == items


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("INT8", "int_contents", [-3, 4], np.int8),
        ("UINT16", "uint_contents", [7, 65535], np.uint16),
        ("INT64", "int64_contents", [-(2**40), 5], np.int64),
        ("UINT64", "uint64_contents", [2**63, 1], np.uint64),
        ("FP32", "fp32_contents", [1.5, -2.0], np.float32),
        ("FP64", "fp64_contents", [0.1, 0.2], np.float64),
        ("BOOL", "bool_contents", [True, False], np.bool_),
    ],
)
def test_typed_contents(datatype: str, field: str, values: list, dtype: type) -> None:
    message = _request(("x", datatype, [1, 2]))
    getattr(message.inputs[0].contents, field).extend(values)
    out = decode_infer_request(message).inputs["x"]
    assert out.dtype == np.dtype(dtype) and out.shape == (1, 2)
    np.testing.assert_array_equal(out, np.array(values, dtype=dtype).reshape(1, 2))


def test_typed_bytes_contents() -> None:
    message = _request(("s", "BYTES", [2]))
    message.inputs[0].contents.bytes_contents.extend([b"a", "ü".encode()])
    assert list(decode_infer_request(message).inputs["s"]) == [b"a", "ü".encode()]


def test_parameters_map_to_request_fields_and_pass_through() -> None:
    message = _request(("x", "INT32", [1]))
    message.inputs[0].contents.int_contents.append(1)
    message.parameters["priority"].uint64_param = 2
    message.parameters["timeout"].int64_param = 5000
    message.parameters["sequence_id"].string_param = "seq-a"
    message.parameters["sequence_start"].bool_param = True
    message.parameters["tag"].string_param = "t"
    message.parameters["scale"].double_param = 0.5
    message.parameters["triton_enable_empty_final_response"].bool_param = True
    message.outputs.add(name="y")
    request = decode_infer_request(message)
    assert (request.priority, request.timeout_us) == (2, 5000)
    assert (request.sequence_id, request.sequence_start, request.sequence_end) == (
        "seq-a",
        True,
        False,
    )
    assert request.parameters == {"tag": "t", "scale": 0.5}
    assert request.outputs is not None and [o.name for o in request.outputs] == ["y"]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda m: m.raw_input_contents.extend([b"\0" * 16, b"\0" * 16]), "1 inputs but 2 raw"),
        (
            lambda m: m.raw_input_contents.append(b"\0" * 12),
            "byte size mismatch for input 'x' for model 'm'. Expected 16, got 12",
        ),
        (
            lambda m: m.inputs[0].contents.fp32_contents.extend([1.0] * 3),
            r"Expected 16, got 12 \(3 values in 'fp32_contents'",
        ),
        (lambda m: m.inputs[0].contents.int_contents.extend([1] * 4), "expects 'fp32_contents'"),
        (
            lambda m: (
                m.inputs[0].contents.fp32_contents.extend([0.0] * 4),
                setattr(m.parameters["triton_x"], "bool_param", True),
            ),
            "reserved for Triton",
        ),
        (  # Triton's words, which NVIDIA's grpc_explicit_int_content_client.py matches; they
            # come first even when the raw contents are short of one per input
            lambda m: (
                m.inputs[0].contents.fp32_contents.extend([0.0] * 4),
                m.raw_input_contents.append(b"\0" * 8),
                m.inputs.add(name="z", datatype="FP32", shape=[1]),
            ),
            "^contents field must not be specified when using raw_input_contents for 'x' for "
            "model 'm'$",
        ),
        (
            lambda m: setattr(m.inputs[0], "datatype", "FP8"),
            "inference input 'x' data-type is '<invalid>': 'FP8'",
        ),
    ],
)
def test_decode_errors_name_the_input(build, match: str) -> None:  # type: ignore[no-untyped-def]
    message = _request(("x", "FP32", [2, 2]))
    build(message)
    with pytest.raises(InvalidInput, match=match):
        decode_infer_request(message)


@pytest.mark.parametrize("empty", [False, True])
def test_raw_and_typed_contents_together_are_refused_as_triton_does(empty: bool) -> None:
    message = _request(("x", "FP32", [2]), ("y", "FP32", [2]))
    message.raw_input_contents.extend([b"\0" * 8, b"\0" * 8])
    if empty:  # an empty contents message is still set, and Triton refuses it alike
        message.inputs[1].contents.SetInParent()
    else:
        message.inputs[1].contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(InvalidInput) as caught:
        decode_infer_request(message)
    assert caught.value.message.startswith(
        "contents field must not be specified when using raw_input_contents for 'y' for model 'm'"
    )


def test_requested_outputs_asked_twice_are_answered_once_as_first_asked() -> None:
    message = _request(("x", "FP32", [1]))
    message.raw_input_contents.append(b"\0" * 4)
    for name in ("y", "z", "y"):
        message.outputs.add(name=name)
    message.outputs[0].parameters["tag"].string_param = "first"
    request = decode_infer_request(message)
    assert [(o.name, dict(o.parameters)) for o in request.outputs or ()] == [
        ("y", {"tag": "first"}),
        ("z", {}),
    ]


@pytest.mark.parametrize(
    ("datatype", "span"), [("FP32", 4 * 2**64), ("BYTES", 8 * 2**64)], ids=["FP32", "BYTES"]
)
def test_element_counts_past_64_bits_are_refused(datatype: str, span: int) -> None:
    """2**32 x 2**32 elements wrap to 0 in 64-bit arithmetic, which an empty buffer matches."""
    message = _request(("x", datatype, [2**32, 2**32]))
    message.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match=f"its dimensions multiply to {span} bytes"):
        decode_infer_request(message)


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_empty_shapes_numpy_cannot_describe_are_refused(datatype: str) -> None:
    """Found by tests/server/test_grpc_fuzz.py: [0, 2**62] holds no data, so an empty raw
    content matched it, and numpy's reshape raised ``array is too big`` (an INTERNAL)."""
    message = _request(("x", datatype, [0, 2**62]))
    message.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match=r"input 'x' has shape \[0, 4611686018427387904\]"):
        decode_infer_request(message)


def test_fp16_contents_and_out_of_range_ints_are_refused() -> None:
    message = _request(("x", "FP16", [1]))
    message.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInput, match="FP16 data cannot be sent in 'contents'"):
        decode_infer_request(message)
    message = _request(("x", "INT8", [1]))
    message.inputs[0].contents.int_contents.append(300)
    with pytest.raises(InvalidInput, match="do not fit INT8"):
        decode_infer_request(message)


def test_encode_outputs_raw_in_order_with_bytes_framing() -> None:
    y = np.arange(4, dtype=np.float32).reshape(2, 2)
    s = np.array([b"", "ö".encode()], dtype=object)
    response = InferenceResponse("m", "1", {"y": y, "s": s}, id="r9")
    wire = encode_infer_response(response, {"triton_final_response": True})
    message = service_pb2.ModelInferResponse.FromString(wire)
    assert (message.model_name, message.model_version, message.id) == ("m", "1", "r9")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("y", "FP32", [2, 2]),
        ("s", "BYTES", [2]),
    ]
    assert message.raw_output_contents[0] == y.tobytes()
    assert message.raw_output_contents[1] == b"\0\0\0\0" + b"\2\0\0\0" + "ö".encode()
    assert message.parameters["triton_final_response"].bool_param is True
    # Byte for byte what protobuf itself would send.
    assert wire == message.SerializeToString()
    stream = service_pb2.ModelStreamInferResponse.FromString(
        encode_stream_response(response, {"triton_final_response": True})
    )
    assert stream.error_message == "" and stream.infer_response == message
    with pytest.raises(InternalError, match="output 'c'"):
        encode_infer_response(InferenceResponse("m", "1", {"c": np.zeros(1, np.complex64)}))


def test_large_and_non_contiguous_outputs_round_trip() -> None:
    big = np.arange(300_000, dtype=np.float32).reshape(1000, 300)  # length varint > 2 bytes
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    swapped = np.arange(3, dtype=">i4")
    response = InferenceResponse("m", "1", {"big": big, "strided": strided, "swapped": swapped})
    message = service_pb2.ModelInferResponse.FromString(encode_infer_response(response))
    raw = message.raw_output_contents
    np.testing.assert_array_equal(np.frombuffer(raw[0], np.float32).reshape(1000, 300), big)
    np.testing.assert_array_equal(np.frombuffer(raw[1], np.int64).reshape(3, 2), strided)
    np.testing.assert_array_equal(np.frombuffer(raw[2], "<i4"), swapped)


def test_messages_from_reports() -> None:
    meta = ModelMetadata(
        "m", ("1",), "onnxruntime_onnx", (TensorSpec("x", DataType.FP32, (4,)),), (), True
    )
    pb = model_metadata_response(meta)
    assert (pb.inputs[0].datatype, list(pb.inputs[0].shape)) == ("FP32", [-1, 4])
    batch = BatchStatistics(2, Duration(1, 10), Duration(1, 20), Duration(1, 30))
    stats = ModelStatistics("m", "1", 99, 4, 2, success=Duration(2, 500), batch_stats=(batch,))
    out = statistics_response([stats]).model_stats[0]
    assert (out.last_inference, out.inference_count, out.execution_count) == (99, 4, 2)
    assert out.inference_stats.success.ns == 500 and out.batch_stats[0].compute_infer.ns == 20
    index = repository_index_response([RepositoryIndexEntry("m", "1", "READY")]).models[0]
    assert (index.name, index.version, index.state, index.reason) == ("m", "1", "READY", "")


@pytest.mark.parametrize(
    ("model_parameters", "door_parameters"),
    [
        ({}, {"triton_final_response": True}),
        ({}, {"triton_final_response": False}),
        ({"n": 1}, {"triton_final_response": True}),  # 1, then True: not the same parameter
        ({"n": True}, None),
        ({"n": 1.5, "s": "text"}, {"triton_final_response": True}),
    ],
)
def test_remembered_response_parameters_are_what_protobuf_writes(
    model_parameters: dict[str, bool | int | float | str],
    door_parameters: dict[str, bool | int | float | str] | None,
) -> None:
    expected = service_pb2.ModelInferResponse(model_name="m", model_version="1", id="7")
    for name, value in {**model_parameters, **(door_parameters or {})}.items():
        if isinstance(value, bool):
            expected.parameters[name].bool_param = value
        elif isinstance(value, int):
            expected.parameters[name].int64_param = value
        elif isinstance(value, float):
            expected.parameters[name].double_param = value
        else:
            expected.parameters[name].string_param = value
    expected.outputs.add(name="y", datatype="FP32", shape=[2])
    expected.raw_output_contents.append(np.ones(2, np.float32).tobytes())
    response = InferenceResponse(
        "m", "1", {"y": np.ones(2, np.float32)}, id="7", parameters=model_parameters
    )
    for _ in range(2):  # written, then from what was remembered
        wire = encode_infer_response(response, door_parameters)
        assert service_pb2.ModelInferResponse.FromString(wire) == expected
        if len(expected.parameters) == 1:
            assert wire == expected.SerializeToString()


def test_true_one_and_one_point_zero_are_remembered_apart() -> None:
    written = []
    for value in (1, True, 1.0):
        response = InferenceResponse(
            "m", "1", {"y": np.ones(1, np.float32)}, parameters={"n": value}
        )
        message = service_pb2.ModelInferResponse.FromString(encode_infer_response(response))
        written.append(message.parameters["n"].WhichOneof("parameter_choice"))
    assert written == ["int64_param", "bool_param", "double_param"]
