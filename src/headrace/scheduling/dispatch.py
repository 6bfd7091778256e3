"""The machinery every queueing scheduler shares: accept, queue, pump, execute, resolve.

A subclass only says how requests queue and which ones form the next batch. This class owns
the rest: one ticket per work item (each is answered through its own sink, so responses never
cross), the pending count, draining, statistics, and an event-driven pump. The pump runs (via
``call_soon``, so requests arriving in the same loop iteration can share a batch) whenever a
request arrives, an instance frees a slot, or a timer set with ``call_at`` for the next queue
deadline or batching delay fires. Nothing polls.

A model may bound how long a batch runs (``HEADRACE_EXECUTION_TIMEOUT_MS`` in its config's
``parameters``; Triton's timeouts bound only the queue): past it, the batch's requests fail
with DeadlineExceeded (503 / UNAVAILABLE) naming the model, so a hung model's callers get an
answer. Python cannot stop the model's thread, so its instance stays busy until it returns;
the requests queued behind it are bounded by the queue policy (``max_queue_size``,
``default_timeout_microseconds``) as in Triton.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from headrace.backends.base import RequestResult
from headrace.errors import (
    DeadlineExceeded,
    HeadraceError,
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
)
from headrace.scheduling.base import Scheduler, StatsSink, batch_ran, ran
from headrace.scheduling.pool import BatchOutcome, InstancePool
from headrace.scheduling.queue_policy import QueuedRequest
from headrace.types import WorkItem

__all__ = ["EXECUTION_TIMEOUT_PARAMETER", "NullStats", "QueueingScheduler", "execution_timeout_ms"]

EXECUTION_TIMEOUT_PARAMETER = "HEADRACE_EXECUTION_TIMEOUT_MS"
"""The model config parameter that bounds how long one batch may run (milliseconds)."""


def execution_timeout_ms(config: Any) -> int:
    """The model's ``HEADRACE_EXECUTION_TIMEOUT_MS`` parameter; 0 (none) when absent."""
    if EXECUTION_TIMEOUT_PARAMETER not in config.parameters:
        return 0
    text = config.parameters[EXECUTION_TIMEOUT_PARAMETER].string_value.strip()
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidConfig(
            f"parameter {EXECUTION_TIMEOUT_PARAMETER} of model '{config.name}' must be a "
            f"whole number of milliseconds (0: none), got '{text}'"
        )
    return value


class NullStats:
    """A StatsSink that drops everything (for callers that keep no statistics)."""

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None:
        pass

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None:
        pass


