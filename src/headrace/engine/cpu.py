"""The CPU half of the pipeline: staging, compute and hand-over overlap on threads.

Used for every backend that does not take torch tensors on a GPU (onnxruntime on the CPU, the
Python backend, torch on the CPU). There are no device copies: the stage thread collates into
the slot's host buffers (a single contiguous request is passed through without a copy), the
launch thread runs the compute (numpy/torch/onnxruntime release the GIL while they work), and
hand-over copies out any output that aliases slot memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.engine.buffers import ByteBuffer, collate, numpy_allocator, request_sizes
from headrace.engine.slots import Compute, PipelineOptions, Requests, SlotBase, SlotStages
from headrace.engine.stats import StageTimes
from headrace.types import Outputs

__all__ = ["CpuSlot", "CpuStages", "to_numpy"]


@dataclass(eq=False)
class CpuSlot(SlotBase):
    buffers: dict[str, ByteBuffer] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=dict)
    compute_ns: int = 0

    def buffer(self, name: str) -> ByteBuffer:
        if name not in self.buffers:
            self.buffers[name] = ByteBuffer(numpy_allocator)
        return self.buffers[name]


class CpuStages(SlotStages[CpuSlot]):
    """Stage → compute → hand-over on the host."""

    def __init__(self, compute: Compute, batched: bool, options: PipelineOptions) -> None:
        self._compute = compute
        self._batched = batched
        self._preprocess = options.preprocess

    def make_slot(self, index: int) -> CpuSlot:
        return CpuSlot(index)

    def stage(self, slot: CpuSlot, requests: Requests) -> None:
        start = time.monotonic_ns()
        if self._preprocess is not None:
            requests = self._preprocess(requests)
        if len(requests) == 1 and _all_contiguous(requests[0]):
            slot.inputs = dict(requests[0])
        else:
            slot.inputs = collate(requests, self._batched, slot.buffer)
        slot.sizes = tuple(request_sizes(requests, self._batched))
        slot.batch_size = sum(slot.sizes)
        slot.stage_ns = time.monotonic_ns() - start

    def launch(self, slot: CpuSlot) -> None:
        start = time.monotonic_ns()
        slot.outputs = self._compute(slot.inputs)
        slot.compute_ns = time.monotonic_ns() - start

    def hand_over(self, slot: CpuSlot) -> Outputs:
        start = time.monotonic_ns()
        owned = [buffer.raw for buffer in slot.buffers.values() if buffer.raw is not None]
        outputs: Outputs = {}
        for name, value in slot.outputs.items():
            array = to_numpy(value)
            if any(np.may_share_memory(array, raw) for raw in owned):
                array = array.copy()
            outputs[name] = array
        slot.inputs, slot.outputs = {}, {}
        slot.handover_ns = time.monotonic_ns() - start
        return outputs

    def times(self, slot: CpuSlot) -> StageTimes:
        return StageTimes(
            batch_size=slot.batch_size,
            stage_ns=slot.stage_ns,
            compute_ns=slot.compute_ns,
            handover_ns=slot.handover_ns,
        )

    def abandon(self, slot: CpuSlot) -> None:
        slot.inputs, slot.outputs = {}, {}

    def poison(self, slot: CpuSlot) -> None:
        for buffer in slot.buffers.values():
            if buffer.raw is not None:
                buffer.raw.fill(0xFF)


def to_numpy(value: Any) -> np.ndarray:
    """A host numpy array for a numpy array or a (CPU or GPU) torch tensor."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        from headrace.engine.cuda import tensor_to_numpy

        return tensor_to_numpy(value.detach().cpu())
    return np.asarray(value)


def _all_contiguous(request: Any) -> bool:
    return all(
        isinstance(value, np.ndarray) and value.flags.c_contiguous for value in request.values()
    )
