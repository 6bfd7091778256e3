"""Fake models for the server-core tests: a tiny Backend and a Triton python-backend repository."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from headrace.backends.base import Backend, BackendContext
from headrace.config import ModelConfig, add_tensor, new_config
from headrace.types import Outputs

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run one async test body on a fresh event loop."""

    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def scale_config(
    name: str = "scale", max_batch_size: int = 8, dynamic: bool = False
) -> ModelConfig:
    """x: FP32 [4] -> y = 2x, z = x + 1."""
    config = new_config(name, backend="fake", max_batch_size=max_batch_size)
    add_tensor(config, "input", "x", "FP32", [4])
    add_tensor(config, "output", "y", "FP32", [4])
    add_tensor(config, "output", "z", "FP32", [4])
    if dynamic:
        config.dynamic_batching.max_queue_delay_microseconds = 20000
    return config


class ScaleBackend(Backend):
    """y = factor * x, z = x + 1; optionally waits on ``gate`` or raises."""

    name = "fake"

    def __init__(
        self,
        context: BackendContext,
        *,
        factor: float = 2.0,
        gate: threading.Event | None = None,
        started: threading.Event | None = None,
        batches: list[int] | None = None,
    ) -> None:
        super().__init__(context)
        self.factor = factor
        self.gate = gate
        self.started = started
        self.batches = batches

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        x = np.asarray(inputs["x"])
        if self.started is not None:
            self.started.set()
        if self.gate is not None and not self.gate.wait(timeout=30):
            raise RuntimeError("gate never opened")
        if self.batches is not None:
            self.batches.append(int(x.shape[0]))
        if (x == 13).any():
            raise RuntimeError("unlucky 13")
        return {"y": (x * self.factor).astype(np.float32), "z": (x + 1).astype(np.float32)}


def scale_factory(**kwargs: Any) -> Callable[[BackendContext], Backend]:
    return lambda context: ScaleBackend(context, **kwargs)


def failing_factory(context: BackendContext) -> Backend:
    raise RuntimeError("weights are corrupt")


_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * {factor})]))
        return responses
"""

_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }} ]
{extra}
"""


def model_py(factor: int) -> str:
    return textwrap.dedent(_MODEL_PY).replace("{factor}", str(factor))


def write_python_model(root: Path, name: str, versions: Mapping[int, int], extra: str = "") -> Path:
    """``root/name`` with one ``model.py`` per version multiplying X by ``versions[v]``."""
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(_CONFIG.format(name=name, extra=extra))
    for version, factor in versions.items():
        (model_dir / str(version)).mkdir(exist_ok=True)
        (model_dir / str(version) / "model.py").write_text(model_py(factor))
    return model_dir
