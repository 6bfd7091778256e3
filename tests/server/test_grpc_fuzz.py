"""Property-based fuzzing of the gRPC door (issue 13): every ``ModelInferRequest`` a client can
send (raw contents vs shapes vs datatypes, typed contents, parameters of every type, string
ids, stray bytes) gets a status with a message or a correct answer, no exception escapes, and
the server keeps serving.

Also a property of the decoder's memo of request headers: a request decoded through a
remembered header decodes to what the full decoding gives, or fails with the same words.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")

import grpc
import tritonclient.grpc as grpcclient
from fuzz_wire import (
    FUZZ,
    FUZZ_SERVED,
    MODEL_FAULT,
    FuzzServed,
    grpc_infer_request,
)
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from headrace.errors import InvalidInput
from headrace.server.grpc.codec import decode_infer_request, split_infer_request
from headrace.server.grpc.decoder import InferRequestDecoder
from headrace.types import InferenceRequest

_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
"""What a bad request may be answered with: never INTERNAL or UNKNOWN (an escaped exception)."""


@pytest.fixture(scope="module")
def served() -> Iterator[FuzzServed]:
    server = FuzzServed("aiohttp")
    yield server
    server.close()


@pytest.fixture(scope="module")
def channel(served: FuzzServed) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.grpc.url) as opened:
        yield opened


def _outcome(decode: Any) -> tuple[str, Any]:
    try:
        request: InferenceRequest = decode()
    except InvalidInput as exc:
        return "refused", exc.message
    inputs = {k: (v.dtype.str, v.shape, v.tolist()) for k, v in request.inputs.items()}
    return "decoded", repr((request.with_inputs({}), inputs))  # repr: NaN equals NaN


@FUZZ
@given(data=grpc_infer_request())
def test_remembered_headers_decode_as_the_full_decoding(data: bytes) -> None:
    decoder = InferRequestDecoder(None)

    def full() -> InferenceRequest:
        return decode_infer_request(*split_infer_request(data))

    expected = _outcome(full)
    assert _outcome(lambda: decoder.decode(data)) == expected
    assert _outcome(lambda: decoder.decode(data)) == expected  # the header's memo, if kept


@FUZZ_SERVED
@given(data=grpc_infer_request())
def test_server_answers_every_request_and_keeps_serving(
    served: FuzzServed, channel: grpc.Channel, data: bytes
) -> None:
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=None,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )
    try:
        response = infer(data, timeout=30)
    except grpc.RpcError as exc:
        fault = exc.code() is grpc.StatusCode.INTERNAL and MODEL_FAULT in str(exc.details())
        assert exc.code() in _REFUSALS or fault, (exc.code(), exc.details(), data)
        assert exc.details(), data
    else:
        assert len(response.raw_output_contents) == len(response.outputs)
    with grpcclient.InferenceServerClient(served.grpc.url) as client:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("scale", [tensor]).as_numpy("y"), 2 * x)


@FUZZ_SERVED
@given(rows=st.integers(1, 8), typed=st.booleans(), values=st.data())
def test_valid_requests_get_correct_answers(
    served: FuzzServed, channel: grpc.Channel, rows: int, typed: bool, values: Any
) -> None:
    floats = st.floats(-1e6, 1e6, width=32)
    x = np.array(values.draw(st.lists(floats, min_size=4 * rows, max_size=4 * rows)), np.float32)
    x = x.reshape(rows, 4)
    request = service_pb2.ModelInferRequest(model_name="scale", id=values.draw(st.text()))
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    if typed:
        tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    else:
        request.raw_input_contents.append(x.tobytes())
    response = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )(request, timeout=30)
    assert response.id == request.id
    y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(rows, 4)
    np.testing.assert_array_equal(y, 2 * x)
