"""Run a benchmark model in this process, no server: the ceiling serving is measured against.

Each format is called the way its backend calls it (torch eager for the python-backend model,
``torch.jit`` for TorchScript, onnxruntime for ONNX), numpy in and numpy out, so the only
thing missing compared with a server is the serving itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import nets
import numpy as np

from repository import Variant, weights_file

__all__ = ["load_direct", "measure_throughput"]

Runner = Callable[[np.ndarray], np.ndarray]


def load_direct(variant: Variant, repository: Path) -> Runner:
    """A callable running ``variant`` exactly as stored in ``repository``."""
    import torch

    version_dir = repository / variant.name / "1"
    if variant.format == "python":
        if nets.NETS[variant.net].is_identity:
            return lambda batch: batch
        module = nets.build(variant.net)
        module.load_state_dict(torch.load(weights_file(repository, variant.net), weights_only=True))
        return _torch_runner(module)
    if variant.format == "torchscript":
        return _torch_runner(torch.jit.load(str(version_dir / "model.pt")).eval())
    if variant.format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        feeds = variant.input_name
        return lambda batch: session.run(None, {feeds: batch})[0]
    raise ValueError(f"unknown format {variant.format!r}")


def _torch_runner(module: Callable[..., object]) -> Runner:
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()  # type: ignore[attr-defined,no-any-return]

    return run


def measure_throughput(
    runner: Runner, batch_size: int, in_features: int, min_time_s: float = 1.0, blocks: int = 5
) -> dict[str, float]:
    """Inferences per second at ``batch_size``: the best of ``blocks`` timed blocks.

    The best block, not the mean: the CPU is shared, and other processes only ever slow a
    block down, so the fastest one is the closest to what the model itself costs.
    """
    batch = np.random.default_rng(0).random((batch_size, in_features), dtype=np.float32)
    for _ in range(3):
        runner(batch)
    rates = []
    calls_total = 0
    for _ in range(blocks):
        calls = 0
        start = time.perf_counter()
        deadline = time.monotonic() + min_time_s / blocks
        while calls < 3 or time.monotonic() < deadline:
            runner(batch)
            calls += 1
        rates.append(calls * batch_size / (time.perf_counter() - start))
        calls_total += calls
    best = max(rates)
    return {
        "batch_size": batch_size,
        "calls": calls_total,
        "throughput": best,
        "throughput_median_block": sorted(rates)[len(rates) // 2],
        "latency_us": batch_size / best * 1e6,
    }
