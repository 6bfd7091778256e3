"""The GPU half of the pipeline: pinned slots, three CUDA streams, events between them.

Per batch, on slot *i* (``P`` is the pipeline's name prefix, for nsys timelines)::

    stage thread    P Stage[buf=i]     collate requests into the slot's pinned input buffers
    launch thread   P H2D[buf=i]       h2d stream:      copy pinned → device,  record h2d_end
                    P Compute[buf=i]   compute stream:  wait h2d_end, run the model, record compute_end
                    P D2H[buf=i]       d2h stream:      wait compute_end, copy device → pinned, record d2h_end
    hand-over       P Handover[buf=i]  wait d2h_end, copy outputs out of the pinned buffers

The launch thread only enqueues, so it stages batch k+1's H2D while batch k computes and batch
k-1 copies back. A slot is released after ``d2h_end`` has completed and its outputs were
copied out, so its buffers are never rewritten while a stream or the caller can read them.
Output tensors the model allocated on the compute stream are marked used by the D2H stream
(``record_stream``) so the caching allocator cannot reuse them early. Everything goes through
``torch.cuda``, which is HIP on ROCm builds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.engine.buffers import ByteBuffer, collate, request_sizes
from headrace.engine.slots import Compute, PipelineOptions, Requests, SlotBase, SlotStages
from headrace.engine.stats import StageTimes
from headrace.errors import InvalidConfig, require
from headrace.types import DataType, Outputs

__all__ = ["CudaSlot", "CudaStages", "nvtx_range", "tensor_to_numpy"]

_EVENTS = ("h2d_start", "h2d_end", "compute_start", "compute_end", "d2h_start", "d2h_end")


@dataclass(eq=False)
class CudaSlot(SlotBase):
    host_in: dict[str, ByteBuffer] = field(default_factory=dict)
    device_in: dict[str, ByteBuffer] = field(default_factory=dict)
    host_out: dict[str, ByteBuffer] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    staged: dict[str, np.ndarray] = field(default_factory=dict)
    copied_out: dict[str, Any] = field(default_factory=dict)
    """Output name → pinned tensor view being filled by D2H (or a host array as is)."""


class CudaStages(SlotStages[CudaSlot]):
    """Stage → (H2D → compute → D2H on streams) → hand-over on one GPU."""

    def __init__(
        self, compute: Compute, batched: bool, device: str, options: PipelineOptions
    ) -> None:
        torch = require("torch", "torch")
        if not torch.cuda.is_available():
            raise InvalidConfig(f"device '{device}' requested but torch sees no CUDA/ROCm GPU")
        self._torch = torch
        self._compute = compute
        self._batched = batched
        self._preprocess = options.preprocess
        self._pin = options.pin_memory
        self._prefix = f"{options.name} " if options.name else ""
        self.device = torch.device(device)
        with torch.cuda.device(self.device):
            self.h2d_stream = torch.cuda.Stream()
            # A backend bound to a stream of its own (ONNX Runtime's CUDA provider) computes
            # there; the events below order it with the copies either way.
            self.compute_stream = options.compute_stream or torch.cuda.Stream()
            self.d2h_stream = torch.cuda.Stream()

    def make_slot(self, index: int) -> CudaSlot:
        slot = CudaSlot(index)
        with self._torch.cuda.device(self.device):
            slot.events = {name: self._torch.cuda.Event(enable_timing=True) for name in _EVENTS}
        return slot

    def _host_buffer(self, table: dict[str, ByteBuffer], name: str) -> ByteBuffer:
        if name not in table:
            torch, pin = self._torch, self._pin
            table[name] = ByteBuffer(lambda n: torch.empty(n, dtype=torch.uint8, pin_memory=pin))
        return table[name]

    def _device_buffer(self, slot: CudaSlot, name: str) -> ByteBuffer:
        if name not in slot.device_in:
            torch, device = self._torch, self.device
            slot.device_in[name] = ByteBuffer(
                lambda n: torch.empty(n, dtype=torch.uint8, device=device)
            )
        return slot.device_in[name]

    def stage(self, slot: CudaSlot, requests: Requests) -> None:
        start = time.monotonic_ns()
        with nvtx_range(f"{self._prefix}Stage[buf={slot.index}]"):
            if self._preprocess is not None:
                requests = self._preprocess(requests)
            slot.staged = collate(
                requests, self._batched, lambda name: self._host_buffer(slot.host_in, name)
            )
            slot.sizes = tuple(request_sizes(requests, self._batched))
            slot.batch_size = sum(slot.sizes)
        slot.stage_ns = time.monotonic_ns() - start

    def launch(self, slot: CudaSlot) -> None:
        torch, events = self._torch, slot.events
        with torch.cuda.device(self.device):
            with (
                nvtx_range(f"{self._prefix}H2D[buf={slot.index}]"),
                torch.cuda.stream(self.h2d_stream),
            ):
                events["h2d_start"].record()
                inputs = {name: self._copy_in(slot, name, a) for name, a in slot.staged.items()}
                events["h2d_end"].record()
            with nvtx_range(f"{self._prefix}Compute[buf={slot.index}]"):
                self.compute_stream.wait_event(events["h2d_end"])
                with torch.cuda.stream(self.compute_stream):
                    events["compute_start"].record()
                    outputs = self._compute(inputs)
                    events["compute_end"].record()
            with nvtx_range(f"{self._prefix}D2H[buf={slot.index}]"):
                self.d2h_stream.wait_event(events["compute_end"])
                with torch.cuda.stream(self.d2h_stream):
                    events["d2h_start"].record()
                    slot.copied_out = {
                        name: self._copy_out(slot, name, value) for name, value in outputs.items()
                    }
                    events["d2h_end"].record()

    def _copy_in(self, slot: CudaSlot, name: str, array: np.ndarray) -> Any:
        if array.dtype == np.object_:
            return array  # BYTES stay on the host
        torch_dtype = DataType.from_numpy(array.dtype).torch_dtype
        shape, itemsize = tuple(array.shape), array.dtype.itemsize
        source = self._host_buffer(slot.host_in, name).tensor_view(torch_dtype, shape, itemsize)
        target = self._device_buffer(slot, name).tensor_view(torch_dtype, shape, itemsize)
        target.copy_(source, non_blocking=True)
        return target

    def _copy_out(self, slot: CudaSlot, name: str, value: Any) -> Any:
        if not self._on_device(value):
            return value
        value.record_stream(self.d2h_stream)
        buffer = self._host_buffer(slot.host_out, name)
        target = buffer.tensor_view(value.dtype, tuple(value.shape), value.element_size())
        target.copy_(value, non_blocking=True)
        return target

    def _on_device(self, value: Any) -> bool:
        """Whether an output needs a D2H copy (host tensors and arrays are taken as they are)."""
        return isinstance(value, self._torch.Tensor) and value.device.type != "cpu"

    def hand_over(self, slot: CudaSlot) -> Outputs:
        with nvtx_range(f"{self._prefix}Handover[buf={slot.index}]"):
            slot.events["d2h_end"].synchronize()
            start = time.monotonic_ns()
            outputs: Outputs = {}
            for name, value in slot.copied_out.items():
                array = value if isinstance(value, np.ndarray) else tensor_to_numpy(value.detach())
                outputs[name] = array.copy()
            slot.copied_out, slot.staged = {}, {}
        slot.handover_ns = time.monotonic_ns() - start
        return outputs

    def times(self, slot: CudaSlot) -> StageTimes:
        events = slot.events

        def span(first: str, last: str) -> int:
            return int(events[first].elapsed_time(events[last]) * 1e6)

        return StageTimes(
            batch_size=slot.batch_size,
            stage_ns=slot.stage_ns,
            h2d_ns=span("h2d_start", "h2d_end"),
            compute_ns=span("compute_start", "compute_end"),
            d2h_ns=span("d2h_start", "d2h_end"),
            handover_ns=slot.handover_ns,
        )

    def abandon(self, slot: CudaSlot) -> None:
        for stream in (self.h2d_stream, self.compute_stream, self.d2h_stream):
            stream.synchronize()
        slot.copied_out, slot.staged = {}, {}

    def poison(self, slot: CudaSlot) -> None:
        for table in (slot.host_in, slot.device_in, slot.host_out):
            for buffer in table.values():
                if buffer.raw is not None:
                    buffer.raw.fill_(0xFF)
        if slot.device_in:
            self._torch.cuda.synchronize(self.device)


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A numpy view of a host tensor; bfloat16 goes through ml_dtypes."""
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(DataType.BF16.numpy_dtype)
    return tensor.numpy()


@contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX (roctx on ROCm) range visible in nsys / rocprof timelines; a no-op when the
    torch build has no NVTX support."""
    nvtx = _nvtx()
    if nvtx is None:
        yield
        return
    nvtx.range_push(name)
    try:
        yield
    finally:
        nvtx.range_pop()


@functools.cache
def _nvtx() -> Any:
    import torch

    try:
        torch.cuda.nvtx.range_push("headrace")
        torch.cuda.nvtx.range_pop()
    except (RuntimeError, AttributeError):
        return None
    return torch.cuda.nvtx
