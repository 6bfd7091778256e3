"""headrace.config.platforms: the one table of backends, and every reader of it agrees."""

from __future__ import annotations

import importlib

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.backends import SUPPORTED_BACKENDS, backend_class_for
from headrace.backends.base import Backend
from headrace.config import platforms
from headrace.config.platforms import (
    BACKENDS,
    ENSEMBLE_PLATFORM,
    backend_of_platform,
    backend_row,
    check_platform_backend,
    default_cpu_instances,
    default_model_filename,
    platform_of_backend,
    served_rows,
)
from headrace.errors import InvalidConfig
from headrace.repository import complete
from headrace.repository.complete import backend_for_files, expected_model_files
from headrace.repository.export_bridge import EXPORT_FORMATS


def _class(spec: str) -> type:
    module_name, class_name = spec.split(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls


def test_backend_names_are_unique_and_platforms_belong_to_one_backend() -> None:
    names = [row.name for row in BACKENDS]
    assert len(names) == len(set(names))
    platform_names = [name for row in BACKENDS for name in row.platform_names]
    assert len(platform_names) == len(set(platform_names))
    assert ENSEMBLE_PLATFORM not in platform_names


@pytest.mark.parametrize("row", served_rows(), ids=lambda row: row.name)
def test_every_served_implementation_imports_and_carries_its_backend_name(row) -> None:
    assert row.implementation is not None
    cls = _class(row.implementation)
    assert issubclass(cls, Backend)
    assert cls.name == row.name
    if row.variant is not None:
        variant = _class(row.variant.implementation)
        assert issubclass(variant, Backend)
        assert variant.name == row.name


def test_served_backends_are_the_ones_headrace_executes() -> None:
    assert [row.name for row in served_rows()] == ["onnxruntime", "pytorch", "python"]
    assert SUPPORTED_BACKENDS == (
        "onnxruntime",
        "onnxruntime_onnx",
        "python",
        "pytorch",
        "pytorch_libtorch",
    )


@pytest.mark.parametrize(
    ("backend", "platform"),
    [
        ("onnxruntime", "onnxruntime_onnx"),
        ("pytorch", "pytorch_libtorch"),
        ("tensorrt", "tensorrt_plan"),
    ],
)
def test_platform_and_backend_round_trip(backend: str, platform: str) -> None:
    assert platform_of_backend(backend) == platform
    assert backend_of_platform(platform) == backend
    assert backend_of_platform(platform_of_backend(backend)) == backend


def test_backends_without_one_platform_fill_none() -> None:
    assert backend_of_platform("tensorflow_graphdef") == "tensorflow"
    assert backend_of_platform("tensorflow_savedmodel") == "tensorflow"
    assert platform_of_backend("tensorflow") == ""  # two platforms: Triton leaves it unset
    assert platform_of_backend("python") == ""
    assert platform_of_backend("no_such_backend") == ""
    assert backend_of_platform(ENSEMBLE_PLATFORM) == ""
    assert backend_row("no_such_backend") is None


@pytest.mark.parametrize(
    ("platform", "backend", "filename"),
    [
        ("onnxruntime_onnx", "onnxruntime", "model.onnx"),
        ("", "onnxruntime", "model.onnx"),
        ("pytorch_libtorch", "pytorch", "model.pt"),
        ("", "python", "model.py"),
        ("tensorrt_plan", "tensorrt", "model.plan"),
        ("tensorflow_graphdef", "tensorflow", "model.graphdef"),
        ("tensorflow_savedmodel", "tensorflow", "model.savedmodel"),
        ("", "tensorflow", ""),
        ("", "openvino", "model.xml"),
        ("", "custom", ""),
    ],
)
def test_default_model_filename(platform: str, backend: str, filename: str) -> None:
    assert default_model_filename(platform, backend) == filename


@pytest.mark.parametrize(
    ("backend", "count"),
    [("onnxruntime", 2), ("tensorflow", 2), ("pytorch", 1), ("python", 1), ("custom", 1)],
)
def test_default_cpu_instances(backend: str, count: int) -> None:
    assert default_cpu_instances(backend) == count


def test_platform_checks() -> None:
    check_platform_backend("onnxruntime_onnx", "onnxruntime")
    check_platform_backend("tensorflow_savedmodel", "tensorflow")
    check_platform_backend("anything", "python")  # backends without platforms accept any
    check_platform_backend(ENSEMBLE_PLATFORM, "")
    with pytest.raises(InvalidConfig, match="cannot be served by backend 'pytorch'"):
        check_platform_backend("onnxruntime_onnx", "pytorch")
    with pytest.raises(InvalidConfig, match="empty backend"):
        check_platform_backend(ENSEMBLE_PLATFORM, "python")


@pytest.mark.parametrize(
    ("files", "backend"),
    [
        (["model.onnx"], "onnxruntime"),
        (["model.pt"], "pytorch"),
        (["model.pt", "model.py"], "pytorch"),
        (["model.py"], "python"),
        (["model.py", "model.onnx"], "onnxruntime"),
    ],
)
def test_model_files_imply_a_backend(files: list[str], backend: str) -> None:
    assert backend_for_files(files) == backend


def test_unknown_model_files_name_the_ones_that_would_do() -> None:
    with pytest.raises(InvalidConfig, match=r"expected one of model\.onnx, model\.pt, model\.py"):
        backend_for_files(["model.plan"], "repo/m/1")


def test_inferred_backends_choose_their_classes(tmp_path) -> None:
    (tmp_path / "model.pt").write_text("")
    config = model_config_pb2.ModelConfig(name="m", backend=backend_for_files(["model.pt"]))
    assert backend_class_for(config, str(tmp_path)).__name__ == "TorchScriptBackend"
    (tmp_path / "model.py").write_text("")
    files = ["model.pt", "model.py"]
    config = model_config_pb2.ModelConfig(name="m", backend=backend_for_files(files))
    assert backend_class_for(config, str(tmp_path)).__name__ == "PyTorchBackend"


def _config(**fields: str) -> model_config_pb2.ModelConfig:
    return model_config_pb2.ModelConfig(name="m", **fields)


def test_expected_model_files_follow_the_table() -> None:
    assert expected_model_files(_config(backend="onnxruntime")) == ("model.onnx",)
    assert expected_model_files(_config(platform="onnxruntime_onnx")) == ("model.onnx",)
    assert expected_model_files(_config(backend="python")) == ("model.py",)
    assert expected_model_files(_config(platform="pytorch_libtorch")) == ("model.pt", "model.py")
    named = _config(backend="onnxruntime", default_model_filename="net.onnx")
    assert expected_model_files(named) == ("net.onnx",)
    assert expected_model_files(_config(platform=ENSEMBLE_PLATFORM)) == ()
    assert expected_model_files(_config(backend="tensorrt")) == ()  # refused by name later


def test_an_installed_pytorch_class_needs_no_file() -> None:
    config = _config(backend="pytorch")
    config.parameters["module"].string_value = "package.module:Net"
    assert expected_model_files(config) == ()
    config.parameters["module"].string_value = "Net"  # a class in model.py
    assert expected_model_files(config) == ("model.pt", "model.py")


def test_export_formats_read_the_table() -> None:
    for filename, platform, backend in EXPORT_FORMATS.values():
        assert default_model_filename(platform, backend) == filename
        assert backend_of_platform(platform) == backend
    assert EXPORT_FORMATS["onnx"] == ("model.onnx", "onnxruntime_onnx", "onnxruntime")
    assert EXPORT_FORMATS["torchscript"] == ("model.pt", "pytorch_libtorch", "pytorch")


def test_the_ensemble_platform_is_defined_once() -> None:
    assert complete.ENSEMBLE_PLATFORM is platforms.ENSEMBLE_PLATFORM == "ensemble"
