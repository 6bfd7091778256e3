"""The instance pool: a model version's ``ModelInstance`` objects and the batches they hold.

An instance holds at most ``depth`` batches in flight (default: ``ModelInstance.depth``, the
pipeline's slots on a GPU so copies overlap compute, one on the CPU); instances of a group run
concurrently, each on its own pipeline threads. Batches go to the least busy instance that is
alive (a Ray actor being restarted is not; while none is, batches fail at once, see
:mod:`headrace.engine.ray_executor`).
``submit_requests_timed`` of an instance (see :mod:`headrace.engine.executor`) never blocks (the pipeline contract), so batches are
submitted straight from the event loop; completions come back through
``call_soon_threadsafe``. All accounting happens on the event loop thread.

Short batches run on the loop thread. Handing a batch to the pipeline's threads and back costs
tens of microseconds of thread switches and GIL hand-offs, more than an identity model or a
small MLP takes to execute. So each instance keeps a moving average of its batches' execution
time on the loop thread, and while that stays under ``run_now_below_us`` (and the instance has
nothing else in flight) the next batch runs at once on the calling thread. A slower batch
raises the average and sends the following ones back to the threads.

What a batch costs on the threads is no guide: there it also waits for the GIL while the loop
thread parses requests, so a Python model that takes 50 µs shows 200 µs, and would never come
back. Instead, when a batch on the threads took less than ``_PROBE_FACTOR`` times the
threshold, the instance probes: its next batch runs on the loop thread (at most once per
``_PROBE_INTERVAL_NS``), and that one measurement replaces the loop-thread average. A model
that sleeps or waits on I/O shows its whole wait on the threads too, so it is never probed.
The first batch always goes to the threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from headrace.backends.base import RequestResult
from headrace.engine.executor import Executor
from headrace.engine.instance import TimedRequests
from headrace.engine.stats import StageTimes
from headrace.errors import HeadraceError, InvalidConfig, ModelExecutionError
from headrace.types import WorkItem

__all__ = ["BatchOutcome", "InstancePool", "Lease"]


@dataclass(frozen=True)
class Lease:
    """The right to run one batch on instance ``index`` (from ``try_acquire``)."""

    index: int


@dataclass(slots=True)
class BatchOutcome:
    """What a batch produced: per-request outputs or errors, and how long it took.

    An entry of None means the backend answered that request through its sink (decoupled).

    A batch that failed as a whole carries its error in every request's entry and no
    ``times``. ``start_ns``/``end_ns`` bracket the batch from submission to completion
    (``time.monotonic_ns``); ``times`` are the pipeline's own stage timings.
    """

    results: list[RequestResult]
    start_ns: int
    end_ns: int
    instance: str
    times: StageTimes | None = None


_COST_WEIGHT = 0.25
"""Weight of the newest batch in an instance's moving averages of execution time."""

_PROBE_FACTOR = 10.0
"""Batches on the threads under this many times the threshold make the instance probe."""

_PROBE_INTERVAL_NS = 1_000_000_000
"""At most one probe per instance per this long, so a model that is slow on the loop thread
costs it at most one batch a second."""


def _average(previous: float | None, cost: float) -> float:
    return cost if previous is None else previous + _COST_WEIGHT * (cost - previous)


