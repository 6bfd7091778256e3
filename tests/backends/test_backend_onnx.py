"""onnxruntime backend: parity with the torch module, autocomplete, and load errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from fixtures_models import MLP, AddSub, context_for, model_config
from headrace.backends.onnx import OnnxRuntimeBackend
from headrace.backends.signature import DEFAULT_MAX_BATCH_SIZE, tensor_specs
from headrace.errors import InvalidConfig, ModelExecutionError
from headrace.repository.export import export_onnx
from headrace.types import DataType, TensorSpec


@pytest.fixture
def mlp_version(tmp_path):
    module = MLP().eval()
    version_dir = tmp_path / "mlp" / "1"
    version_dir.mkdir(parents=True)
    exported = export_onnx(
        module, str(version_dir / "model.onnx"), input_shapes={"x": (None, 64)}, output_names=["y"]
    )
    return module, version_dir, exported


@pytest.mark.parametrize("batch", [1, 7])
def test_outputs_match_the_torch_module(mlp_version, batch):
    module, version_dir, exported = mlp_version
    config = model_config("mlp", exported, backend="onnxruntime")
    backend = OnnxRuntimeBackend(context_for(config, version_dir))
    x = np.random.default_rng(batch).standard_normal((batch, 64), dtype=np.float32)
    out = backend.execute({"x": x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert out["y"].shape == (batch, 1)
    np.testing.assert_allclose(out["y"], want, atol=1e-5)


def test_two_inputs_two_outputs_and_dtype_cast(tmp_path):
    version_dir = tmp_path / "addsub" / "1"
    version_dir.mkdir(parents=True)
    exported = export_onnx(
        AddSub(),
        str(version_dir / "model.onnx"),
        input_shapes={"a": (None, 4), "b": (None, 4)},
        output_names=["sum", "diff"],
    )
    config = model_config("addsub", exported, platform="onnxruntime_onnx")
    config.parameters["intra_op_thread_count"].string_value = "1"
    backend = OnnxRuntimeBackend(context_for(config, version_dir))
    a = np.arange(28, dtype=np.float64).reshape(7, 4)  # cast to the graph's float32
    b = np.ones((7, 4), dtype=np.float32)
    out = backend.execute({"a": a, "b": b})
    assert out["sum"].dtype == np.float32
    np.testing.assert_allclose(out["sum"], a + 1)
    np.testing.assert_allclose(out["diff"], a - 1)


def test_autocomplete_fills_tensors_and_max_batch_size(mlp_version):
    _, version_dir, _ = mlp_version
    config = model_config_pb2.ModelConfig(name="mlp", backend="onnxruntime")
    OnnxRuntimeBackend.autocomplete(config, str(version_dir))
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE == 4
    assert tensor_specs(config.input) == [TensorSpec("x", DataType.FP32, (64,))]
    assert tensor_specs(config.output) == [TensorSpec("y", DataType.FP32, (1,))]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"


def test_autocomplete_keeps_what_the_config_says(mlp_version):
    _, version_dir, _ = mlp_version
    config = model_config_pb2.ModelConfig(name="mlp", max_batch_size=64)
    config.sequence_batching.SetInParent()
    tensor = config.input.add()
    tensor.name = "x"
    OnnxRuntimeBackend.autocomplete(config, str(version_dir))
    assert config.max_batch_size == 64
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    assert tensor_specs(config.input) == [TensorSpec("x", DataType.FP32, (64,))]


def test_autocomplete_of_a_fixed_shape_model_does_not_batch(tmp_path):
    version_dir = tmp_path / "fixed" / "1"
    version_dir.mkdir(parents=True)
    export_onnx(
        MLP(), str(version_dir / "model.onnx"), input_shapes={"x": (3, 64)}, output_names=["y"]
    )
    config = model_config_pb2.ModelConfig(name="fixed")
    OnnxRuntimeBackend.autocomplete(config, str(version_dir))
    assert config.max_batch_size == 0
    assert tensor_specs(config.input) == [TensorSpec("x", DataType.FP32, (3, 64))]
    assert tensor_specs(config.output) == [TensorSpec("y", DataType.FP32, (3, 1))]
    assert config.WhichOneof("scheduling_choice") is None
    config.max_batch_size = 8
    with pytest.raises(InvalidConfig, match=r"max_batch_size is 8 but tensors \['x', 'y'\]"):
        OnnxRuntimeBackend.autocomplete(config, str(version_dir))


def test_config_with_full_dims_keeps_a_dynamic_model_unbatched(mlp_version):
    _, version_dir, _ = mlp_version
    config = model_config_pb2.ModelConfig(name="mlp")
    tensor = config.input.add()
    tensor.name = "x"
    tensor.dims.extend([-1, 64])
    OnnxRuntimeBackend.autocomplete(config, str(version_dir))
    assert config.max_batch_size == 0
    assert tensor_specs(config.output) == [TensorSpec("y", DataType.FP32, (-1, 1))]


def test_missing_file_and_unknown_output_are_config_errors(mlp_version, tmp_path):
    _, version_dir, exported = mlp_version
    config = model_config("mlp", exported, backend="onnxruntime")
    with pytest.raises(InvalidConfig, match="no ONNX file"):
        OnnxRuntimeBackend(context_for(config, tmp_path))
    config.output[0].name = "nope"
    with pytest.raises(InvalidConfig, match=r"outputs \['nope'\] are not in the ONNX graph"):
        OnnxRuntimeBackend(context_for(config, version_dir))


def test_wrong_shape_fails_the_batch(mlp_version):
    _, version_dir, exported = mlp_version
    backend = OnnxRuntimeBackend(context_for(model_config("mlp", exported), version_dir))
    with pytest.raises(ModelExecutionError, match="model 'mlp'"):
        backend.execute({"x": np.zeros((2, 3), dtype=np.float32)})


@pytest.mark.gpu
def test_cuda_device_matches_cpu(mlp_version):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider")
    module, version_dir, exported = mlp_version
    backend = OnnxRuntimeBackend(context_for(model_config("mlp", exported), version_dir, "cuda:0"))
    assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
    x = np.random.default_rng(0).standard_normal((7, 64), dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(backend.execute({"x": x})["y"], want, atol=1e-5)


def test_session_parameters_reach_onnxruntime(mlp_version, monkeypatch):
    """``session.*`` parameters become onnxruntime session config entries; others do not."""
    entries = _session_entries(
        mlp_version,
        monkeypatch,
        False,
        session__intra_op__allow_spinning="0",
        intra_op_thread_count="1",
    )
    assert entries == [("session.intra_op.allow_spinning", "0")]


def _session_entries(mlp_version, monkeypatch, serving, **parameters):
    """The session config entries the backend adds, for a context with ``serving``."""
    import dataclasses

    import onnxruntime as ort

    entries: list[tuple[str, str]] = []
    original = ort.SessionOptions.add_session_config_entry

    def record(self, key, value):
        entries.append((key, value))
        return original(self, key, value)

    monkeypatch.setattr(ort.SessionOptions, "add_session_config_entry", record)
    _, version_dir, exported = mlp_version
    config = model_config("mlp", exported, backend="onnxruntime")
    for key, value in parameters.items():
        config.parameters[key.replace("__", ".")].string_value = value
    context = dataclasses.replace(context_for(config, version_dir), serving=serving)
    backend = OnnxRuntimeBackend(context)
    assert backend.execute({"x": np.ones((2, 64), dtype=np.float32)})["y"].shape == (2, 1)
    return entries


def test_a_served_cpu_pool_sleeps_when_idle_unless_the_config_says(mlp_version, monkeypatch):
    off = ("session.intra_op.allow_spinning", "0")
    two = {"intra_op_thread_count": "2"}
    assert _session_entries(mlp_version, monkeypatch, True, **two) == [off]
    # direct and offline use keep onnxruntime's default; one thread has no pool to spin
    assert _session_entries(mlp_version, monkeypatch, False, **two) == []
    assert _session_entries(mlp_version, monkeypatch, True, intra_op_thread_count="1") == []
    kept = _session_entries(
        mlp_version, monkeypatch, True, session__intra_op__allow_spinning="1", **two
    )
    assert kept == [("session.intra_op.allow_spinning", "1")]
    parallel = _session_entries(
        mlp_version, monkeypatch, True, execution_mode="1", inter_op_thread_count="2", **two
    )
    assert parallel == [off, ("session.inter_op.allow_spinning", "0")]
