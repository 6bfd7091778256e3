"""Tiny models and datasets for the offline-runner tests (built in-process, nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fixtures_models import MLP
from headrace.repository import ModelRepository

__all__ = ["direct", "features", "mlp_repository"]


def mlp_repository(root: Path, *, max_batch_size: int = 256) -> tuple[str, torch.nn.Module]:
    """``root/repo/mlp`` (ONNX, input ``x`` [64], output ``y`` [1]) and the module it came from."""
    torch.manual_seed(0)
    module = MLP().eval()
    repo = ModelRepository(str(root / "repo"))
    entry = repo.add("mlp", max_batch_size=max_batch_size)
    entry.export_version(module, input_shapes={"x": (None, 64)}, output_names=["y"])
    return os.path.join(str(root / "repo"), "mlp"), module


def features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)


def direct(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The model called directly, the reference every runner must match row for row."""
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
