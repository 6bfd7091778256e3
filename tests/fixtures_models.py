"""Tiny torch modules shared by the tests (built in-process; nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from headrace.repository.example_models import MLP, NoiseRemover

__all__ = ["MLP", "AddSub", "NoiseRemover", "context_for", "model_config"]


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
