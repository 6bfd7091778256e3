"""Request validation: each mistake gets an InvalidInput naming the value and the expectation."""

from __future__ import annotations

import numpy as np
import pytest

from headrace.errors import InvalidInput
from headrace.server.validation import Signature, validate_request
from headrace.types import DataType, InferenceRequest, RequestedOutput, TensorSpec

MLP = Signature.build(
    "mlp",
    [
        TensorSpec("x", DataType.FP32, (64,)),
        TensorSpec("mask", DataType.BOOL, (-1,), optional=True),
    ],
    [TensorSpec("p", DataType.FP32, (1,)), TensorSpec("h", DataType.FP32, (64,))],
    max_batch_size=8,
)
FLAT = Signature.build(
    "flat",
    [TensorSpec("s", DataType.BYTES, (2,)), TensorSpec("n", DataType.INT64, (-1, 3))],
    [TensorSpec("out", DataType.INT64, (1,))],
    max_batch_size=0,
)


def _request(
    sig_model: str = "mlp", outputs: tuple[str, ...] | None = None, **inputs: np.ndarray
) -> InferenceRequest:
    requested = None if outputs is None else tuple(RequestedOutput(o) for o in outputs)
    return InferenceRequest(sig_model, inputs, outputs=requested)


def x(rows: int, cols: int = 64, dtype: type = np.float32) -> np.ndarray:
    return np.zeros((rows, cols), dtype=dtype)


TAG = "[request id: <id_unknown>] "
NOTE = (
    " NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to "
    "be prepended to each input shape. If you want to specify the full shape including the batch "
    "dim in your input dims config, try setting max_batch_size to zero. See the model "
    "configuration docs for more info on max_batch_size."
)
"""Triton 2.51's words (docs/errors.md): the request id prefix and the note on batching."""


def test_valid_requests_pass() -> None:
    validate_request(_request(x=x(3)), MLP)
    validate_request(_request(x=x(8), mask=np.ones((8, 5), bool), outputs=("h",)), MLP)
    strings = np.array([b"a", b"b"], dtype=object)
    validate_request(_request("flat", s=strings, n=np.zeros((7, 3), np.int64)), FLAT)


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (
            {"x": x(3, 5)},
            None,
            f"{TAG}unexpected shape for input 'x' for model 'mlp'. Expected [-1,64], got [3,5].{NOTE}",
        ),
        (
            {"x": np.zeros(64, np.float32)},
            None,
            f"{TAG}unexpected shape for input 'x' for model 'mlp'. Expected [-1,64], got [64].{NOTE}",
        ),
        (
            {"x": x(2, dtype=np.float64)},
            None,
            f"{TAG}inference input 'x' data-type is 'FP64', but model 'mlp' expects 'FP32'",
        ),
        (
            {},
            None,
            f"{TAG}expected number of inputs between 1 and 2 but got 0 inputs for model 'mlp'. "
            "Got input(s) [], but missing required input(s) ['x']. "
            "Please provide all required input(s).",
        ),
        (
            {"x": x(2), "y": x(2)},
            None,
            "unexpected inference input 'y' for model 'mlp'; the model's inputs are ['x','mask']",
        ),
        ({"x": x(0)}, None, "input 'x' has batch size 0, model 'mlp' needs at least 1"),
        (
            {"x": x(9)},
            None,
            f"{TAG}inference request batch-size must be <= 8 for 'mlp'; input 'x' has 9",
        ),
        (
            {"x": x(2), "mask": np.ones((3, 1), bool)},
            None,
            "inputs of model 'mlp' have differing batch sizes: 'x' has 2, 'mask' has 3",
        ),
        (
            {"x": x(2)},
            ("q",),
            "unexpected inference output 'q' for model 'mlp'; the model's outputs are ['p','h']",
        ),
    ],
)
def test_invalid_requests_name_the_problem(
    inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_request(_request(outputs=outputs, **inputs), MLP)
    assert info.value.message == message


def test_unbatched_model_checks_full_shape_and_bytes_dtype() -> None:
    with pytest.raises(
        InvalidInput,
        match=r"unexpected shape for input 's' for model 'flat'. Expected \[2\], got \[1,2\]\.$",
    ):
        validate_request(
            _request(
                "flat", s=np.array([[b"a", b"b"]], dtype=object), n=np.zeros((1, 3), np.int64)
            ),
            FLAT,
        )
    with pytest.raises(
        InvalidInput,
        match="inference input 's' data-type is 'INT32', but model 'flat' expects 'BYTES'",
    ):
        validate_request(
            _request("flat", s=np.zeros(2, np.int32), n=np.zeros((1, 3), np.int64)), FLAT
        )


def test_non_array_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="is a list, not a numpy array"):
        validate_request(InferenceRequest("mlp", {"x": [[0.0] * 64]}), MLP)  # type: ignore[dict-item]


def test_inputs_a_sequence_batcher_fills_are_not_asked_of_clients_nor_taken() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(
        """
        name: "acc" max_batch_size: 4
        input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] },
                { name: "START" data_type: TYPE_INT32 dims: [ 1 ] },
                { name: "ACC_IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        sequence_batching {
          control_input [ { name: "START"
                            control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] } ] } ]
          state [ { input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_INT32 dims: [1] } ]
        }
        """,
        model_config_pb2.ModelConfig(),
    )
    signature = Signature.for_config("acc", config)
    assert set(signature.inputs) == {"INPUT"} and signature.required == {"INPUT"}
    one = np.zeros((1, 1), np.int32)
    validate_request(InferenceRequest("acc", {"INPUT": one}), signature)
    for name in ("START", "ACC_IN"):
        with pytest.raises(InvalidInput, match=f"input '{name}' .* the server fills"):
            validate_request(InferenceRequest("acc", {"INPUT": one, name: one}), signature)
    plain = Signature.for_config("mlp", model_config_pb2.ModelConfig(name="mlp"))
    assert plain.server_filled == frozenset()


def test_request_id_tags_the_words_as_triton_does() -> None:
    request = InferenceRequest("mlp", {"x": x(2, dtype=np.float64)}, id="req-7")
    with pytest.raises(InvalidInput) as info:
        validate_request(request, MLP)
    assert info.value.message.startswith("[request id: req-7] inference input 'x' data-type")


def test_too_many_inputs_name_the_unexpected_one_after_triton_words() -> None:
    request = _request(x=x(2), mask=np.ones((2, 5), bool), y=x(2))
    with pytest.raises(InvalidInput) as info:
        validate_request(request, MLP)
    assert info.value.message == (
        f"{TAG}expected number of inputs between 1 and 2 but got 3 inputs for model 'mlp'. "
        "Got input(s) ['x','mask','y'], but unexpected input(s) ['y']; the model's inputs are "
        "['x','mask']"
    )
