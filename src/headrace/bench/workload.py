"""The pipeline study's synthetic workload: a chain of matmuls and a simulated CPU stage.

The model is a real :class:`~headrace.backends.base.Backend`, so the study drives the same
``ModelInstance`` and pipeline the server and the offline runner use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headrace.backends.base import Backend, BackendContext
from headrace.bench.preprocess import cpu_stage
from headrace.engine.pipeline import Preprocess
from headrace.errors import require
from headrace.types import Outputs

__all__ = ["MatmulBackend", "matmul_context", "simulated_cpu_stage"]


def matmul_context(
    input_shape: tuple[int, ...], max_batch_size: int, device: str
) -> BackendContext:
    """A one-input, one-output FP32 model; the matmul runs over the last dimension."""
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig(name="matmul", max_batch_size=max_batch_size)
    config.input.add(name="x", data_type=model_config_pb2.TYPE_FP32, dims=list(input_shape))
    config.output.add(name="y", data_type=model_config_pb2.TYPE_FP32, dims=list(input_shape))
    return BackendContext("matmul", 1, "", "", config, device=device)


class MatmulBackend(Backend):
    """y = tanh(... tanh(x W) ... W), ``depth`` times, W a fixed random [D, D] (D = last dim)."""

    name = "bench_matmul"
    accepts_torch = True

    def __init__(self, context: BackendContext, *, depth: int = 4, seed: int = 0) -> None:
        super().__init__(context)
        torch = require("torch", "torch")
        features = int(context.config.input[0].dims[-1])
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(features, features, generator=generator) / features**0.5
        self._torch = torch
        self._weight = weight.to(context.device)
        self._depth = depth

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        torch = self._torch
        x = torch.as_tensor(inputs["x"], device=self.context.device)
        with torch.inference_mode():
            for _ in range(self._depth):
                x = torch.tanh(x @ self._weight)
        if self.context.device == "cpu" and not isinstance(inputs["x"], torch.Tensor):
            return {"y": x.numpy()}
        return {"y": x}


def simulated_cpu_stage(delay_ms: float, kind: str = "sleep") -> Preprocess | None:
    """Preprocessing of ``kind`` (``sleep``, ``spin``, ``decode``: see
    :mod:`headrace.bench.preprocess`) taking about ``delay_ms`` per batch; None for no delay.
    With ``sleep`` the pause *is* the simulated work, not a wait."""
    return cpu_stage(kind, delay_ms)
