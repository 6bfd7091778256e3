"""Plain PyTorch backend: model.py + state_dict, the ``module`` parameter, and its errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from fixtures_models import MLP, NoiseRemover, context_for
from headrace.backends import backend_class_for
from headrace.backends.pytorch import PyTorchBackend
from headrace.backends.signature import add_tensor
from headrace.errors import InvalidConfig
from headrace.types import DataType

MODEL_PY = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Helper:
        pass


    class Doubler(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale * 2
    """
)


def _mlp_config(name: str = "mlp") -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig(name=name, backend="pytorch", max_batch_size=16)
    add_tensor(config.input, "x", DataType.FP32, (64,))
    add_tensor(config.output, "y", DataType.FP32, (1,))
    return config


def _version_dir(tmp_path):
    version_dir = tmp_path / "m" / "1"
    version_dir.mkdir(parents=True)
    return version_dir


@pytest.mark.parametrize("batch", [1, 7])
def test_installed_class_and_state_dict_match_the_module(tmp_path, batch):
    module = MLP().eval()
    version_dir = _version_dir(tmp_path)
    torch.save(module.state_dict(), version_dir / "model.pt")
    config = _mlp_config()
    config.parameters["module"].string_value = "fixtures_models:MLP"
    assert backend_class_for(config) is PyTorchBackend
    backend = PyTorchBackend(context_for(config, version_dir))
    x = np.random.default_rng(batch).standard_normal((batch, 64), dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(backend.execute({"x": x})["y"], want, atol=1e-5)


def test_model_py_in_the_version_directory_selects_plain_pytorch(tmp_path):
    version_dir = _version_dir(tmp_path)
    (version_dir / "model.py").write_text(MODEL_PY)
    config = model_config_pb2.ModelConfig(name="double", backend="pytorch", max_batch_size=4)
    add_tensor(config.input, "INPUT__0", DataType.FP32, (3,))
    add_tensor(config.output, "OUTPUT__0", DataType.FP32, (3,))
    assert backend_class_for(config, str(version_dir)) is PyTorchBackend
    backend = PyTorchBackend(context_for(config, version_dir))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(backend.execute({"INPUT__0": x})["OUTPUT__0"], x * 2)


def test_outputs_are_cast_to_the_configured_dtype(tmp_path):
    module = NoiseRemover().eval()
    version_dir = _version_dir(tmp_path)
    torch.save(module.state_dict(), version_dir / "model.pt")
    config = model_config_pb2.ModelConfig(name="denoise", backend="pytorch", max_batch_size=8)
    add_tensor(config.input, "x", DataType.FP32, (64,))
    add_tensor(config.output, "y", DataType.FP16, (64,))
    config.parameters["module"].string_value = "fixtures_models:NoiseRemover"
    out = PyTorchBackend(context_for(config, version_dir)).execute(
        {"x": np.zeros((7, 64), dtype=np.float32)}
    )
    assert out["y"].dtype == np.float16 and out["y"].shape == (7, 64)


def test_weights_for_another_module_are_refused(tmp_path):
    version_dir = _version_dir(tmp_path)
    torch.save(NoiseRemover().state_dict(), version_dir / "model.pt")
    config = _mlp_config()
    config.parameters["module"].string_value = "fixtures_models:MLP"
    with pytest.raises(InvalidConfig, match="cannot load the state_dict"):
        PyTorchBackend(context_for(config, version_dir))


def test_pickled_objects_are_not_loaded_from_weights(tmp_path):
    version_dir = _version_dir(tmp_path)
    torch.save({"layers.0.weight": MLP()}, version_dir / "model.pt")  # a whole module, pickled
    config = _mlp_config()
    config.parameters["module"].string_value = "fixtures_models:MLP"
    with pytest.raises(InvalidConfig, match="cannot load the state_dict"):
        PyTorchBackend(context_for(config, version_dir))


def test_ambiguous_or_missing_class_is_a_config_error(tmp_path):
    version_dir = _version_dir(tmp_path)
    (version_dir / "model.py").write_text(
        "from torch import nn\nclass A(nn.Module):\n    pass\nclass B(nn.Module):\n    pass\n"
    )
    config = _mlp_config()
    with pytest.raises(InvalidConfig, match=r"defines 2 nn.Module classes \['A', 'B'\]"):
        PyTorchBackend(context_for(config, version_dir))
    config.parameters["module"].string_value = "C"
    with pytest.raises(InvalidConfig, match="defines no class 'C'"):
        PyTorchBackend(context_for(config, version_dir))
    config.parameters["module"].string_value = "no_such_pkg.mod:Thing"
    with pytest.raises(InvalidConfig, match=r"cannot import 'no_such_pkg\.mod:Thing'"):
        PyTorchBackend(context_for(config, version_dir))


def test_autocomplete_requires_tensors_naming_forward_args(tmp_path):
    config = model_config_pb2.ModelConfig(name="mlp", backend="pytorch")
    config.parameters["module"].string_value = "fixtures_models:MLP"
    with pytest.raises(InvalidConfig, match=r"forward takes \['x'\]"):
        PyTorchBackend.autocomplete(config, str(tmp_path))
