"""The CUDA pipeline's stage logic on a CPU-only machine, with torch.cuda faked.

Streams and events are stand-ins (work runs synchronously), so this checks what the GPU tests
cannot check here: slot buffers and views per dtype, collation into the host slot, the
H2D → compute → D2H hand-offs, hand-over copies, per-stage timings and error recovery. The
real streams are covered by the gpu-marked tests in test_pipeline.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from headrace.engine.cuda import CudaStages
from headrace.engine.pipeline import Pipeline, PipelineOptions


class FakeEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0

    def record(self, stream: Any = None) -> None:
        self.at = time.monotonic()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.at - self.at) * 1e3


class FakeStream:
    def wait_event(self, event: FakeEvent) -> None:
        pass

    def synchronize(self) -> None:
        pass


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None, raising=False)
    # "Device" tensors live on the CPU here, so every tensor output takes the D2H path.
    monkeypatch.setattr(CudaStages, "_on_device", lambda self, value: torch.is_tensor(value))


WEIGHT = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))


def compute(inputs: Mapping[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    if not torch.is_tensor(x):
        raise TypeError(f"compute got {type(x).__name__}, expected a tensor")
    if float(x[0, 0]) < -100:
        raise ValueError("sentinel input")
    return {"y": x @ WEIGHT, "positive": x > 0, "half": x.to(torch.bfloat16), "same": x}


def make(num_buffers: int) -> Pipeline:
    options = PipelineOptions(num_buffers, pin_memory=False, poison=True, name="w0")
    stages = CudaStages(compute, True, "cuda:0", options)
    stages.device = torch.device("cpu")
    return Pipeline(stages, options)


@pytest.mark.usefixtures("fake_cuda")
@pytest.mark.parametrize("num_buffers", [1, 2, 3])
def test_cuda_stages_round_trip_every_dtype_in_order(num_buffers: int) -> None:
    rng = np.random.default_rng(num_buffers)
    batches = [
        [
            {"x": rng.standard_normal((int(rng.integers(1, 5)), 6)).astype(np.float32)}
            for _ in range(int(rng.integers(1, 4)))
        ]
        for _ in range(30)
    ]
    batches[7][0]["x"][0, 0] = -1000.0
    pipeline = make(num_buffers)
    futures = [pipeline.submit(batch) for batch in batches]
    for index, (batch, future) in enumerate(zip(batches, futures)):
        if index == 7:
            assert isinstance(future.exception(timeout=30), ValueError)
            continue
        result = future.result(timeout=30)
        x = np.concatenate([request["x"] for request in batch])
        np.testing.assert_allclose(result.outputs["y"], x @ WEIGHT.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(result.outputs["same"], x)
        np.testing.assert_array_equal(result.outputs["positive"], x > 0)
        assert result.outputs["half"].dtype.name == "bfloat16"
        assert result.times.batch_size == len(x)
        assert min(result.times.h2d_ns, result.times.compute_ns, result.times.d2h_ns) >= 0
    pipeline.close()
