"""Tiny torch modules shared by the tests (built in-process; nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from headrace.repository.example_models import MLP, NoiseRemover

__all__ = [
    "MLP",
    "AddSub",
    "NoiseRemover",
    "context_for",
    "model_config",
    "write_rank4_scale_onnx",
    "write_string_concat_onnx",
]


class AddSub(nn.Module):
    """Two inputs, two outputs (sum and difference), as Triton's add_sub example."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a - b


def model_config(name: str, exported: Any, *, backend: str = "", platform: str = "") -> Any:
    """A ModelConfig listing an exported model's tensors (what ``repo.add`` would write)."""
    from tritonclient.grpc import model_config_pb2

    from headrace.backends.signature import add_tensor

    config = model_config_pb2.ModelConfig(name=name, backend=backend, platform=platform)
    config.max_batch_size = exported.max_batch_size_hint
    for spec in exported.inputs:
        add_tensor(config.input, spec.name, spec.datatype, spec.dims)
    for spec in exported.outputs:
        add_tensor(config.output, spec.name, spec.datatype, spec.dims)
    return config


def context_for(config: Any, version_dir: Any, device: str = "cpu") -> Any:
    """A BackendContext for a model whose files sit in ``version_dir``."""
    from headrace.backends.base import BackendContext

    return BackendContext(
        model_name=config.name,
        version=1,
        model_dir=str(version_dir.parent),
        version_dir=str(version_dir),
        config=config,
        device=device,
    )


def write_string_concat_onnx(path: Any) -> None:
    """An ONNX graph on strings: ``IN`` [batch, 1] -> ``SAME`` (Identity) and ``TWICE``
    (``StringConcat(IN, IN)``, opset 20), all ``tensor(string)``."""
    from onnx import TensorProto, helper

    def tensor(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", 1])

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["IN"], ["SAME"]),
            helper.make_node("StringConcat", ["IN", "IN"], ["TWICE"]),
        ],
        "string_concat",
        [tensor("IN")],
        [tensor("SAME"), tensor("TWICE")],
    )
    _save_onnx(graph, path, opset=20)


def write_rank4_scale_onnx(path: Any) -> None:
    """An ONNX graph that insists on rank 4: ``X`` [batch, 1, 2, 3] FP32 -> ``Y`` = 2 * X,
    same shape. Served with ``dims: [2, 3]`` and ``reshape { shape: [1, 2, 3] }``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shape: list[Any] = ["batch", 1, 2, 3]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "TWO"], ["Y"])],
        "rank4_scale",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array(2.0, dtype=np.float32), "TWO")],
    )
    _save_onnx(graph, path, opset=13)


def _save_onnx(graph: Any, path: Any, opset: int) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9  # one onnxruntime of the supported range still reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
