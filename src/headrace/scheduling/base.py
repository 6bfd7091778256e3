"""The scheduler contract: how the server core hands validated requests to a model's instances.

Promises:
- ``schedule`` is called on the server's asyncio loop with inputs already validated against the
  model configuration (names, dtypes, shapes, batch size). It resolves to that request's
  outputs (every configured output; the core filters what the client asked for) or raises a
  :mod:`headrace.errors` exception that concerns that request alone.
- A full queue raises :class:`~headrace.errors.Unavailable` at once; a request whose
  ``timeout_us`` passes while queued raises :class:`~headrace.errors.DeadlineExceeded`
  (or is delayed, per the queue policy).
- ``drain`` stops accepting new requests (they raise ``Unavailable``) and returns once every
  accepted request has completed.
- Timings go to the ``StatsSink`` given at construction, in nanoseconds from
  ``time.monotonic_ns()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from headrace.types import Outputs

__all__ = ["Scheduler", "StatsSink"]


class StatsSink(Protocol):
    """Receives timings for Triton-style statistics and metrics."""

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None: ...

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None: ...


class Scheduler(ABC):
    """Queues requests for one model version and executes them on its instance pool."""

    @abstractmethod
    async def schedule(
        self, inputs: Mapping[str, np.ndarray], *, priority: int = 0, timeout_us: int = 0
    ) -> Outputs:
        """Execute one request (batch dimension first when the model batches)."""

    @abstractmethod
    async def drain(self) -> None:
        """Refuse new requests and wait until every accepted one has completed."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Requests accepted but not yet completed (``nv_inference_pending_request_count``)."""
