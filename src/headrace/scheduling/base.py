"""The scheduler contract: how the server core hands validated work items to a model's instances.

Promises:
- ``submit`` is called on the server's asyncio loop with a :class:`~headrace.types.WorkItem`
  whose inputs were already validated against the model configuration (names, dtypes, shapes,
  batch size). It either refuses at once, raising a :mod:`headrace.errors` exception (a full
  queue raises :class:`~headrace.errors.Unavailable`), or accepts the item and returns a
  ticket. An accepted item is answered exactly once through its sink: ``send(outputs,
  final=True)`` with every configured output (the core filters what the client asked for),
  or ``fail(error)`` with an error that concerns that request alone. A decoupled model
  answers through the sink itself, any number of times and then final; its scheduler only
  fails the sink when the model could not run the request.
- A request whose ``timeout_us`` passes while queued fails with
  :class:`~headrace.errors.DeadlineExceeded` (or is delayed, per the queue policy).
- ``withdraw(ticket)`` says the caller went away: a request still queued leaves the queue at
  once; one already in a batch runs to the end and its answer is dropped by the sink.
- ``drain`` stops accepting new requests (they raise ``Unavailable``) and returns once every
  accepted request has completed.
- Timings go to the ``StatsSink`` given at construction, in nanoseconds from
  ``time.monotonic_ns()``.
- A scheduler that needs other models (an ensemble's steps) reaches them through the
  :class:`~headrace.scheduling.router.Router` it was built with, never through the server.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from headrace.engine.stats import StatsSink
from headrace.scheduling.sinks import FutureSink
from headrace.types import Outputs, WorkItem

__all__ = ["Scheduler", "StatsSink", "batch_ran", "ran"]


def ran(value: Any) -> bool:
    """Whether a request's result counts as a success in its model's statistics: outputs, an
    answer through its sink (None), or an error the model answered with (Triton counts a
    python model's error response so: the request ran)."""
    return not isinstance(value, BaseException) or getattr(value, "answered", False)


def batch_ran(results: Sequence[Any]) -> bool:
    """Whether an execution counts in the model's batch statistics: one that failed for every
    request (the model raised) adds no execution and no inferences, as in Triton."""
    return any(ran(value) for value in results)


class Scheduler(ABC):
    """Queues work items for one model version and executes them on its instance pool."""

    @abstractmethod
    def submit(self, item: WorkItem) -> Any:
        """Accept ``item`` (its sink is answered later) and return its ticket, or raise."""

    @abstractmethod
    def withdraw(self, ticket: Any) -> None:
        """The caller of an accepted item went away; forget it if it is still queued."""

    @abstractmethod
    async def drain(self) -> None:
        """Refuse new requests and wait until every accepted one has completed."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Requests accepted but not yet completed (``nv_inference_pending_request_count``)."""

    async def schedule(
        self, inputs: Mapping[str, np.ndarray], *, priority: int = 0, timeout_us: int = 0
    ) -> Outputs:
        """Execute one request with a single response and return its outputs.

        A convenience over ``submit`` for callers without a work item of their own.
        """
        sink = FutureSink(asyncio.get_running_loop())
        ticket = self.submit(WorkItem(inputs, sink, priority=priority, timeout_us=timeout_us))
        try:
            return await sink.future
        except asyncio.CancelledError:
            self.withdraw(ticket)
            raise
