"""The pipeline's half for backends that answer request by request (Triton's python backend).

Such a backend gets the batch's :class:`~headrace.types.WorkItem` objects themselves (ids,
sequence flags, parameters, response sinks), not a merged batch, so there is nothing to collate
or copy: the stage thread only counts rows, the launch thread calls ``execute_requests``, and
hand-over passes each request's result on. The batch still gets the pipeline's ordering,
threads, ``run_now``, draining and timings, like every other backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from headrace.backends.base import RequestResult
from headrace.engine.buffers import request_sizes
from headrace.engine.slots import Requests, SlotBase, SlotStages
from headrace.engine.stats import StageTimes
from headrace.errors import ModelExecutionError
from headrace.types import Outputs, WorkItem

__all__ = ["ExecuteRequests", "RequestListSlot", "RequestListStages"]

ExecuteRequests = Callable[[Sequence[WorkItem]], list[RequestResult]]
"""Runs one batch of work items; one result per item (see ``Backend.execute_requests``)."""


@dataclass(eq=False)
class RequestListSlot(SlotBase):
    items: Sequence[WorkItem] = ()
    compute_ns: int = 0
    results: list[RequestResult] = field(default_factory=list)


class RequestListStages(SlotStages[RequestListSlot]):
    """Stage (count rows) → execute the request list → hand each request its result."""

    def __init__(self, execute: ExecuteRequests, batched: bool, name: str = "") -> None:
        self._execute = execute
        self._batched = batched
        self._name = name

    def make_slot(self, index: int) -> RequestListSlot:
        return RequestListSlot(index)

    def stage(self, slot: RequestListSlot, requests: Requests) -> None:
        start = time.monotonic_ns()
        slot.items = requests
        slot.sizes = tuple(request_sizes([item.inputs for item in requests], self._batched))
        slot.batch_size = sum(slot.sizes)
        slot.stage_ns = time.monotonic_ns() - start

    def launch(self, slot: RequestListSlot) -> None:
        start = time.monotonic_ns()
        results = self._execute(slot.items)
        slot.compute_ns = time.monotonic_ns() - start
        if len(results) != len(slot.items):
            raise ModelExecutionError(
                f"model instance '{self._name}' returned {len(results)} results for "
                f"{len(slot.items)} requests"
            )
        slot.results = results

    def hand_over(self, slot: RequestListSlot) -> Outputs:
        slot.per_request, slot.results, slot.items = slot.results, [], ()
        return {}

    def times(self, slot: RequestListSlot) -> StageTimes:
        return StageTimes(
            batch_size=slot.batch_size, stage_ns=slot.stage_ns, compute_ns=slot.compute_ns
        )

    def abandon(self, slot: RequestListSlot) -> None:
        slot.items, slot.results, slot.per_request = (), [], None