class QueueingScheduler(Scheduler):
    """A Scheduler that queues requests and executes batches of them on an InstancePool."""

    def __init__(
        self,
        pool: InstancePool,
        stats: StatsSink | None = None,
        *,
        name: str = "",
        max_batch_size: int = 0,
    ) -> None:
        self._pool = pool
        self._stats: StatsSink = stats if stats is not None else NullStats()
        self.name = name
        self.max_batch_size = max_batch_size
        self.execution_timeout_ms = 0
        """How long a batch may run before its requests fail (0: as long as it takes)."""
        self._pending = 0
        self._batches_in_flight = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_ns = 0
        pool.add_release_listener(self._kick)

    # -- what a subclass decides ------------------------------------------------------------

    @abstractmethod
    def _push(self, item: QueuedRequest, priority: int, timeout_us: int, now_ns: int) -> None:
        """Queue ``item``; raise Unavailable when the queue is full."""

    @abstractmethod
    def _discard(self, item: QueuedRequest) -> None:
        """Forget ``item`` if it is still queued (its caller went away)."""

    @abstractmethod
    def _queued(self) -> int:
        """Requests waiting in the queue."""

    @abstractmethod
    def _next_batch(self, now_ns: int) -> list[QueuedRequest] | None:
        """Remove and return the requests of the next batch, or None to wait for more."""

    def _expire(self, now_ns: int) -> list[QueuedRequest]:
        """Apply queue timeouts; return the requests to reject (none by default)."""
        return []

    def _wake_ns(self, now_ns: int, slot_free: bool) -> int | None:
        """When the pump must run again even if nothing arrives (None: only on events)."""
        return None

    # -- Scheduler --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def draining(self) -> bool:
        return self._draining

    def submit(self, item: WorkItem) -> QueuedRequest:
        start_ns = time.monotonic_ns()
        try:
            if self._draining:
                raise Unavailable(f"model '{self.name}' is shutting down; request refused")
            ticket = QueuedRequest(item, self._request_size(item.inputs), start_ns)
            self._push(ticket, item.priority, item.timeout_us, start_ns)
        except InvalidInput:
            raise  # refused before queueing: Triton counts no request
        except HeadraceError:
            self._record_request(False, 0, start_ns, time.monotonic_ns())
            raise
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._pending += 1
        self._idle.clear()
        self._kick()
        return ticket

    def withdraw(self, ticket: QueuedRequest) -> None:
        if ticket.settled or not ticket.queued:
            return  # answered already, or in a batch: it finishes there
        self._discard(ticket)
        self._settle(ticket)

    async def drain(self) -> None:
        """Refuse new requests, dispatch queued ones without further delay, wait for all."""
        self._draining = True
        self._loop = asyncio.get_running_loop()
        self._kick()
        await self._idle.wait()

    # -- the pump ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._kick_handle is None and self._loop is not None and not self._loop.is_closed():
            self._kick_handle = self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._kick_handle = None
        now_ns = time.monotonic_ns()
        for item in self._expire(now_ns):
            self._reject_late(item, now_ns)
        while self._queued() and self._pool.free_slots > 0:
            batch = self._next_batch(now_ns)
            if not batch:
                break
            self._dispatch(batch, now_ns)
        self._arm_timer(now_ns, self._wake_ns(now_ns, self._pool.free_slots > 0))

    def _arm_timer(self, now_ns: int, wake_ns: int | None) -> None:
        if self._timer is not None and (wake_ns is None or wake_ns != self._timer_ns):
            self._timer.cancel()
            self._timer = None
        if wake_ns is None or self._timer is not None or self._loop is None:
            return
        self._timer_ns = wake_ns
        when = self._loop.time() + max(0, wake_ns - now_ns) / 1e9
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _dispatch(self, batch: list[QueuedRequest], now_ns: int) -> None:
        lease = self._pool.try_acquire()
        if lease is None:  # _pump checked free_slots on this thread: cannot happen
            error = InternalError(f"model '{self.name}': no free instance for a formed batch")
            for item in batch:
                self._resolve(item, error, now_ns, now_ns)
            return
        self._batches_in_flight += 1
        outcome = self._pool.execute(lease, [ticket.item for ticket in batch])
        timer = None
        if self.execution_timeout_ms and self._loop is not None:
            timer = self._loop.call_later(
                self.execution_timeout_ms / 1000, self._overdue, batch, now_ns
            )
        outcome.add_done_callback(partial(self._finish_batch, batch, now_ns, timer))

    def _overdue(self, batch: list[QueuedRequest], dispatch_ns: int) -> None:
        """The batch ran past the execution timeout: fail its requests now."""
        error = DeadlineExceeded(
            f"model '{self.name}' did not finish a batch within {self.execution_timeout_ms} ms "
            f"({EXECUTION_TIMEOUT_PARAMETER}); its requests fail, the instance stays busy "
            "until the model returns"
        )
        now_ns = time.monotonic_ns()
        for ticket in batch:
            if not ticket.settled:
                self._resolve(ticket, error, dispatch_ns, now_ns)

    def _finish_batch(
        self,
        batch: list[QueuedRequest],
        dispatch_ns: int,
        timer: asyncio.TimerHandle | None,
        outcome: asyncio.Future[BatchOutcome],
    ) -> None:
        self._batches_in_flight -= 1
        if timer is not None:
            timer.cancel()
        result = outcome.result()
        if result.times is not None and batch_ran(result.results):
            self._stats.record_batch(  # a batch that failed as a whole adds no batch stats
                batch_size=sum(item.batch_size for item in batch),
                compute_input_ns=result.times.compute_input_ns,
                compute_infer_ns=result.times.compute_infer_ns,
                compute_output_ns=result.times.compute_output_ns,
            )
        for item, value in zip(batch, result.results):
            if item.item.trace is not None:  # sampled for tracing: this batch's span
                item.item.trace.computed(result.start_ns, result.end_ns)
            if not item.settled:  # settled here only when the execution timeout failed it
                self._resolve(item, value, dispatch_ns, time.monotonic_ns())
        self._check_idle()

    def _resolve(
        self,
        ticket: QueuedRequest,
        value: RequestResult,
        dispatch_ns: int,
        end_ns: int,
    ) -> None:
        """Answer one request (None: the backend answered through its sink) and count it out."""
        self._record_request(ran(value), dispatch_ns - ticket.enqueue_ns, ticket.enqueue_ns, end_ns)
        if not ticket.settled:  # _settle, inline: this runs for every request
            ticket.settled = True
            self._pending -= 1
            if self._pending == 0 and self._batches_in_flight == 0:
                self._idle.set()
        sink = ticket.item.sink
        if isinstance(value, BaseException):
            sink.fail(_as_headrace_error(self.name, value))
        elif value is not None:
            sink.send(value, final=True)

    def _settle(self, ticket: QueuedRequest) -> None:
        if not ticket.settled:
            ticket.settled = True
            self._pending -= 1
            self._check_idle()

    def _reject_late(self, item: QueuedRequest, now_ns: int) -> None:
        waited_us = (now_ns - item.enqueue_ns) // 1000
        error = DeadlineExceeded(
            f"request timed out in the queue of model '{self.name}' after {waited_us} us"
        )
        self._resolve(item, error, now_ns, now_ns)

    # -- helpers ----------------------------------------------------------------------------

    def _request_size(self, inputs: Mapping[str, np.ndarray]) -> int:
        if self.max_batch_size <= 0:
            return 1
        for name, value in inputs.items():
            shape = np.shape(value)
            if not shape:
                raise InvalidInput(
                    f"input '{name}' is a scalar; model '{self.name}' expects a batch dimension"
                )
            size = int(shape[0])
            if size > self.max_batch_size:
                raise InvalidInput(
                    f"input '{name}' has batch size {size}, model '{self.name}' accepts at most "
                    f"{self.max_batch_size}"
                )
            return size
        return 1

    def _record_request(self, success: bool, queue_ns: int, start_ns: int, end_ns: int) -> None:
        self._stats.record_request(
            success=success, queue_ns=max(0, queue_ns), total_ns=max(0, end_ns - start_ns)
        )

    def _check_idle(self) -> None:
        if self._pending == 0 and self._batches_in_flight == 0:
            self._idle.set()


def _as_headrace_error(name: str, exc: BaseException) -> HeadraceError:
    if isinstance(exc, HeadraceError):
        return exc
    error = ModelExecutionError(f"model '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
