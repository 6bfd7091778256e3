"""The contract between the pipeline and its device-specific halves (CPU, CUDA, request lists).

A :class:`~headrace.engine.pipeline.Pipeline` owns the threads, the queues and the order of
batches; a :class:`SlotStages` owns what happens to one slot at each stage. The pipeline never
looks inside a slot beyond :class:`SlotBase`: what was staged, how many rows each request
brought, and (for backends that answer request by request) the per-request results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from headrace.backends.base import RequestResult
from headrace.engine.stats import StageTimes
from headrace.types import Outputs

__all__ = [
    "Compute",
    "PipelineOptions",
    "PipelineResult",
    "Preprocess",
    "Requests",
    "SlotBase",
    "SlotStages",
    "split_outputs",
]

Requests = Sequence[Any]
"""One batch's requests: input mappings for array stages, work items for request lists."""
Compute = Callable[[Mapping[str, Any]], Outputs]
"""Executes one merged batch (numpy arrays, or torch tensors on the pipeline's device)."""
Preprocess = Callable[[Sequence[Mapping[str, np.ndarray]]], Sequence[Mapping[str, np.ndarray]]]
"""Host work run on the stage thread before collation (decoding, normalisation...)."""


@dataclass(frozen=True)
class PipelineOptions:
    """How a pipeline is built; ``name`` prefixes its thread and NVTX range names."""

    num_buffers: int = 2
    pin_memory: bool = True
    name: str = ""
    preprocess: Preprocess | None = None
    poison: bool = False
    """Debug aid: fill a slot's buffers with 0xFF bytes when released, so that any reader of a
    released slot sees garbage (NaN for floats) instead of plausible stale data."""
    compute_stream: Any = None
    """CUDA only: a ``torch.cuda.Stream`` the backend computes on (ONNX Runtime's CUDA
    provider is bound to its own stream at load); None lets the pipeline make one."""


@dataclass(slots=True)
class PipelineResult:
    """One batch's outputs (host numpy arrays the caller owns) and its stage timings.

    ``outputs`` is the merged batch's; ``sizes`` says how many rows each request brought, so
    :meth:`results` splits them back. Stages that run request lists answer each request
    themselves (``per_request``) and leave ``outputs`` empty.
    """

    outputs: Outputs
    times: StageTimes
    sizes: tuple[int, ...] = ()
    per_request: list[RequestResult] | None = None

    def results(self) -> list[RequestResult]:
        """One entry per request: its outputs (views of the batch's), its error, or None."""
        if self.per_request is not None:
            return self.per_request
        return list(split_outputs(self.outputs, self.sizes or (self.times.batch_size,)))


@dataclass(eq=False)
class SlotBase:
    """What every slot records about its current batch; device halves subclass it."""

    index: int
    batch_size: int = 0
    sizes: tuple[int, ...] = ()
    stage_ns: int = 0
    handover_ns: int = 0
    per_request: list[RequestResult] | None = field(default=None, repr=False)


SlotT = TypeVar("SlotT", bound=SlotBase)


class SlotStages(ABC, Generic[SlotT]):
    """The device-specific half of a pipeline: what each stage does to a slot."""

    @abstractmethod
    def make_slot(self, index: int) -> SlotT: ...

    @abstractmethod
    def stage(self, slot: SlotT, requests: Requests) -> None:
        """Collate ``requests`` into the slot's host buffers (stage thread); set ``sizes``."""

    @abstractmethod
    def launch(self, slot: SlotT) -> None:
        """Start (GPU) or run (CPU) the copies and compute of the staged batch."""

    @abstractmethod
    def hand_over(self, slot: SlotT) -> Outputs:
        """Wait for the batch, return outputs copied out of the slot."""

    @abstractmethod
    def times(self, slot: SlotT) -> StageTimes:
        """The finished batch's stage timings."""

    def abandon(self, slot: SlotT) -> None:
        """After a failure: return once no queued device work can still touch the slot."""

    def poison(self, slot: SlotT) -> None:
        """Overwrite the slot's buffers with a sentinel (see ``PipelineOptions.poison``)."""


def split_outputs(outputs: Outputs, sizes: Sequence[int]) -> list[Outputs]:
    """Split a batch's outputs back into per-request views (no copies)."""
    if len(sizes) == 1:
        return [outputs]
    parts: list[Outputs] = [{} for _ in sizes]
    for name, value in outputs.items():
        start = 0
        for index, size in enumerate(sizes):
            parts[index][name] = value[start : start + size]
            start += size
    return parts