@dataclass
class _Member:
    instance: Executor
    depth: int
    in_flight: int = 0
    loop_cost_ns: float | None = None
    """Moving average of batches run on the loop thread (None until one ran there)."""
    thread_cost_ns: float | None = None
    """Moving average of batches on the pipeline's threads, GIL waits included."""
    last_probe_ns: int | None = None
    up: bool = True
    """Whether the instance was alive at the pool's last look (``free_slots``, ``acquire``)."""

    def observe(self, times: StageTimes | None, *, ran_now: bool, probe: bool) -> None:
        if times is None:
            return
        cost = float(times.total_ns)
        if not ran_now:
            self.thread_cost_ns = _average(self.thread_cost_ns, cost)
        elif probe:
            self.loop_cost_ns = cost  # a fresh look replaces whatever was known before
        else:
            self.loop_cost_ns = _average(self.loop_cost_ns, cost)

    def runs_now(self, threshold_ns: float, now_ns: int) -> tuple[bool, bool]:
        """Whether the batch being dispatched runs on the loop thread, and if as a probe."""
        if threshold_ns <= 0 or self.in_flight != 1 or not self.instance.can_run_now:
            return False, False  # in_flight 1: the batch being dispatched is the only one
        if self.loop_cost_ns is not None and self.loop_cost_ns < threshold_ns:
            return True, False
        if self.thread_cost_ns is None or self.thread_cost_ns >= threshold_ns * _PROBE_FACTOR:
            return False, False
        if self.last_probe_ns is not None and now_ns - self.last_probe_ns < _PROBE_INTERVAL_NS:
            return False, False
        self.last_probe_ns = now_ns
        return True, True


class InstancePool:
    """Hands batches to free instances; ``capacity`` batches may be in flight at once."""

    def __init__(
        self,
        instances: Sequence[Executor],
        *,
        depth: int | None = None,
        run_now_below_us: float = 0.0,
    ) -> None:
        if not instances:
            raise InvalidConfig("an instance pool needs at least one model instance")
        if depth is not None and depth < 1:
            raise InvalidConfig(f"pool depth must be at least 1, got {depth}")
        if run_now_below_us < 0:
            raise InvalidConfig(f"--run-now-below-us must not be negative, got {run_now_below_us}")
        self._members = [
            _Member(
                instance=instance,
                depth=depth if depth is not None else max(1, int(instance.depth)),
            )
            for instance in instances
        ]
        self._run_now_below_ns = run_now_below_us * 1000.0
        self._listeners: list[Callable[[], None]] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._members)

    def keep_off_the_loop(self) -> None:
        """Never run a batch on the loop thread: for a model whose batches are timed (a
        batch that hangs there would stop the loop, and the timer that ends it)."""
        self._run_now_below_ns = 0.0

    @property
    def instances(self) -> list[Executor]:
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
        """Slots free on the instances that are up (on all when none is: each fails at once).

        It also takes the snapshot of which instances are up that ``try_acquire`` uses, so a
        scheduler that saw a free slot here gets a lease there, on the same thread."""
        members = self._up_members()
        return sum(max(0, member.depth - member.in_flight) for member in members)

    def in_flight_per_instance(self) -> list[int]:
        return [member.in_flight for member in self._members]

    def add_release_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop thread each time a batch finishes and frees a slot."""
        self._listeners.append(callback)

    def remove_release_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def try_acquire(self, affinity: int | None = None) -> Lease | None:
        """Reserve a slot on the least busy instance with room, or None when all are full.

        ``affinity`` restricts the choice to that instance (a sequence's state lives there).
        """
        if affinity is not None:
            member = self._members[affinity]
            if member.in_flight >= member.depth:
                return None
            member.in_flight += 1
            return Lease(affinity)
        best = self._least_busy(up_only=any(member.up for member in self._members))
        if best is None:
            return None
        self._members[best].in_flight += 1
        return Lease(best)

    @property
    def alive(self) -> bool:
        """Whether any instance can run a batch: a remote one (a Ray actor) is down while its
        actor is dead and being restarted; a local one is always up."""
        return any(_alive(member.instance) for member in self._members)

    def _up_members(self) -> list[_Member]:
        """Refresh each member's ``up`` from its instance; those up, or all when none is."""
        for member in self._members:
            member.up = _alive(member.instance)
        return [member for member in self._members if member.up] or self._members

    def _least_busy(self, *, up_only: bool) -> int | None:
        """The member with room and the fewest batches (among those up, with ``up_only``;
        otherwise any: a batch on a down instance fails at once, saying why)."""
        best: int | None = None
        for index, member in enumerate(self._members):
            if up_only and not member.up:
                continue
            if member.in_flight < member.depth and (
                best is None or member.in_flight < self._members[best].in_flight
            ):
                best = index
        return best

    async def acquire(self, affinity: int | None = None) -> Lease:
        """Wait for a free slot (first come, first served) and reserve it."""
        while True:
            self._up_members()
            if not self._waiters:
                lease = self.try_acquire(affinity)
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
            lease = self.try_acquire(affinity)
            if lease is not None:
                return lease

    def execute(
        self, lease: Lease, requests: Sequence[WorkItem | Mapping[str, np.ndarray]]
    ) -> asyncio.Future[BatchOutcome]:
        """Start one batch on the leased instance now; the slot frees when the batch is done."""
        loop = asyncio.get_running_loop()
        member = self._members[lease.index]
        name = member.instance.name
        outcome: asyncio.Future[BatchOutcome] = loop.create_future()
        count = len(requests)
        start_ns = time.monotonic_ns()
        now, probe = member.runs_now(self._run_now_below_ns, start_ns)
        if now:
            result = _run_now(member.instance, requests, start_ns)
            loop.call_soon(self._complete, lease, outcome, result, True, probe)
            return outcome

        def finish(done: Future[TimedRequests]) -> None:
            result = _outcome(done, count, name, start_ns)
            try:
                loop.call_soon_threadsafe(self._complete, lease, outcome, result, False, False)
            except RuntimeError:
                pass  # the loop closed while the batch ran: nobody is left to tell

        try:
            future = member.instance.submit_requests_timed(requests)
        except BaseException as exc:
            error = _as_error(name, exc)
            failed = BatchOutcome([error] * count, start_ns, start_ns, name)
            self._complete(lease, outcome, failed, False, False)
            return outcome
        future.add_done_callback(finish)
        return outcome

    async def run(
        self,
        requests: Sequence[WorkItem | Mapping[str, np.ndarray]],
        affinity: int | None = None,
    ) -> list[RequestResult]:
        """Run one batch on the first free instance; per-request outputs or errors."""
        lease = await self.acquire(affinity)
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
        self,
        lease: Lease,
        outcome: asyncio.Future[BatchOutcome],
        result: BatchOutcome,
        ran_now: bool,
        probe: bool,
    ) -> None:
        member = self._members[lease.index]
        member.in_flight -= 1
        member.observe(result.times, ran_now=ran_now, probe=probe)
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


