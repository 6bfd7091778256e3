"""The pb_utils shim on its own: data types, tensors, errors, ModelConfig, unsupported features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headrace.backends import triton_python_backend_utils as pb_utils
from headrace.errors import Unsupported


def test_type_names_map_to_numpy_scalar_types() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP32") is np.float32
    assert pb_utils.triton_string_to_numpy("TYPE_BOOL") is np.bool_
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.triton_to_numpy_type(11) is np.float32
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    assert pb_utils.numpy_to_triton_type(np.int64) == 9
    assert pb_utils.numpy_to_triton_type(np.object_) == 13
    with pytest.raises(pb_utils.TritonModelException, match="TYPE_NOPE"):
        pb_utils.triton_string_to_numpy("TYPE_NOPE")


def test_byte_tensor_round_trip() -> None:
    data = np.array([b"ab", b"", b"xyz"], dtype=np.object_)
    encoded = pb_utils.serialize_byte_tensor(data)
    assert encoded is not None and encoded.dtype == np.uint8
    assert list(pb_utils.deserialize_bytes_tensor(encoded)) == [b"ab", b"", b"xyz"]
    assert pb_utils.serialize_byte_tensor(np.array([], dtype=np.object_)) is None


def test_tensor_accessors_and_dtype_rules() -> None:
    tensor = pb_utils.Tensor("X", np.zeros((2, 3), dtype=np.float16))
    assert tensor.name() == "X" and tensor.shape() == [2, 3] and tensor.is_cpu()
    assert tensor.triton_dtype() == 10
    fixed = pb_utils.Tensor("S", np.array([b"a\x00", b"b"], dtype=np.bytes_))
    assert fixed.as_numpy().dtype == np.object_
    with pytest.raises(pb_utils.TritonModelException, match=r"dtype <U4.*np\.object_"):
        pb_utils.Tensor("U", np.array(["text"]))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, np.float32),
        np.zeros(3, ">f4"),  # another byte order: the same type
        np.zeros((2, 2), np.int64),
        np.array([True, False]),
        np.array([b"a", b"bc"], dtype=np.object_),
    ],
)
def test_a_tensor_made_twice_is_made_alike(array: np.ndarray) -> None:
    """The second tensor of a numeric dtype takes a shortcut; it must give what the first got
    (and an object array is checked each time)."""
    first, second = pb_utils.Tensor("X", array), pb_utils.Tensor("X", array)
    assert first.triton_dtype() == second.triton_dtype()
    assert first.triton_dtype() == pb_utils.numpy_to_triton_type(array.dtype)
    assert second.as_numpy() is array and second.name() == "X"
    if array.dtype == np.object_:
        assert pb_utils.Tensor("X", array).as_numpy().dtype == np.object_


def test_an_object_array_after_numeric_ones_is_still_checked() -> None:
    pb_utils.Tensor("N", np.zeros(2, np.float32))
    with pytest.raises(pb_utils.TritonModelException, match="numpy dtype"):
        pb_utils.Tensor("U", np.array(["text"]))


def test_tensor_dlpack_round_trip() -> None:
    source = pb_utils.Tensor("A", np.arange(6, dtype=np.int32).reshape(2, 3))
    again = pb_utils.Tensor.from_dlpack("B", source.as_numpy())
    np.testing.assert_array_equal(again.as_numpy(), source.as_numpy())
    torch = pytest.importorskip("torch")
    capsule = torch.utils.dlpack.to_dlpack(torch.ones(3))
    np.testing.assert_array_equal(pb_utils.Tensor.from_dlpack("C", capsule).as_numpy(), [1, 1, 1])


def test_triton_error_codes_and_response() -> None:
    error = pb_utils.TritonError("bad", pb_utils.TritonError.NOT_FOUND)
    assert error.message() == "bad" and error.code() == pb_utils.TritonError.NOT_FOUND
    assert pb_utils.TritonError("x").code() == pb_utils.TritonError.INTERNAL
    response = pb_utils.InferenceResponse(error=error)
    assert response.has_error() and response.output_tensors() == []
    with pytest.raises(pb_utils.TritonModelException, match="must be a list"):
        pb_utils.InferenceResponse(output_tensors="nope")  # type: ignore[arg-type]


def test_config_lookups() -> None:
    config = {"input": [{"name": "A", "data_type": "TYPE_FP32"}], "output": []}
    assert pb_utils.get_input_config_by_name(config, "A") == config["input"][0]
    assert pb_utils.get_input_config_by_name(config, "B") is None
    assert pb_utils.get_output_config_by_name(config, "A") is None
    assert not pb_utils.using_decoupled_model_transaction_policy(config)
    assert pb_utils.using_decoupled_model_transaction_policy(
        {"model_transaction_policy": {"decoupled": True}}
    )


def test_bls_and_metrics_are_unsupported() -> None:
    request = pb_utils.InferenceRequest(model_name="other", requested_output_names=["Y"], inputs=[])
    with pytest.raises(Unsupported, match=r"BLS.*'other'"):
        request.exec()
    with pytest.raises(pb_utils.TritonModelException, match="no response sender"):
        request.get_response_sender()  # a request a model built itself has nobody to answer
    assert not request.is_cancelled()
    with pytest.raises(Unsupported, match="'latency'"):
        pb_utils.MetricFamily("latency", description="", kind=pb_utils.MetricFamily.COUNTER)
    with pytest.raises(Unsupported, match="'other'"):
        pb_utils.load_model("other")


def test_logger_routes_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="headrace.python_model"):
        pb_utils.Logger.log_info("hello")
        pb_utils.Logger.log_verbose("details")
        pb_utils.Logger.log("careful", pb_utils.LogLevel.WARNING)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "hello"),
        ("DEBUG", "details"),
        ("WARNING", "careful"),
    ]


def model_config(**fields: object) -> pb_utils.ModelConfig:
    return pb_utils.ModelConfig(json.dumps({"name": "m", **fields}))


def test_model_config_adds_and_merges_tensors() -> None:
    config = model_config(input=[{"name": "A", "data_type": "TYPE_INVALID", "dims": []}])
    config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [2]})
    config.add_input({"name": "B", "data_type": "TYPE_INT8", "dims": [-1], "optional": True})
    config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
    config.set_max_batch_size(4)
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": False})
    data = config.as_dict()
    assert data["input"] == [
        {"name": "A", "data_type": "TYPE_FP32", "dims": [2]},
        {"name": "B", "data_type": "TYPE_INT8", "dims": [-1], "optional": True},
    ]
    assert data["output"] == [{"name": "Y", "data_type": "TYPE_FP32", "dims": [2]}]
    assert data["max_batch_size"] == 4 and data["dynamic_batching"] == {}
    assert data["model_transaction_policy"] == {"decoupled": False}


@pytest.mark.parametrize(
    ("start", "change", "needle"),
    [
        (
            {"input": [{"name": "A", "data_type": "TYPE_INT32", "dims": [2]}]},
            lambda c: c.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [2]}),
            "TYPE_INT32",
        ),
        (
            {"output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [5]}]},
            lambda c: c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}),
            "[5]",
        ),
        ({}, lambda c: c.add_input({"name": "A", "data_type": "TYPE_FP32"}), "lacks 'dims'"),
        (
            {},
            lambda c: c.add_output(
                {"name": "Y", "data_type": "TYPE_FP32", "dims": [1], "optional": True}
            ),
            "'optional'",
        ),
        ({"max_batch_size": 16}, lambda c: c.set_max_batch_size(8), "max_batch_size 16"),
        ({"sequence_batching": {}}, lambda c: c.set_dynamic_batching(), "sequence_batching"),
        (
            {"model_transaction_policy": {"decoupled": True}},
            lambda c: c.set_model_transaction_policy({"decoupled": False}),
            "decoupled=True",
        ),
        ({}, lambda c: c.set_model_transaction_policy({"fast": True}), "'fast'"),
    ],
)
def test_model_config_rejects_contradictions(start: dict, change, needle: str) -> None:
    config = model_config(**start)
    with pytest.raises(ValueError, match="model 'm'") as info:
        change(config)
    assert needle in str(info.value)
