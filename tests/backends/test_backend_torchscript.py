"""TorchScript backend: parity, Triton's input/output binding conventions, torch in/out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from fixtures_models import MLP, AddSub, context_for, model_config
from headrace.backends.signature import add_tensor
from headrace.backends.torchscript import TorchScriptBackend
from headrace.errors import InvalidConfig, ModelExecutionError
from headrace.repository.export import export_torchscript
from headrace.types import DataType


def _export(module, tmp_path, shapes, outputs):
    version_dir = tmp_path / "m" / "1"
    version_dir.mkdir(parents=True)
    exported = export_torchscript(
        module, str(version_dir / "model.pt"), input_shapes=shapes, output_names=outputs
    )
    return version_dir, exported


def _addsub_config(input_names, output_names):
    config = model_config_pb2.ModelConfig(name="addsub", backend="pytorch", max_batch_size=8)
    for name in input_names:
        add_tensor(config.input, name, DataType.FP32, (4,))
    for name in output_names:
        add_tensor(config.output, name, DataType.FP32, (4,))
    return config


@pytest.mark.parametrize("batch", [1, 7])
def test_outputs_match_the_torch_module(tmp_path, batch):
    module = MLP().eval()
    version_dir, exported = _export(module, tmp_path, {"x": (None, 64)}, ["y"])
    backend = TorchScriptBackend(context_for(model_config("mlp", exported), version_dir))
    x = np.random.default_rng(batch).standard_normal((batch, 64), dtype=np.float32)
    out = backend.execute({"x": x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert isinstance(out["y"], np.ndarray)
    np.testing.assert_allclose(out["y"], want, atol=1e-5)


def test_indexed_names_bind_by_index_not_config_order(tmp_path):
    version_dir, _ = _export(AddSub(), tmp_path, {"a": (None, 4), "b": (None, 4)}, ["s", "d"])
    config = _addsub_config(["INPUT__1", "INPUT__0"], ["OUTPUT__1", "OUTPUT__0"])
    backend = TorchScriptBackend(context_for(config, version_dir))
    a = np.full((7, 4), 5, dtype=np.float32)
    b = np.full((7, 4), 2, dtype=np.float32)
    out = backend.execute({"INPUT__0": a, "INPUT__1": b})
    np.testing.assert_array_equal(out["OUTPUT__0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT__1"], a - b)


def test_forward_argument_names_bind_by_name(tmp_path):
    version_dir, _ = _export(AddSub(), tmp_path, {"a": (None, 4), "b": (None, 4)}, ["s", "d"])
    backend = TorchScriptBackend(context_for(_addsub_config(["b", "a"], ["s", "d"]), version_dir))
    a = np.full((1, 4), 5, dtype=np.float32)
    b = np.full((1, 4), 2, dtype=np.float32)
    out = backend.execute({"a": a, "b": b})
    np.testing.assert_array_equal(out["d"], a - b)


def test_torch_tensors_in_give_torch_tensors_out(tmp_path):
    version_dir, exported = _export(MLP(), tmp_path, {"x": (None, 64)}, ["y"])
    backend = TorchScriptBackend(context_for(model_config("mlp", exported), version_dir))
    assert backend.accepts_torch
    out = backend.execute({"x": torch.randn(3, 64)})
    assert isinstance(out["y"], torch.Tensor) and out["y"].shape == (3, 1)


def test_read_only_input_buffers_are_accepted(tmp_path):
    version_dir, exported = _export(MLP(), tmp_path, {"x": (None, 64)}, ["y"])
    backend = TorchScriptBackend(context_for(model_config("mlp", exported), version_dir))
    x = np.frombuffer(np.ones((2, 64), dtype=np.float32).tobytes(), dtype=np.float32)
    out = backend.execute({"x": x.reshape(2, 64)})
    assert out["y"].shape == (2, 1)


def test_config_without_tensors_is_refused_naming_forward_args(tmp_path):
    version_dir, _ = _export(AddSub(), tmp_path, {"a": (None, 4), "b": (None, 4)}, ["s", "d"])
    config = model_config_pb2.ModelConfig(name="addsub", backend="pytorch")
    with pytest.raises(InvalidConfig, match=r"input.*forward takes \['a', 'b'\]"):
        TorchScriptBackend.autocomplete(config, str(version_dir))
    add_tensor(config.input, "a", DataType.FP32, (4,))
    with pytest.raises(InvalidConfig, match="output"):
        TorchScriptBackend.autocomplete(config, str(version_dir))


def test_too_few_outputs_and_bad_shapes_fail_the_batch(tmp_path):
    version_dir, _ = _export(AddSub(), tmp_path, {"a": (None, 4), "b": (None, 4)}, ["s", "d"])
    config = _addsub_config(["a", "b"], ["s", "d", "extra"])
    backend = TorchScriptBackend(context_for(config, version_dir))
    ones = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ModelExecutionError, match=r"returned 2 values, expected 3"):
        backend.execute({"a": ones, "b": ones})
    backend = TorchScriptBackend(context_for(_addsub_config(["a", "b"], ["s", "d"]), version_dir))
    with pytest.raises(ModelExecutionError, match="model 'addsub' raised"):
        backend.execute({"a": ones, "b": np.ones((2, 3), dtype=np.float32)})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(InvalidConfig, match="no TorchScript file"):
        TorchScriptBackend(context_for(_addsub_config(["a", "b"], ["s", "d"]), tmp_path))


@pytest.mark.gpu
def test_cuda_tensors_stay_on_the_device(tmp_path):
    module = MLP().eval()
    version_dir, exported = _export(module, tmp_path, {"x": (None, 64)}, ["y"])
    backend = TorchScriptBackend(context_for(model_config("mlp", exported), version_dir, "cuda:0"))
    x = torch.randn(7, 64, device="cuda:0")
    out = backend.execute({"x": x})
    assert out["y"].device.type == "cuda"
    with torch.no_grad():
        torch.testing.assert_close(out["y"].cpu(), module(x.cpu()), atol=1e-5, rtol=1e-4)
    host = backend.execute({"x": x.cpu().numpy()})["y"]
    np.testing.assert_allclose(host, out["y"].cpu().numpy(), atol=1e-5)
