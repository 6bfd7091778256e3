"""Byte-level tests of the KServe v2 HTTP tensor codec, the status table and body compression."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import ml_dtypes
import numpy as np
import pytest

from headrace.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelExecutionError,
    ModelNotFound,
    ModelNotReady,
    Unsupported,
)
from headrace.server.http import codec
from headrace.server.http.body import accepted_encoding, compress, decompress
from headrace.server.http.codec import (
    DecodedRequest,
    decode_infer_request,
    decode_raw_request,
    encode_infer_response,
)
from headrace.server.http.status import http_status
from headrace.types import (
    DataType,
    InferenceRequest,
    InferenceResponse,
    TensorSpec,
    serialize_bytes_tensor,
)


def _body(header: dict, *chunks: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), len(text)


def test_binary_inputs_are_zero_copy_views_of_the_body() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([True, False, True])
    body, hlen = _body(
        {
            "id": "r1",
            "inputs": [
                {
                    "name": "a",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": a.nbytes},
                },
                {
                    "name": "b",
                    "shape": [3],
                    "datatype": "BOOL",
                    "parameters": {"binary_data_size": 3},
                },
            ],
        },
        a.tobytes(),
        b.tobytes(),
    )
    decoded = decode_infer_request("m", "1", body, hlen)
    req = decoded.request
    assert req.id == "r1" and req.model_version == "1" and req.outputs is None
    np.testing.assert_array_equal(req.inputs["a"], a)
    np.testing.assert_array_equal(req.inputs["b"], b)
    assert req.inputs["a"].base is not None and not req.inputs["a"].flags.writeable
    assert decoded.binary_default is False


def test_json_inputs_flat_and_nested_and_bytes() -> None:
    body, _ = _body(
        {
            "inputs": [
                {"name": "flat", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]},
                {"name": "nested", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2.5], [3, 4]]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["héllo", ""]},
                {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]},
            ]
        }
    )
    req = decode_infer_request("m", "", body, None).request
    np.testing.assert_array_equal(req.inputs["flat"], [[1, 2], [3, 4]])
    assert req.inputs["flat"].dtype == np.int64
    np.testing.assert_array_equal(req.inputs["nested"], [[1, 2.5], [3, 4]])
    assert list(req.inputs["s"]) == ["héllo".encode(), b""]
    assert req.inputs["flag"].dtype == np.bool_


def test_binary_bytes_input_uses_length_prefixed_framing() -> None:
    values = np.array([b"a", "ünï".encode(), b""], dtype=np.object_)
    raw = serialize_bytes_tensor(values)
    body, hlen = _body(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        },
        raw,
    )
    req = decode_infer_request("m", "", body, hlen).request
    assert list(req.inputs["s"]) == list(values)


def test_parameters_map_to_request_fields_and_pass_through() -> None:
    body, _ = _body(
        {
            "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
            "parameters": {
                "priority": 2,
                "timeout": 5000,
                "sequence_id": "abc",
                "sequence_start": True,
                "sequence_end": False,
                "binary_data_output": True,
                "custom": "v",
                "scale": 1.5,
            },
        }
    )
    decoded = decode_infer_request("m", "", body, None)
    req = decoded.request
    assert (req.priority, req.timeout_us, req.sequence_id) == (2, 5000, "abc")
    assert req.sequence_start and not req.sequence_end
    assert req.parameters == {"custom": "v", "scale": 1.5}
    assert [o.name for o in req.outputs or ()] == ["y", "z"]
    assert decoded.wants_binary("y") and decoded.wants_binary("z")
    assert decoded.binary_default


@pytest.mark.parametrize(
    ("header", "tail", "fragment"),
    [
        ({"inputs": "nope"}, b"", "'inputs'"),
        (
            {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2]}]},
            b"",
            "shape [4] needs 4",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1.0]}]},
            b"",
            "FP16 data via JSON is not supported",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": ["a"]}]},
            b"",
            "do not fit INT32",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}]},
            b"",
            "do not fit INT32",
        ),
        (
            {"inputs": [{"name": "x", "shape": [-1], "datatype": "INT32", "data": [1]}]},
            b"",
            "Unable to parse 'shape'",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "NOPE", "data": [1]}]},
            b"",
            "invalid datatype for input x: 'NOPE'",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32"}]},
            b"",
            "exactly one of 'data'",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": 8},
                    }
                ]
            },
            b"\0" * 4,
            "expecting 4 additional bytes for model 'm'",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": 4},
                    }
                ]
            },
            b"\0" * 8,
            "4 bytes after the last binary input",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": 4},
                    }
                ]
            },
            b"\0" * 4,
            "input byte size mismatch for input 'x' for model 'm'. Expected 8, got 4",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
                "parameters": {"triton_x": 1},
            },
            b"",
            "reserved for Triton",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
                "parameters": {"priority": -1},
            },
            b"",
            "Unable to parse 'priority'",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"classification": 3}}],
            },
            b"",
            "classification extension is not supported",
        ),
    ],
)
def test_malformed_requests_name_the_problem(header: dict, tail: bytes, fragment: str) -> None:
    body, hlen = _body(header, tail)
    with pytest.raises(InvalidInput, match=None) as info:
        decode_infer_request("m", "", body, hlen if tail else None)
    assert fragment in info.value.message


def test_malformed_json_and_bad_header_length() -> None:
    with pytest.raises(InvalidInput, match="failed to parse the request JSON"):
        decode_infer_request("m", "", b'{"inputs": [', None)
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        decode_infer_request("m", "", b"[1, 2]", None)
    with pytest.raises(InvalidInput, match=r"range \(0, 2\), got: 5"):
        decode_infer_request("m", "", b"{}", 5)


def test_raw_request_deduces_shape_from_the_model() -> None:
    data = np.arange(8, dtype=np.float32)
    spec = TensorSpec("x", DataType.FP32, (8,))
    req = decode_raw_request("m", "", data.tobytes(), spec, batched=True).request
    assert req.inputs["x"].shape == (1, 8)
    var = TensorSpec("x", DataType.FP32, (-1,))
    assert decode_raw_request("m", "", data.tobytes(), var, False).request.inputs["x"].shape == (8,)
    text = TensorSpec("t", DataType.BYTES, (1,))
    decoded = decode_raw_request("m", "", b"payload", text, batched=False)
    assert list(decoded.request.inputs["t"]) == [b"payload"] and decoded.binary_default
    with pytest.raises(InvalidInput, match=r"input byte size mismatch .* Expected 32, got 3"):
        decode_raw_request("m", "", b"\0" * 3, spec, batched=False)


# Triton 2.51's answers to the same raw binary requests (python-backend models with these dims).
@pytest.mark.parametrize(
    ("datatype", "dims", "batched", "size", "shape"),
    [
        (DataType.FP32, (4,), False, 16, (4,)),
        (DataType.FP32, (2, 2), True, 16, (1, 2, 2)),
        (DataType.FP32, (2, -1), False, 32, (2, 4)),
        (DataType.FP32, (-1,), False, 0, (0,)),
        (DataType.BYTES, (1,), True, 2, (1, 1)),
        (DataType.BYTES, (1, 1), False, 2, (1, 1)),
        (DataType.BYTES, (1,), True, 0, (1, 1)),
    ],
)
def test_raw_request_shape_is_deduced_as_triton_does(
    datatype: DataType, dims: tuple[int, ...], batched: bool, size: int, shape: tuple[int, ...]
) -> None:
    spec = TensorSpec("IN", datatype, dims)
    request = decode_raw_request("m", "", b"\1" * size, spec, batched).request
    assert request.inputs["IN"].shape == shape


@pytest.mark.parametrize(
    ("datatype", "dims", "batched", "size", "message"),
    [
        (DataType.FP32, (4,), False, 8, "input byte size mismatch for input 'IN' for model "
         "'m'. Expected 16, got 8"),
        (DataType.FP32, (2, 2), True, 32, "Expected 16, got 32"),
        (DataType.FP32, (2, -1), False, 12, "Expected 8, got 12"),
        (DataType.FP32, (-1,), False, 13, "Expected 12, got 13"),
        (DataType.FP32, (-1, -1), False, 16, "The shape of the raw input 'IN' can not be "
         "deduced because there are more than one variable-sized dimension"),
        (DataType.BYTES, (-1,), False, 2, "For BYTE datatype raw input 'IN', the model must "
         "have input shape [1]"),
        (DataType.BYTES, (-1,), True, 2, "must have input shape [1]"),
        (DataType.BYTES, (2,), False, 2, "must have input shape [1]"),
    ],
)  # fmt: skip
def test_raw_request_refused_with_tritons_words(
    datatype: DataType, dims: tuple[int, ...], batched: bool, size: int, message: str
) -> None:
    spec = TensorSpec("IN", datatype, dims)
    with pytest.raises(InvalidInput) as caught:
        decode_raw_request("m", "", b"\1" * size, spec, batched)
    assert caught.value.message.startswith(message) or message in caught.value.message


def test_requested_outputs_asked_twice_are_answered_once_as_first_asked() -> None:
    header = {
        "inputs": [],
        "outputs": [
            {"name": "y", "parameters": {"binary_data": True}},
            {"name": "z"},
            {"name": "y", "parameters": {"binary_data": False}},
        ],
    }
    decoded = decode_infer_request("m", "", json.dumps(header).encode(), None)
    assert [o.name for o in decoded.request.outputs or ()] == ["y", "z"]
    assert decoded.wants_binary("y")


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": ' + _nested(1000) + b"}",
        b'{"inputs": [' + _nested(999) + b"]}",
        b'{"id": ' + _nested(1000) + b', "inputs": []}',
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": ' + _nested(1000) + b"}]}",
        b'{"inputs": [], "outputs": [' + _nested(999) + b"]}",
        b'{"inputs": [{"name": ' + _nested(1000) + b"}]}",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": '
        + _nested(1000)
        + b"}]}",
        b'{"inputs": ' + _nested(100_000) + b"}",
    ],
    ids=["inputs", "entry", "id", "shape", "outputs", "name", "data", "deeper-than-parser"],
)
@pytest.mark.parametrize("parser", ["orjson", "rapidjson"])
def test_deeply_nested_json_is_refused_not_a_recursion_error(
    body: bytes, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parser == "rapidjson":
        monkeypatch.setattr(codec, "_orjson", None)
        monkeypatch.setattr(codec, "_rapidjson", pytest.importorskip("rapidjson"), raising=False)
    with pytest.raises(InvalidInput) as caught:
        decode_infer_request("m", "", body, None)
    assert len(caught.value.message) < 400


def _decode_response(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    if header_length is None:
        return json.loads(body), b""
    return json.loads(body[:header_length]), body[header_length:]


def test_response_binary_and_json_outputs() -> None:
    y = np.arange(6, dtype=np.float16).reshape(2, 3)
    z = np.array([[1, 2]], dtype=np.int32)
    s = np.array([b"ok", "ñ".encode(), b""], dtype=np.object_)
    response = InferenceResponse("m", "1", {"y": y, "z": z, "s": s}, id="r9")
    decoded = DecodedRequest(InferenceRequest("m", {}), False, {"y": True})
    body, hlen = encode_infer_response(response, decoded)
    header, tail = _decode_response(body, hlen)
    assert header["id"] == "r9" and header["model_version"] == "1"
    out = {o["name"]: o for o in header["outputs"]}
    assert out["y"]["parameters"]["binary_data_size"] == y.nbytes and tail == y.tobytes()
    assert out["z"] == {"name": "z", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}
    assert out["s"]["data"] == ["ok", "ñ", ""]


def test_response_all_json_has_no_header_length_and_fp16_json_is_refused() -> None:
    response = InferenceResponse("m", "1", {"z": np.zeros(2, np.int8)})
    body, hlen = encode_infer_response(response, DecodedRequest(InferenceRequest("m", {})))
    assert hlen is None and json.loads(body)["outputs"][0]["data"] == [0, 0]
    half = InferenceResponse("m", "1", {"h": np.zeros(2, np.float16)})
    with pytest.raises(InvalidInput, match="FP16 data via JSON is not supported"):
        encode_infer_response(half, DecodedRequest(InferenceRequest("m", {})))


def test_response_bf16_and_bytes_binary() -> None:
    bf = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    s = np.array([b"\xff\x00", b""], dtype=np.object_)
    response = InferenceResponse("m", "1", {"bf": bf, "s": s})
    body, hlen = encode_infer_response(
        response, DecodedRequest(InferenceRequest("m", {}), binary_default=True)
    )
    header, tail = _decode_response(body, hlen)
    assert [o["datatype"] for o in header["outputs"]] == ["BF16", "BYTES"]
    assert tail[:4] == bf.tobytes()
    assert tail[4:] == struct.pack("<I", 2) + b"\xff\x00" + struct.pack("<I", 0)


def test_status_table_follows_triton() -> None:
    assert http_status(InvalidInput("x")) == 400
    assert http_status(ModelNotFound("x")) == 404
    assert http_status(ModelNotReady("x")) == 503
    assert http_status(Unsupported("x")) == 501
    assert http_status(ModelExecutionError("x")) == 500
    assert http_status(DeadlineExceeded("x")) == 503
    assert http_status(RuntimeError("x")) == 500


def test_decompress_bounds_and_errors() -> None:
    data = b"abc" * 100
    assert decompress(gzip.compress(data), "gzip", 1000) == data
    assert decompress(zlib.compress(data), "deflate", 1000) == data
    with pytest.raises(InvalidInput, match=r"exceeds the limit of 100 bytes \(--max-body-bytes\)"):
        decompress(gzip.compress(data), "gzip", 100)
    with pytest.raises(InvalidInput, match="failed to decompress"):
        decompress(b"not gzip", "gzip", 1000)
    with pytest.raises(InvalidInput, match="truncated"):
        decompress(gzip.compress(data)[:20], "gzip", 1000)
    with pytest.raises(Unsupported, match="'br'"):
        decompress(b"x", "br", 1000)
    assert accepted_encoding("gzip;q=0.5, deflate") == "deflate"
    assert accepted_encoding(None) == "identity"
    assert gzip.decompress(compress(data, "gzip")) == data


@pytest.mark.parametrize(
    ("datatype", "shape", "parameters"),
    [
        ("FP32", [2**62], {"binary_data_size": 0}),  # 2**62 x 4 bytes wraps to 0 in 64 bits
        ("BYTES", [2**32, 2**32], {"binary_data_size": 0}),
        ("BYTES", [2**32, 2**32], None),
    ],
    ids=["fp32-binary", "bytes-binary", "bytes-json"],
)
def test_element_counts_past_64_bits_are_refused(
    datatype: str, shape: list[int], parameters: dict | None
) -> None:
    """Triton 2.51's python backend dies on the first (its stub is "not healthy")."""
    entry: dict = {"name": "x", "datatype": datatype, "shape": shape}
    if parameters is None:
        entry["data"] = []
    else:
        entry["parameters"] = parameters
    header = json.dumps({"inputs": [entry]}).encode()
    span = r"(18446744073709551616|147573952589676412928)"  # 2**64 FP32 bytes, 2**64 objects
    with pytest.raises(InvalidInput, match=f"its dimensions multiply to {span} bytes"):
        decode_infer_request("m", "", header, len(header))


@pytest.mark.parametrize("form", ["binary", "json"])
def test_empty_shapes_numpy_cannot_describe_are_refused(form: str) -> None:
    """The HTTP side of what tests/server/test_grpc_fuzz.py found over gRPC."""
    entry: dict = {"name": "x", "datatype": "FP32", "shape": [0, 2**62]}
    if form == "json":
        entry["data"] = []
    else:
        entry["parameters"] = {"binary_data_size": 0}
    header = json.dumps({"inputs": [entry]}).encode()
    with pytest.raises(InvalidInput, match="its dimensions multiply to 18446744073709551616 bytes"):
        decode_infer_request("m", "", header, len(header))
