"""The instance pool: a model version's ``ModelInstance`` objects and the batches they hold.

An instance holds at most ``depth`` batches in flight (default: its ``num_buffers``), so its
pipeline can stage the next batch while the current one computes; instances of a group run
concurrently, each on its own pipeline threads. Batches go to the least busy instance.
``ModelInstance.submit_requests_timed`` never blocks (the pipeline contract), so batches are
submitted straight from the event loop; completions come back through
``call_soon_threadsafe``. All accounting happens on the event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from headrace.backends.base import Outputs
from headrace.engine.instance import ModelInstance, TimedRequests
from headrace.engine.stats import StageTimes
from headrace.errors import HeadraceError, InvalidConfig, ModelExecutionError

__all__ = ["BatchOutcome", "InstancePool", "Lease"]


@dataclass(frozen=True)
class Lease:
    """The right to run one batch on instance ``index`` (from ``try_acquire``)."""

    index: int


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch produced: per-request outputs or errors, and how long it took.

    A batch that failed as a whole carries its error in every request's entry and no
    ``times``. ``start_ns``/``end_ns`` bracket the batch from submission to completion
    (``time.monotonic_ns``); ``times`` are the pipeline's own stage timings.
    """

    results: list[Outputs | BaseException]
    start_ns: int
    end_ns: int
    instance: str
    times: StageTimes | None = None


@dataclass
class _Member:
    instance: ModelInstance
    depth: int
    in_flight: int = 0


class InstancePool:
    """Hands batches to free instances; ``capacity`` batches may be in flight at once."""

    def __init__(self, instances: Sequence[ModelInstance], *, depth: int | None = None) -> None:
        if not instances:
            raise InvalidConfig("an instance pool needs at least one model instance")
        if depth is not None and depth < 1:
            raise InvalidConfig(f"pool depth must be at least 1, got {depth}")
        self._members = [
            _Member(
                instance=instance,
                depth=depth if depth is not None else max(1, int(instance.num_buffers)),
            )
            for instance in instances
        ]
        self._listeners: list[Callable[[], None]] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._members)

    @property
    def instances(self) -> list[ModelInstance]:
        return [member.instance for member in self._members]

    @property
    def capacity(self) -> int:
        """Batches the pool can hold in flight at once."""
        return sum(member.depth for member in self._members)

    @property
    def in_flight(self) -> int:
        return sum(member.in_flight for member in self._members)

    @property
    def free_slots(self) -> int:
        return self.capacity - self.in_flight

    def in_flight_per_instance(self) -> list[int]:
        return [member.in_flight for member in self._members]

    def add_release_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop thread each time a batch finishes and frees a slot."""
        self._listeners.append(callback)

    def remove_release_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def try_acquire(self) -> Lease | None:
        """Reserve a slot on the least busy instance with room, or None when all are full."""
        best: int | None = None
        for index, member in enumerate(self._members):
            if member.in_flight < member.depth and (
                best is None or member.in_flight < self._members[best].in_flight
            ):
                best = index
        if best is None:
            return None
        self._members[best].in_flight += 1
        return Lease(best)

    async def acquire(self) -> Lease:
        """Wait for a free slot (first come, first served) and reserve it."""
        while True:
            if not self._waiters:
                lease = self.try_acquire()
                if lease is not None:
                    return lease
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on the wake-up this waiter can no longer use
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            lease = self.try_acquire()
            if lease is not None:
                return lease

    def execute(
        self, lease: Lease, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> asyncio.Future[BatchOutcome]:
        """Start one batch on the leased instance now; the slot frees when the batch is done."""
        loop = asyncio.get_running_loop()
        member = self._members[lease.index]
        name = member.instance.name
        outcome: asyncio.Future[BatchOutcome] = loop.create_future()
        count = len(requests)
        start_ns = time.monotonic_ns()

        def finish(done: Future[TimedRequests]) -> None:
            result = _outcome(done, count, name, start_ns)
            try:
                loop.call_soon_threadsafe(self._complete, lease, outcome, result)
            except RuntimeError:
                pass  # the loop closed while the batch ran: nobody is left to tell

        try:
            future = member.instance.submit_requests_timed(requests)
        except BaseException as exc:
            error = _as_error(name, exc)
            self._complete(lease, outcome, BatchOutcome([error] * count, start_ns, start_ns, name))
            return outcome
        future.add_done_callback(finish)
        return outcome

    async def run(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> list[Outputs | BaseException]:
        """Run one batch on the first free instance; per-request outputs or errors."""
        lease = await self.acquire()
        outcome = await self.execute(lease, requests)
        return outcome.results

    def close(self) -> None:
        """Finish in-flight batches and close every instance (blocks; call after draining)."""
        if self._closed:
            return
        self._closed = True
        for member in self._members:
            member.instance.close()

    def _complete(
        self, lease: Lease, outcome: asyncio.Future[BatchOutcome], result: BatchOutcome
    ) -> None:
        self._members[lease.index].in_flight -= 1
        if not outcome.done():
            outcome.set_result(result)
        self._wake_one()
        for listener in list(self._listeners):
            listener()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _outcome(done: Future[TimedRequests], count: int, name: str, start_ns: int) -> BatchOutcome:
    end_ns = time.monotonic_ns()
    error: BaseException | None = None
    if done.cancelled():
        error = ModelExecutionError(f"model instance '{name}' cancelled a batch")
    elif done.exception() is not None:
        error = _as_error(name, done.exception())  # type: ignore[arg-type]
    else:
        timed = done.result()
        if len(timed.results) == count:
            return BatchOutcome(list(timed.results), start_ns, end_ns, name, timed.times)
        error = ModelExecutionError(
            f"model instance '{name}' returned {len(timed.results)} results "
            f"for a batch of {count} requests"
        )
    return BatchOutcome([error] * count, start_ns, end_ns, name)


def _as_error(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, HeadraceError):
        return exc
    error = ModelExecutionError(f"model instance '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
