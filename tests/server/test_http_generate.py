"""The generate extension's rules (headrace.server.http.generate), without a server.

Expected bodies are the bytes NVIDIA Triton 2.51 sent for the same requests
(``../shared/tools/tritonserver``); the end-to-end comparison is
tests/integration/test_generate_vs_triton.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from headrace.errors import InternalError, InvalidInput
from headrace.server.core import StreamedResponse
from headrace.server.http.generate import (
    EXACTLY_ONE_RESPONSE,
    GenerateChunk,
    decode_generate_request,
    encode_generate_response,
    generate_chunks,
    single_response,
    sse_event,
)
from headrace.server.reports import ModelMetadata
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

D = DataType


def _meta(*inputs: TensorSpec, batched: bool = False, name: str = "m") -> ModelMetadata:
    return ModelMetadata(name, ("1",), "python", inputs, (), batched)


def _decode(body: Any, *inputs: TensorSpec, batched: bool = False) -> InferenceRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_generate_request("m", "", raw, _meta(*inputs, batched=batched))


# --- requests ------------------------------------------------------------------------------


def test_inputs_by_name_and_every_other_key_a_parameter() -> None:
    request = _decode(
        {"X": 7, "temperature": 0.5, "flag": True, "name": "abc", "count": 3, "triton_x": 1},
        TensorSpec("X", D.INT64, (1,)),
    )
    assert request.model_name == "m" and request.id == ""
    np.testing.assert_array_equal(request.inputs["X"], np.array([7], np.int64))
    assert request.inputs["X"].dtype == np.int64
    # Triton passes even its infer keywords through as plain parameters here.
    assert dict(request.parameters) == {
        "temperature": 0.5,
        "flag": True,
        "name": "abc",
        "count": 3,
        "triton_x": 1,
    }
    assert request.sequence_id == 0 and request.priority == 0 and request.outputs is None


def test_parameters_object_maps_like_the_top_level() -> None:
    spec = TensorSpec("X", D.INT64, (1,))
    request = _decode({"parameters": {"X": 7, "name": "abc"}}, spec)
    assert list(request.inputs) == ["X"] and dict(request.parameters) == {"name": "abc"}
    request = _decode({"X": 7, "parameters": {}}, spec)
    assert dict(request.parameters) == {}


def test_a_string_id_is_the_request_id_and_a_parameter() -> None:
    spec = TensorSpec("X", D.INT64, (1,))
    request = _decode({"X": 7, "id": "abc"}, spec)
    assert request.id == "abc" and dict(request.parameters) == {"id": "abc"}
    request = _decode({"X": 7, "id": "q", "parameters": {"id": "r"}}, spec)
    assert request.id == "q" and dict(request.parameters) == {"id": "r"}
    with pytest.raises(InvalidInput, match="Unable to parse 'id': expected a string, got 5"):
        _decode({"X": 7, "id": 5}, spec)


@pytest.mark.parametrize(
    ("dims", "batched", "value", "shape"),
    [
        ((1,), False, 7, (1,)),
        ((1,), False, [7], (1,)),
        ((1,), False, [[7]], (1,)),  # the top-level count fits; nesting is only read
        ((4,), False, [1, 2, 3, 4], (4,)),
        ((-1,), False, [], (0,)),
        ((2, -1), False, [1, 2, 3, 4], (2, 2)),
        ((-1,), True, [1, 2, 3], (1, 3)),  # the innermost variable dim takes the count
        ((1,), True, 5, (1, 1)),
        ((-1, -1), False, [1, 2], (1, 2)),
    ],
)
def test_values_fill_the_metadata_shape(
    dims: tuple[int, ...], batched: bool, value: Any, shape: tuple[int, ...]
) -> None:
    request = _decode({"X": value}, TensorSpec("X", D.INT32, dims), batched=batched)
    assert request.inputs["X"].shape == shape
    assert request.inputs["X"].dtype == np.int32


@pytest.mark.parametrize(
    ("dims", "value", "message"),
    [
        ((1,), [7, 8], "The schema can not convert input 'X' to tensor with proper shape"),
        ((4,), [1, 2, 3], "3 value\\(s\\) do not fill shape \\[4\\] of model 'm'"),
        ((4,), [[1, 2, 3, 4]], "proper shape"),
        ((4,), [], "proper shape"),
        ((2, -1), [1, 2, 3], "proper shape"),
        ((2, -1), [[1, 2], [3, 4]], "Shape does not match true shape of 'data' field"),
        ((-1,), [[], []], "0 value\\(s\\) for shape \\[2\\]"),
    ],
)
def test_values_that_cannot_fill_the_shape(dims: tuple[int, ...], value: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _decode({"X": value}, TensorSpec("X", D.INT32, dims))


def test_each_type_reads_its_own_json_kind() -> None:
    specs = [TensorSpec(n, t, (-1,)) for n, t in (("B", D.BOOL), ("U8", D.UINT8))]
    specs += [TensorSpec(n, t, (-1,)) for n, t in (("I8", D.INT8), ("F", D.FP32))]
    specs += [TensorSpec("D", D.FP64, (-1,)), TensorSpec("S", D.BYTES, (-1,))]
    body = {
        "B": [True, False],
        "U8": [1, 255, 300],
        "I8": [-1, 2],
        "F": [0.1, 1],
        "D": 2,
        "S": ["a", "bé"],
    }
    inputs = _decode(body, *specs).inputs
    np.testing.assert_array_equal(inputs["B"], [True, False])
    np.testing.assert_array_equal(inputs["U8"], np.array([1, 255, 44], np.uint8))  # wraps
    np.testing.assert_array_equal(inputs["I8"], np.array([-1, 2], np.int8))
    assert inputs["F"].dtype == np.float32 and inputs["D"].dtype == np.float64
    assert list(inputs["S"]) == [b"a", "bé".encode()]
    assert inputs["S"].dtype == object


@pytest.mark.parametrize(
    ("datatype", "value", "words"),
    [
        (D.BOOL, 1, "non-boolean as boolean; BOOL input got 1"),
        (D.UINT8, -1, "non-unsigned-integer as unsigned-integer; UINT8 input got -1"),
        (D.UINT8, 1.5, "non-unsigned-integer as unsigned-integer"),
        (D.INT64, "7", 'non-signed-integer as signed-integer; INT64 input got "7"'),
        (D.INT64, True, "non-signed-integer as signed-integer"),
        (D.INT64, None, "non-signed-integer as signed-integer; INT64 input got null"),
        (D.FP32, "x", "non-number as double"),
        (D.FP32, [1, True], "non-number as double; FP32 input got true"),
        (D.BYTES, 5, "non-string as string"),
        (D.BYTES, {"USER": "hi"}, 'non-string as string; BYTES input got {"USER": "hi"}'),
    ],
)
def test_values_of_the_wrong_kind_are_named(datatype: DataType, value: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _decode({"X": value}, TensorSpec("X", datatype, (-1,)))
    assert info.value.message.startswith("Unable to parse 'data' of input 'X': attempt to")
    assert words in info.value.message


def test_half_precision_and_out_of_range_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="receiving FP16 data via JSON is not supported"):
        _decode({"X": [1.0]}, TensorSpec("X", D.FP16, (-1,)))
    with pytest.raises(InvalidInput, match="out of range for INT64: 18446744073709551616"):
        _decode({"X": 2**64}, TensorSpec("X", D.INT64, (1,)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"X": 7, "X": 8}', "input 'X' already exists in request"),
        (
            b'{"X": 7, "parameters": {"X": 8}}',
            "Converting keyword: 'parameters': input 'X' already exists in request",
        ),
        (b'{"X": 7, "nested": {"a": 1}}', "parameter 'nested' has invalid type"),
        (b'{"X": 7, "a": null}', "parameter 'a' has invalid type"),
        (b'{"X": 7, "a": [1]}', "parameter 'a' has invalid type"),
        (b'{"X": 7, "parameters": 3}', "Expected JSON object for keyword: 'parameters', got 3"),
        (
            b'{"X": 7, "parameters": {"parameters": {"b": 2}}}',
            "Converting keyword: 'parameters': parameter 'parameters' has invalid type",
        ),
        (b"[1]", "the request JSON must be an object, got \\[1\\]"),
        (b"not json", "failed to parse the request JSON"),
        (b"", "failed to parse the request JSON"),
        (b'{"X": NaN}', "failed to parse the request JSON: NaN is not JSON"),
        (b'{"X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "failed to parse"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _decode(body, TensorSpec("X", D.INT64, (-1,)))


def test_an_input_named_parameters_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Keyword 'parameters' for nested schema"):
        _decode({"parameters": {}}, TensorSpec("parameters", D.INT64, (1,)))


def test_repeated_keys_read_their_first_value_as_in_triton() -> None:
    spec = TensorSpec("X", D.INT64, (1,))
    assert dict(_decode(b'{"X": 1, "a": 1, "a": 2}', spec).parameters) == {"a": 1}
    request = _decode(b'{"X": 1, "id": "q", "id": "r", "parameters": {"a": 1, "a": 2}}', spec)
    assert request.id == "q" and dict(request.parameters) == {"id": "q", "a": 1}
    request = _decode(b'{"X": 1, "parameters": {"a": 1}, "parameters": {"b": 2}}', spec)
    assert dict(request.parameters) == {"a": 1}
    with pytest.raises(InvalidInput, match="'parameters': input 'X' already exists"):
        _decode(b'{"parameters": {"X": 7}, "parameters": {"b": 2}}', spec)


# --- responses -----------------------------------------------------------------------------


def test_response_is_flat_json_with_sorted_keys() -> None:
    text = np.array([b'{"a": 1}'], dtype=object)
    response = InferenceResponse("request_meta", "1", {"META": text}, id="abc")
    assert encode_generate_response(response) == (
        b'{"META":"{\\"a\\": 1}","id":"abc","model_name":"request_meta","model_version":"1"}'
    )


def test_one_element_is_a_scalar_and_more_a_flat_list() -> None:
    outputs = {
        "V": np.array([[1.0, 2.0, 3.0]], np.float32),
        "T": np.array([[b"hi"]], dtype=object),
        "S": np.array([[11, 13]], np.int64),
        "E": np.zeros((0,), np.int32),
        "F": np.array([0.1], np.float32),
    }
    body = encode_generate_response(InferenceResponse("batched", "1", outputs))
    assert body == (
        b'{"E":[],"F":0.10000000149011612,"S":[11,13],"T":"hi","V":[1.0,2.0,3.0],'
        b'"model_name":"batched","model_version":"1"}'
    )


def test_response_parameters_join_the_fields_and_names_clash_as_in_triton() -> None:
    response = InferenceResponse(
        "m",
        "1",
        {"model_name": np.array([5], np.int32), "Y": np.array([1], np.int32)},
        parameters={"zeta": 1, "alpha": "a", "Beta": True, "d": 0.5, "Y": "param"},
    )
    assert json.loads(encode_generate_response(response)) == {
        "Beta": True,
        "Y": "param",
        "alpha": "a",
        "d": 0.5,
        "model_name": "m",
        "model_version": "1",
        "zeta": 1,
    }
    bad = InferenceResponse("m", "1", {}, parameters={"blob": b"\x00"})
    with pytest.raises(InvalidInput, match="Response parameter 'blob'"):
        encode_generate_response(bad)


def test_outputs_json_cannot_carry_are_refused() -> None:
    half = InferenceResponse("m", "1", {"H": np.ones(2, np.float16)})
    with pytest.raises(InvalidInput, match="FP16 data via JSON is not supported"):
        encode_generate_response(half)


# --- the answer: chunks, one response, events ---------------------------------------------


def _ok(value: int, final: bool = False) -> StreamedResponse:
    return StreamedResponse(InferenceResponse("c", "1", {"I": np.array([value], np.int32)}), final)


def _err(message: str, final: bool = False) -> StreamedResponse:
    return StreamedResponse(None, final, InternalError(message))


_FINAL = StreamedResponse(None, True)


async def _from(items: list[StreamedResponse]) -> AsyncIterator[StreamedResponse]:
    for item in items:
        yield item


def _chunks(items: list[StreamedResponse]) -> list[GenerateChunk]:
    async def collect() -> list[GenerateChunk]:
        return [chunk async for chunk in generate_chunks(_from(items))]

    return asyncio.run(collect())


def _single(items: list[StreamedResponse]) -> tuple[int, bytes]:
    return asyncio.run(single_response(generate_chunks(_from(items))))


_ONE = b'{"error":"' + EXACTLY_ONE_RESPONSE.encode() + b'"}'


def test_chunks_follow_the_responses_and_skip_bare_final_flags() -> None:
    chunks = _chunks([_ok(0), _err("failed after 1"), _FINAL])
    assert chunks == [
        GenerateChunk(b'{"I":0,"model_name":"c","model_version":"1"}', error=False),
        GenerateChunk(b'{"error":"failed after 1"}', error=True),
    ]
    assert _chunks([_FINAL]) == []
    assert [sse_event(c) for c in _chunks([_ok(1, final=True)])] == [
        b'data: {"I":1,"model_name":"c","model_version":"1"}\n\n'
    ]


def test_a_response_that_cannot_be_encoded_becomes_an_error_chunk() -> None:
    half = StreamedResponse(InferenceResponse("c", "1", {"H": np.ones(1, np.float16)}), True)
    [chunk] = _chunks([half])
    assert chunk.error and b"FP16 data via JSON is not supported" in chunk.body


@pytest.mark.parametrize(
    ("items", "status", "body"),
    [
        ([_ok(0, final=True)], 200, b'{"I":0,"model_name":"c","model_version":"1"}'),
        ([_ok(0), _FINAL], 200, b'{"I":0,"model_name":"c","model_version":"1"}'),
        ([_err("negative input -1"), _FINAL], 400, b'{"error":"negative input -1"}'),
        ([_err("boom", final=True)], 400, b'{"error":"boom"}'),
        ([_FINAL], 200, _ONE),  # no response at all
        ([_ok(0), _ok(1), _ok(2), _FINAL], 200, _ONE),
        ([_ok(0), _err("failed after 1"), _FINAL], 200, _ONE),  # status of the first
        ([_err("first"), _ok(1), _FINAL], 400, _ONE),
    ],
)
def test_generate_wants_exactly_one_response(
    items: list[StreamedResponse], status: int, body: bytes
) -> None:
    assert _single(items) == (status, body)


def test_closing_the_chunks_closes_the_responses() -> None:
    closed: list[str] = []

    async def endless() -> AsyncIterator[StreamedResponse]:
        try:
            while True:
                yield _ok(0)
        finally:
            closed.append("closed")

    async def take_one() -> None:
        chunks = generate_chunks(endless())
        await anext(chunks)
        await chunks.aclose()

    asyncio.run(take_one())
    assert closed == ["closed"]
