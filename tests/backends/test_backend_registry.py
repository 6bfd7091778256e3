"""backend_class_for: Triton backend/platform names map to classes; anything else is named."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.backends import SUPPORTED_BACKENDS, backend_class_for
from headrace.errors import InvalidConfig


@pytest.mark.parametrize(
    ("backend", "platform", "expected"),
    [
        ("onnxruntime", "", "OnnxRuntimeBackend"),
        ("", "onnxruntime_onnx", "OnnxRuntimeBackend"),
        ("pytorch", "", "TorchScriptBackend"),
        ("", "pytorch_libtorch", "TorchScriptBackend"),
    ],
)
def test_names_map_to_classes(backend, platform, expected):
    config = model_config_pb2.ModelConfig(name="m", backend=backend, platform=platform)
    assert backend_class_for(config).__name__ == expected


def test_backend_wins_over_platform():
    config = model_config_pb2.ModelConfig(
        name="m", backend="onnxruntime", platform="pytorch_libtorch"
    )
    assert backend_class_for(config).__name__ == "OnnxRuntimeBackend"


def test_model_py_beside_a_pytorch_model_means_plain_pytorch(tmp_path):
    config = model_config_pb2.ModelConfig(name="m", backend="pytorch")
    assert backend_class_for(config, str(tmp_path)).__name__ == "TorchScriptBackend"
    (tmp_path / "model.py").write_text("")
    assert backend_class_for(config, str(tmp_path)).__name__ == "PyTorchBackend"


def test_unknown_backend_is_named_with_the_supported_ones():
    config = model_config_pb2.ModelConfig(name="m", backend="tensorflow")
    with pytest.raises(InvalidConfig, match="backend 'tensorflow'") as info:
        backend_class_for(config)
    for name in SUPPORTED_BACKENDS:
        assert name in str(info.value)
    assert info.value.field == "backend"


def test_unknown_platform_and_none_at_all_are_refused():
    with pytest.raises(InvalidConfig, match="'tensorrt_plan'") as info:
        backend_class_for(model_config_pb2.ModelConfig(name="m", platform="tensorrt_plan"))
    assert info.value.field == "platform"
    with pytest.raises(InvalidConfig, match="no backend or platform"):
        backend_class_for(model_config_pb2.ModelConfig(name="m"))
