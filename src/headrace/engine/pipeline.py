"""The N-way buffered execution pipeline.

Contract
--------
- **Slots.** A pipeline owns ``num_buffers`` slots (N >= 1; N = 1 is the sequential baseline).
  A slot owns every buffer one batch needs between its stages (host input buffers, pinned on a
  GPU; device buffers; pinned host output buffers; CUDA events) and reuses them for later
  batches, growing a buffer only when a larger batch arrives.
- **Stages.** Each batch passes three threads in order: *stage* (take a free slot, run the
  optional ``preprocess``, collate the requests straight into the slot's host buffers),
  *launch* (on a GPU: enqueue H2D, compute and D2H on three CUDA streams chained by events;
  on the CPU: run the compute, which releases the GIL), and *hand-over* (wait for the batch's
  D2H, copy the outputs out of the slot, release the slot, complete the future). So batch k+1
  is staged and copied while batch k computes and batch k-1 is copied back.
- **Ownership.** A slot belongs to exactly one batch from the moment the stage thread takes it
  until hand-over releases it, and to one thread at a time (queues pass it on). Hand-over
  *copies* the outputs out of the slot before releasing it, so the caller owns its outputs and
  a slot is never rewritten while anyone can still read it. The compute callable must not keep
  references to its inputs (the :class:`~headrace.backends.base.Backend` promise).
- **Ordering and threads.** ``submit`` may be called from any thread and never blocks; batches
  run and futures complete in submission order. The queue in front of the slots is unbounded:
  callers bound their own in-flight batches (the instance pool's depth, the benchmark's
  deque of futures: submit while there is room, otherwise wait on the oldest). Future callbacks run on the hand-over thread:
  keep them short.
- **Errors.** An exception in any stage fails that batch's future only; its slot is returned
  (after the device is done with it) and the pipeline keeps running.
- **Shutdown.** ``close()`` refuses new batches (``Unavailable``), finishes (or with
  ``drain=False`` refuses) those queued, and joins the threads.

Timings of each batch come back with its outputs (:class:`PipelineResult`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from headrace.engine.slots import (
    Compute,
    PipelineOptions,
    PipelineResult,
    Preprocess,
    Requests,
    SlotBase,
    SlotStages,
)
from headrace.errors import InvalidInput, Unavailable

__all__ = [
    "Compute",
    "Pipeline",
    "PipelineOptions",
    "PipelineResult",
    "Preprocess",
    "Requests",
    "SlotBase",
    "SlotStages",
    "make_pipeline",
]


@dataclass(eq=False)
class _Batch:
    requests: Requests
    future: Future[PipelineResult]
    slot: Any = None
    error: BaseException | None = None
    cancelled: bool = False


_STOP = object()


class _Worker:
    """One stage thread: takes batches in order, runs its step, passes them on in order."""

    def __init__(
        self,
        name: str,
        step: Callable[[_Batch], None],
        inbox: queue.SimpleQueue[Any],
        forward: Callable[[Any], None],
        *,
        sees_failures: bool = False,
    ) -> None:
        self._step = step
        self._sees_failures = sees_failures
        self._inbox = inbox
        self._forward = forward
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                self._forward(_STOP)
                return
            if self._sees_failures or (item.error is None and not item.cancelled):
                try:
                    self._step(item)
                except BaseException as exc:
                    item.error = exc
            self._forward(item)


class Pipeline:
    """N slots, three stage threads, futures completed in submission order."""

    def __init__(self, stages: SlotStages[Any], options: PipelineOptions) -> None:
        if options.num_buffers < 1:
            raise InvalidInput(f"num_buffers must be at least 1, got {options.num_buffers}")
        self.options = options
        self._stages = stages
        self._free: queue.SimpleQueue[SlotBase] = queue.SimpleQueue()
        for index in range(options.num_buffers):
            self._free.put(stages.make_slot(index))
        self._lock = threading.Lock()
        self._closed = False
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        to_launch: queue.SimpleQueue[Any] = queue.SimpleQueue()
        to_hand_over: queue.SimpleQueue[Any] = queue.SimpleQueue()
        prefix = f"{options.name}/" if options.name else ""
        self._workers = [
            _Worker(f"{prefix}stage", self._stage, self._pending, to_launch.put),
            _Worker(f"{prefix}launch", self._launch, to_launch, to_hand_over.put),
            _Worker(
                f"{prefix}hand-over",
                self._hand_over_step,
                to_hand_over,
                _ignore,
                sees_failures=True,
            ),
        ]
        self._threads = {worker.thread for worker in self._workers}
        self._inline_slot: SlotBase | None = None

    @property
    def num_buffers(self) -> int:
        return self.options.num_buffers

    def run_now(self, requests: Requests) -> PipelineResult:
        """Run one batch through all three stages on the calling thread, and return it.

        For batches so short that handing them between threads costs more than running them.
        The batch uses a slot of its own, so it may run while the stage threads hold others.
        Call it from one thread at a time.
        """
        if self._closed:  # a plain read: closing needs no ordering with this thread's batch
            raise Unavailable(f"pipeline '{self.options.name}' is closed")
        if self._inline_slot is None:
            self._inline_slot = self._stages.make_slot(self.options.num_buffers)
        slot = self._inline_slot
        try:
            self._stages.stage(slot, requests)
            self._stages.launch(slot)
            return self._result(slot)
        except BaseException:
            self._stages.abandon(slot)
            raise
        finally:
            if self.options.poison:
                self._stages.poison(slot)

    def submit(self, requests: Requests) -> Future[PipelineResult]:
        """Queue one batch made of ``requests`` (merged along the batch dimension)."""
        future: Future[PipelineResult] = Future()
        with self._lock:
            if self._closed:
                raise Unavailable(f"pipeline '{self.options.name}' is closed")
            self._pending.put(_Batch(requests, future))
        return future

    def close(self, *, drain: bool = True) -> None:
        """Refuse new batches; finish queued ones (or refuse them too); join the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not drain:
                self._refuse_pending()
            self._pending.put(_STOP)
        if threading.current_thread() in self._threads:
            return  # closed from a future callback: the threads exit on their own
        for worker in self._workers:
            worker.thread.join()

    def _refuse_pending(self) -> None:
        while True:
            try:
                batch = self._pending.get_nowait()
            except queue.Empty:
                return
            batch.future.set_exception(Unavailable("pipeline closed before the batch ran"))

    def _stage(self, batch: _Batch) -> None:
        if not batch.future.set_running_or_notify_cancel():
            batch.cancelled = True
            return
        batch.slot = self._free.get()
        self._stages.stage(batch.slot, batch.requests)

    def _launch(self, batch: _Batch) -> None:
        self._stages.launch(batch.slot)

    def _hand_over_step(self, batch: _Batch) -> None:
        """Runs for every batch (errors included): the slot goes back, the future completes."""
        if batch.cancelled:
            return
        result: PipelineResult | None = None
        if batch.error is None:
            try:
                result = self._result(batch.slot)
            except BaseException as exc:
                batch.error = exc
        if batch.slot is not None:
            self._release(batch)
        if result is not None:
            batch.future.set_result(result)
        else:
            batch.future.set_exception(batch.error or RuntimeError("batch lost its result"))

    def _result(self, slot: SlotBase) -> PipelineResult:
        outputs = self._stages.hand_over(slot)
        per_request, slot.per_request = slot.per_request, None
        return PipelineResult(outputs, self._stages.times(slot), slot.sizes, per_request)

    def _release(self, batch: _Batch) -> None:
        slot = batch.slot
        batch.slot = None
        try:
            if batch.error is not None:
                self._stages.abandon(slot)
            if self.options.poison:
                self._stages.poison(slot)
        except BaseException as exc:
            batch.error = batch.error or exc
        self._free.put(slot)


def _ignore(item: Any) -> None:
    """The last stage forwards nowhere."""


def make_pipeline(
    compute: Compute, *, batched: bool, device: str = "cpu", options: PipelineOptions | None = None
) -> Pipeline:
    """A CUDA pipeline when ``device`` is ``cuda[:N]`` (``compute`` then takes and returns
    torch tensors on it), otherwise the CPU pipeline (numpy in, numpy out)."""
    options = options or PipelineOptions()
    if device.startswith("cuda"):
        from headrace.engine.cuda import CudaStages

        return Pipeline(CudaStages(compute, batched, device, options), options)
    from headrace.engine.cpu import CpuStages

    return Pipeline(CpuStages(compute, batched, options), options)
