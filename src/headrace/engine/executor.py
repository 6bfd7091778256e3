"""What the instance pool needs of an instance, wherever the instance lives.

A :class:`~headrace.engine.instance.ModelInstance` in this process is one; a Ray actor that
holds a ModelInstance on another core, GPU or machine (:mod:`headrace.engine.ray_executor`) is
another. The pool, the schedulers and the statistics see only this protocol, so where an
instance runs is decided by placement alone (:mod:`headrace.engine.placement`).

Promises: ``submit_requests_timed`` never blocks and its future completes on some other
thread; ``run_requests_now`` is only called when ``can_run_now`` is True, from one thread, with
nothing else of that instance in flight; ``close`` drains (or refuses) what is queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from headrace.engine.instance import Request, TimedRequests

__all__ = ["Executor"]


class Executor(Protocol):
    """One model instance as the pool drives it."""

    name: str

    @property
    def depth(self) -> int:
        """Batches worth holding in flight at once."""

    @property
    def can_run_now(self) -> bool:
        """Whether a batch may run on the caller's thread (host execution in this process)."""

    def submit_requests_timed(self, requests: Sequence[Request]) -> Future[TimedRequests]: ...

    def run_requests_now(self, requests: Sequence[Request]) -> TimedRequests: ...

    def close(self, *, drain: bool = True) -> None: ...
