"""The sequence batcher: Triton's ``sequence_batching`` for one stateful model version.

A client sends a sequence as requests with one correlation id (``sequence_id``, uint64 or
string), the first flagged START and the last END. The batcher, as Triton's does:

- binds the sequence to one instance batch slot for its life (slots per instance:
  ``max_batch_size``, at least 1, or ``oldest.max_candidate_sequences``), so every request of
  it runs on that instance (the pool's affinity), one at a time, in arrival order; requests of
  different sequences on one instance are batched together (:mod:`.sequence_slots` says how,
  per strategy);
- puts a new sequence in a backlog while every slot is taken, and hands it the first slot that
  an END or an idle release frees; a backlogged sequence's requests that pass their
  ``timeout_us`` fail with Unavailable (Triton's only per-request timeout here);
- frees a sequence's slot when its END request is dispatched, or when it has had nothing
  queued or running for ``max_sequence_idle_microseconds``; a later request on it must START
  again;
- continues an open sequence on a new START (Triton logs the conflict and ends the old one
  early: the START resets its implicit state);
- fills the control and state inputs (:mod:`.sequence_inputs`) and keeps each sequence's
  implicit state between its requests, out of what clients receive.

Refused at once with InvalidInput, each naming the id: no correlation id, an id of the wrong
kind for the model's CORRID control, a request that does not START an unknown (never seen,
ended or idle-released) sequence, a batch size other than 1, a server-filled input sent by the
client. Overload (``--default-max-queue-size`` requests queued, all sequences together; Triton
has no bound here: the flag at 0) and draining are Unavailable.

Who holds which slot is :mod:`.sequence_table`'s; how slots form a batch, per strategy,
:mod:`.sequence_slots`'; what the model is given, :mod:`.sequence_inputs`'. This module
accepts requests and runs the pump. Everything runs on the event loop thread; the pump runs
when a request arrives, a batch finishes, or the one ``call_at`` timer fires (the next idle
release, backlog timeout or batching delay); nothing polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from headrace.backends.base import RequestResult
from headrace.errors import (
    HeadraceError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    Unsupported,
)
from headrace.scheduling.base import Scheduler, StatsSink, batch_ran, ran
from headrace.scheduling.dispatch import NullStats
from headrace.scheduling.pool import BatchOutcome, InstancePool, Lease
from headrace.scheduling.queue_policy import DEFAULT_MAX_QUEUE_SIZE, MAX_QUEUE_SIZE_FLAG, queue_full
from headrace.scheduling.sequence_inputs import SequenceInputs
from headrace.scheduling.sequence_slots import DirectPlan, OldestPlan, SequenceTicket, Slot
from headrace.scheduling.sequence_table import SequenceTable
from headrace.types import WorkItem

__all__ = ["SequenceBatcher"]

_log = logging.getLogger(__name__)


class SequenceBatcher(Scheduler):
    """Schedules a ``sequence_batching`` model's requests onto slots of its instances."""

    def __init__(
        self,
        config: Any,
        pool: InstancePool,
        stats: StatsSink | None = None,
        *,
        model_dir: str = "",
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        """``config`` is the ``ModelConfig``; ``model_dir`` holds ``initial_state/`` files
        (default: the directory the pool's local instances were loaded from);
        ``max_queue_size`` bounds the requests queued, all sequences together (0: no bound)."""
        settings = config.sequence_batching
        if settings.iterative_sequence:
            raise Unsupported(f"model '{config.name}': iterative sequences are not supported")
        self.name = config.name
        self.max_batch_size = int(config.max_batch_size)
        self._pool = pool
        self._stats: StatsSink = stats if stats is not None else NullStats()
        self._inputs = SequenceInputs(config, model_dir or _model_dir(pool))
        slots = max(1, self.max_batch_size)
        self._plan: DirectPlan | OldestPlan
        if settings.HasField("oldest"):
            oldest = settings.oldest
            slots = int(oldest.max_candidate_sequences) or slots
            self._plan = OldestPlan(
                limit=max(1, self.max_batch_size),
                delay_ns=int(oldest.max_queue_delay_microseconds) * 1000,
                preferred=tuple(sorted({int(size) for size in oldest.preferred_batch_size})),
            )
        else:
            self._plan = DirectPlan(
                delay_ns=int(settings.direct.max_queue_delay_microseconds) * 1000,
                utilization=float(settings.direct.minimum_slot_utilization),
            )
        idle_us = int(settings.max_sequence_idle_microseconds) or 1_000_000
        self._table = SequenceTable(len(pool), slots, idle_us * 1000)
        if max_queue_size < 0:
            raise InvalidConfig(f"{MAX_QUEUE_SIZE_FLAG} must not be negative, got {max_queue_size}")
        self.max_queue_size = max_queue_size
        self._queued = 0
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

    # -- Scheduler --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, item: WorkItem) -> SequenceTicket:
        start_ns = time.monotonic_ns()
        try:
            if self._draining:
                raise Unavailable(f"model '{self.name}' is shutting down; request refused")
            ticket = self._accept(item, start_ns)
        except InvalidInput:
            raise  # a request the sequence batcher refuses: Triton counts none
        except HeadraceError:
            self._stats.record_request(
                success=False, queue_ns=0, total_ns=time.monotonic_ns() - start_ns
            )
            raise
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._pending += 1
        self._idle.clear()
        self._kick()
        return ticket

    def withdraw(self, ticket: SequenceTicket) -> None:
        """Drop a request still queued; its sequence goes on (it may idle out later).

        A withdrawn END leaves the sequence open again, unless its id has started anew.
        """
        if ticket.settled or not ticket.queued:
            return
        sequence = ticket.sequence
        sequence.requests.remove(ticket)
        ticket.queued = False
        self._queued -= 1
        if ticket.item.sequence_end:
            self._table.reopen(sequence)
        self._settle(ticket)
        self._table.after_request(sequence, time.monotonic_ns())
        self._kick()

    async def drain(self) -> None:
        self._draining = True
        self._loop = asyncio.get_running_loop()
        self._kick()
        await self._idle.wait()

    # -- accepting --------------------------------------------------------------------------

    def _accept(self, item: WorkItem, now_ns: int) -> SequenceTicket:
        key = item.sequence_id
        if key == 0 or key == "":
            raise InvalidInput(
                f"inference request to model '{self.name}' must specify a non-zero or "
                "non-empty correlation ID"
            )
        self._inputs.check_request(item, self.max_batch_size > 0)
        sequence = self._table.get(key)
        if sequence is None and not item.sequence_start:
            raise InvalidInput(self._no_start_message(key))
        if self.max_queue_size and self._queued >= self.max_queue_size:
            raise queue_full(item, self.name, self.max_queue_size, MAX_QUEUE_SIZE_FLAG)
        if sequence is None:
            sequence = self._table.open(key)
        elif item.sequence_start:
            _log.warning(
                "sequence %s for model '%s' started again before it ended; the previous "
                "sequence ends early",
                key,
                self.name,
            )
        ticket = SequenceTicket(item, sequence, now_ns)
        sequence.requests.append(ticket)
        self._queued += 1
        if item.sequence_end:
            self._table.close(sequence)
        if item.timeout_us:
            self._table.time_out_in_backlog(sequence, now_ns + item.timeout_us * 1000)
        return ticket

    def _no_start_message(self, key: int | str) -> str:
        message = (
            f"inference request for sequence {key} to model '{self.name}' must specify the "
            "START flag on the first request of the sequence"
        )
        if self._table.was_released(key):
            idle_ms = self._table.idle_ns // 1_000_000
            message += f" (sequence {key} was released after {idle_ms} ms without requests)"
        return message

    # -- the pump ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._kick_handle is None and self._loop is not None and not self._loop.is_closed():
            self._kick_handle = self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._kick_handle = None
        now_ns = time.monotonic_ns()
        for sequence in self._table.expire(now_ns):
            error = Unavailable(
                f"timeout of sequence {sequence.key} of model '{self.name}' expired while it "
                "waited for a free sequence slot"
            )
            while sequence.requests:
                ticket = sequence.requests.popleft()
                ticket.queued = False
                self._queued -= 1
                self._resolve(ticket, error, now_ns, now_ns)
        wake = 0
        for index, lane in enumerate(self._table.lanes):
            while True:
                rows, hold_ns = self._plan.pick(lane, now_ns, self._draining)
                wake = _earliest(wake, hold_ns)
                if not rows:
                    break
                lease = self._pool.try_acquire(affinity=index)
                if lease is None:
                    break
                self._dispatch(lease, rows, now_ns)
        # after dispatching, which may have set new deadlines
        self._arm_timer(now_ns, _earliest(wake, self._table.next_deadline_ns()))

    def _dispatch(self, lease: Lease, rows: list[Slot | None], now_ns: int) -> None:
        """Run one batch: the slots' next requests, null requests in the empty rows."""
        tickets: list[SequenceTicket | None] = []
        items: list[WorkItem | None] = []
        for slot in rows:
            if slot is None or slot.sequence is None:
                tickets.append(None)
                items.append(None)
                continue
            sequence = slot.sequence
            ticket = sequence.requests.popleft()
            ticket.queued = False
            self._queued -= 1
            sequence.running = ticket
            tickets.append(ticket)
            items.append(self._inputs.model_request(sequence, ticket))
            if ticket.item.sequence_end:
                self._table.free(slot, now_ns)  # as Triton: free once the END is on its way
        like = next(item for item in items if item is not None)
        batch = [item if item is not None else self._inputs.null_request(like) for item in items]
        self._batches_in_flight += 1
        outcome = self._pool.execute(lease, batch)
        outcome.add_done_callback(partial(self._finish, tickets, now_ns))

    def _finish(
        self,
        tickets: list[SequenceTicket | None],
        dispatch_ns: int,
        outcome: asyncio.Future[BatchOutcome],
    ) -> None:
        self._batches_in_flight -= 1
        result = outcome.result()
        if result.times is not None and batch_ran(result.results):
            self._stats.record_batch(  # a batch that failed as a whole adds no batch stats
                batch_size=len(tickets),
                compute_input_ns=result.times.compute_input_ns,
                compute_infer_ns=result.times.compute_infer_ns,
                compute_output_ns=result.times.compute_output_ns,
            )
        end_ns = time.monotonic_ns()
        for ticket, value in zip(tickets, result.results):
            if ticket is None:
                continue  # a null request: nobody waits for it
            sequence = ticket.sequence
            sequence.running = None
            if ticket.item.trace is not None:  # sampled for tracing: this batch's span
                ticket.item.trace.computed(result.start_ns, result.end_ns)
            value = self._inputs.keep_state(sequence, ticket, value)
            self._resolve(ticket, value, dispatch_ns, end_ns)
            self._table.after_request(sequence, end_ns)
        self._check_idle()
        self._kick()

    def _resolve(
        self, ticket: SequenceTicket, value: RequestResult, dispatch_ns: int, end_ns: int
    ) -> None:
        """Answer one request (None: the model answered through its sink) and count it."""
        self._stats.record_request(
            success=ran(value),
            queue_ns=max(0, dispatch_ns - ticket.enqueue_ns),
            total_ns=max(0, end_ns - ticket.enqueue_ns),
        )
        self._settle(ticket)
        sink = ticket.item.sink
        if isinstance(value, BaseException):
            sink.fail(_as_error(self.name, value))
        elif value is not None:
            sink.send(value, final=True)

    def _arm_timer(self, now_ns: int, wake_ns: int) -> None:
        if self._draining and self._pending == 0:
            wake_ns = 0  # drained: idle sequences no longer matter
        if self._timer is not None and wake_ns != self._timer_ns:
            self._timer.cancel()
            self._timer = None
        if not wake_ns or self._timer is not None or self._loop is None:
            return
        self._timer_ns = wake_ns
        delay_s = max(0, wake_ns - now_ns) / 1e9
        self._timer = self._loop.call_at(self._loop.time() + delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    # -- accounting -------------------------------------------------------------------------

    def _settle(self, ticket: SequenceTicket) -> None:
        if not ticket.settled:
            ticket.settled = True
            self._pending -= 1
            self._check_idle()

    def _check_idle(self) -> None:
        if self._pending == 0 and self._batches_in_flight == 0:
            self._idle.set()


def _earliest(*times_ns: int) -> int:
    """The earliest of the times that are set (0: none is)."""
    return min((t for t in times_ns if t), default=0)


def _model_dir(pool: InstancePool) -> str:
    """Where the pool's local instances were loaded from ("" when none says)."""
    for instance in pool.instances:
        context = getattr(getattr(instance, "backend", None), "context", None)
        if context is not None and context.model_dir:
            return str(context.model_dir)
    return ""


def _as_error(name: str, exc: BaseException) -> HeadraceError:
    if isinstance(exc, HeadraceError):
        return exc
    error = ModelExecutionError(f"model '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
