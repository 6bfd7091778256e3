"""Resolving a model path: a repository entry or a bare .onnx file, and its backend context."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fixtures_models import MLP
from headrace.backends import load_backend
from headrace.errors import InvalidConfig, InvalidInput
from headrace.repository import ModelRepository
from headrace.repository.resolve import ModelSource, resolve_model


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("resolve")
    entry = ModelRepository(str(root / "repo")).add("mlp", max_batch_size=16)
    entry.export_version(MLP().eval(), input_shapes={"x": (None, 64)}, output_names=["y"])
    return os.path.join(str(root / "repo"), "mlp")


def test_a_repository_entry_gives_the_context_of_each_instance(mlp_path: str) -> None:
    model = resolve_model(ModelSource(mlp_path), 8)
    context = model.context("cpu", "mlp_0")
    assert (context.model_name, context.version, context.device) == ("mlp", 1, "cpu")
    assert (context.model_dir, context.version_dir) == (mlp_path, os.path.join(mlp_path, "1"))
    assert context.instance_name == "mlp_0" and context.config == model.config
    assert [spec.name for spec in model.inputs] == ["x"]
    backend = load_backend(context)  # any BackendFactory takes it
    try:
        outputs = backend.execute({"x": np.zeros((2, 64), np.float32)})
    finally:
        backend.unload()
    assert outputs["y"].shape[0] == 2
    assert model.load_backend("cpu", "mlp_1").context.instance_name == "mlp_1"


def test_a_bare_onnx_file_gets_a_scratch_repository(mlp_path: str) -> None:
    model = resolve_model(ModelSource(os.path.join(mlp_path, "1", "model.onnx")), 32)
    assert model.config.max_batch_size == 32 and model.name == "model"
    assert os.path.isdir(model.version_dir)
    model.cleanup()
    assert not os.path.exists(model.version_dir)


def test_what_cannot_be_resolved_is_named(mlp_path: str, tmp_path) -> None:
    with pytest.raises(InvalidInput, match=r"exceeds model .* max_batch_size 16"):
        resolve_model(ModelSource(mlp_path), 32)
    with pytest.raises(InvalidInput, match="neither a model directory nor a model file"):
        resolve_model(ModelSource(str(tmp_path / "missing")), 1)
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(InvalidInput, match="cannot run model file"):
        resolve_model(ModelSource(str(tmp_path / "model.pt")), 1)
    with pytest.raises(InvalidConfig, match="no version"):
        resolve_model(ModelSource(str(ModelRepository(str(tmp_path / "r")).add("e").path)), 1)