def _alive(instance: Executor) -> bool:
    return bool(getattr(instance, "alive", True))


def _run_now(
    instance: Executor,
    requests: Sequence[WorkItem | Mapping[str, np.ndarray]],
    start_ns: int,
) -> BatchOutcome:
    try:
        timed = instance.run_requests_now(requests)
    except BaseException as exc:
        return _failed(_as_error(instance.name, exc), len(requests), instance.name, start_ns)
    return _finished(timed, len(requests), instance.name, start_ns)


def _outcome(done: Future[TimedRequests], count: int, name: str, start_ns: int) -> BatchOutcome:
    if done.cancelled():
        error = ModelExecutionError(f"model instance '{name}' cancelled a batch")
        return _failed(error, count, name, start_ns)
    if done.exception() is not None:
        return _failed(_as_error(name, done.exception()), count, name, start_ns)  # type: ignore[arg-type]
    return _finished(done.result(), count, name, start_ns)


def _finished(timed: TimedRequests, count: int, name: str, start_ns: int) -> BatchOutcome:
    if len(timed.results) == count:
        return BatchOutcome(list(timed.results), start_ns, time.monotonic_ns(), name, timed.times)
    error = ModelExecutionError(
        f"model instance '{name}' returned {len(timed.results)} results "
        f"for a batch of {count} requests"
    )
    return _failed(error, count, name, start_ns)


def _failed(error: BaseException, count: int, name: str, start_ns: int) -> BatchOutcome:
    return BatchOutcome([error] * count, start_ns, time.monotonic_ns(), name)


def _as_error(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, HeadraceError):
        return exc
    error = ModelExecutionError(f"model instance '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
