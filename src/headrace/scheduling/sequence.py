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
client. Overload (``max_queue_size`` requests queued) and draining are Unavailable.

Everything runs on the event loop thread; timers (idle release, backlog timeouts, batching
delays) are ``call_at`` handles, nothing polls.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import OrderedDict, deque
from functools import partial
from typing import Any

import numpy as np

from headrace.backends.base import RequestResult
from headrace.errors import (
    HeadraceError,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    Unsupported,
)
from headrace.scheduling.base import Scheduler, StatsSink
from headrace.scheduling.dispatch import NullStats
from headrace.scheduling.pool import BatchOutcome, InstancePool
from headrace.scheduling.sequence_inputs import SequenceInputs
from headrace.scheduling.sequence_slots import (
    DISCARD,
    DirectPlan,
    OldestPlan,
    SequenceRecord,
    SequenceTicket,
    Slot,
    StateSink,
)
from headrace.types import WorkItem

__all__ = ["SequenceBatcher"]

_log = logging.getLogger(__name__)
DEFAULT_QUEUE_PER_INSTANCE = 1024
_REMEMBERED_EXPIRED = 4096
"""How many idle-released ids are remembered, to say why their next request is refused."""


class SequenceBatcher(Scheduler):
    """Schedules a ``sequence_batching`` model's requests onto slots of its instances."""

    def __init__(
        self,
        config: Any,
        pool: InstancePool,
        stats: StatsSink | None = None,
        *,
        model_dir: str = "",
        max_queue_size: int | None = None,
    ) -> None:
        """``config`` is the ``ModelConfig``; ``model_dir`` holds ``initial_state/`` files
        (default: the directory the pool's local instances were loaded from)."""
        settings = config.sequence_batching
        if settings.iterative_sequence:
            raise Unsupported(f"model '{config.name}': iterative sequences are not supported")
        self.name = config.name
        self.max_batch_size = int(config.max_batch_size)
        self._pool = pool
        self._stats: StatsSink = stats if stats is not None else NullStats()
        self._inputs = SequenceInputs(config, model_dir or _model_dir(pool))
        declared = {output.name for output in config.output}
        self._hidden = self._inputs.state_outputs - declared
        per_instance = max(1, self.max_batch_size)
        self._plan: DirectPlan | OldestPlan
        if settings.HasField("oldest"):
            oldest = settings.oldest
            per_instance = int(oldest.max_candidate_sequences) or per_instance
            self._plan = OldestPlan(
                limit=max(1, self.max_batch_size),
                delay_ns=int(oldest.max_queue_delay_microseconds) * 1000,
                preferred=tuple(sorted({int(size) for size in oldest.preferred_batch_size})),
            )
        else:
            direct = settings.direct
            self._plan = DirectPlan(
                delay_ns=int(direct.max_queue_delay_microseconds) * 1000,
                utilization=float(direct.minimum_slot_utilization),
            )
        self._lanes = [[Slot(i, s) for s in range(per_instance)] for i in range(len(pool))]
        self._idle_ns = int(settings.max_sequence_idle_microseconds or 1_000_000) * 1000
        self.max_queue_size = max_queue_size or DEFAULT_QUEUE_PER_INSTANCE * len(pool)
        self._open: dict[int | str, SequenceRecord] = {}
        self._backlog: deque[SequenceRecord] = deque()
        self._expired: OrderedDict[int | str, None] = OrderedDict()
        self._timers: list[tuple[int, int, SequenceRecord]] = []
        self._counter = itertools.count()
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
        if ticket.item.sequence_end and sequence.key not in self._open:
            sequence.closed = False
            self._open[sequence.key] = sequence
        ticket.queued = False
        self._queued -= 1
        self._settle(ticket)
        self._after_request(sequence, time.monotonic_ns())
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
        self._inputs.check_id(key)
        self._check_inputs(item)
        sequence = self._open.get(key)
        if sequence is None and not item.sequence_start:
            raise InvalidInput(self._no_start_message(key))
        if self._queued >= self.max_queue_size:
            raise Unavailable(
                f"queue of model '{self.name}' is full ({self.max_queue_size} requests queued)"
            )
        if sequence is None:
            sequence = self._open[key] = SequenceRecord(key)
            self._expired.pop(key, None)
            self._assign(sequence, now_ns)
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
            sequence.closed = True
            del self._open[key]
        if sequence.slot is None and item.timeout_us:
            deadline = now_ns + item.timeout_us * 1000
            if not sequence.deadline_ns or deadline < sequence.deadline_ns:
                sequence.deadline_ns = deadline
                self._push_timer(deadline, sequence)
        return ticket

    def _check_inputs(self, item: WorkItem) -> None:
        for name, value in item.inputs.items():
            if name in self._inputs.filled:
                raise InvalidInput(
                    f"input '{name}' of model '{self.name}' is a sequence control or state "
                    "input, which the server fills; do not send it"
                )
            if self.max_batch_size > 0 and np.shape(value)[:1] != (1,):
                raise InvalidInput(
                    f"inference request to model '{self.name}' must specify batch-size 1 due "
                    "to requirements of sequence batcher"
                )

    def _no_start_message(self, key: int | str) -> str:
        message = (
            f"inference request for sequence {key} to model '{self.name}' must specify the "
            "START flag on the first request of the sequence"
        )
        if key in self._expired:
            idle_ms = self._idle_ns // 1_000_000
            message += f" (sequence {key} was released after {idle_ms} ms without requests)"
        return message

    def _assign(self, sequence: SequenceRecord, now_ns: int) -> None:
        """Give a new sequence the free slot with the lowest index on the least busy
        instance, or put it in the backlog."""
        best: Slot | None = None
        best_key: tuple[int, int] | None = None
        for lane in self._lanes:
            busy = sum(1 for slot in lane if slot.sequence is not None)
            free = next((slot for slot in lane if slot.sequence is None), None)
            if free is not None and (best_key is None or (free.index, busy) < best_key):
                best, best_key = free, (free.index, busy)
        if best is None:
            self._backlog.append(sequence)
            return
        best.sequence = sequence
        sequence.slot = best

    # -- the pump ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._kick_handle is None and self._loop is not None and not self._loop.is_closed():
            self._kick_handle = self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._kick_handle = None
        now_ns = time.monotonic_ns()
        self._expire(now_ns)
        wake = 0
        for index, lane in enumerate(self._lanes):
            while True:
                rows, hold_ns = self._plan.pick(lane, now_ns, self._draining)
                if hold_ns:
                    wake = hold_ns if not wake else min(wake, hold_ns)
                if not rows:
                    break
                lease = self._pool.try_acquire(affinity=index)
                if lease is None:
                    break
                self._dispatch(lease, rows, now_ns)
        self._arm_timer(now_ns, wake)

    def _dispatch(self, lease: Any, rows: list[Slot | None], now_ns: int) -> None:
        tickets: list[SequenceTicket | None] = []
        items: list[WorkItem] = []
        for slot in rows:
            if slot is None:
                tickets.append(None)
                continue
            sequence = slot.sequence
            assert sequence is not None  # a ready slot has one
            ticket = sequence.requests.popleft()
            ticket.queued = False
            self._queued -= 1
            sequence.running = ticket
            tickets.append(ticket)
            items.append(self._work_item(sequence, ticket))
            if ticket.item.sequence_end:
                self._free(slot, now_ns)  # as Triton: the slot is free once the END is on its way
        if len(items) < len(rows):
            real = iter(items)
            items = [next(real) if t is not None else self._null_item(items[0]) for t in tickets]
        self._batches_in_flight += 1
        outcome = self._pool.execute(lease, items)
        outcome.add_done_callback(partial(self._finish, tickets, now_ns))

    def _work_item(self, sequence: SequenceRecord, ticket: SequenceTicket) -> WorkItem:
        """The request as the model sees it: its inputs plus controls and state."""
        item = ticket.item
        inputs = dict(item.inputs)
        inputs.update(
            self._inputs.controls(
                start=item.sequence_start,
                end=item.sequence_end,
                ready=True,
                sequence_id=sequence.key,
            )
        )
        sink = item.sink
        requested = item.requested_outputs
        if self._inputs.has_state:
            if item.sequence_start or sequence.state is None:
                sequence.state = self._inputs.fresh_state()
            inputs.update(self._inputs.state_inputs(sequence.state))
            sink = ticket.sink = StateSink(sink, self._inputs.state_outputs, self._hidden)
            if requested is not None:
                requested = (*requested, *sorted(self._inputs.state_outputs - set(requested)))
        return WorkItem(
            inputs,
            sink,
            request_id=item.request_id,
            sequence_id=item.sequence_id,
            sequence_start=item.sequence_start,
            sequence_end=item.sequence_end,
            priority=item.priority,
            timeout_us=item.timeout_us,
            parameters=item.parameters,
            requested_outputs=requested,
        )

    def _null_item(self, like: WorkItem) -> WorkItem:
        """A not-ready request that keeps an empty direct slot's batch row."""
        inputs = {
            name: np.zeros_like(value) if value.dtype != np.object_ else np.full_like(value, b"")
            for name, value in like.inputs.items()
        }
        inputs.update(self._inputs.controls(start=False, end=False, ready=False, sequence_id=0))
        if self._inputs.has_state:
            inputs.update(self._inputs.state_inputs(self._inputs.fresh_state()))
        return WorkItem(inputs, DISCARD)

    def _finish(
        self,
        tickets: list[SequenceTicket | None],
        dispatch_ns: int,
        outcome: asyncio.Future[BatchOutcome],
    ) -> None:
        self._batches_in_flight -= 1
        result = outcome.result()
        if result.times is not None:
            self._stats.record_batch(
                batch_size=len(tickets),
                compute_input_ns=result.times.compute_input_ns,
                compute_infer_ns=result.times.compute_infer_ns,
                compute_output_ns=result.times.compute_output_ns,
            )
        end_ns = time.monotonic_ns()
        for ticket, value in zip(tickets, result.results):
            if ticket is None:
                continue
            sequence = ticket.sequence
            sequence.running = None
            value = self._keep_state(sequence, ticket, value)
            self._resolve(ticket, value, dispatch_ns, end_ns)
            self._after_request(sequence, end_ns)
        self._check_idle()
        self._kick()

    def _keep_state(
        self, sequence: SequenceRecord, ticket: SequenceTicket, value: RequestResult
    ) -> RequestResult:
        """Store the request's state outputs for the sequence's next request; return what the
        client gets."""
        if not self._inputs.has_state or sequence.state is None:
            return value
        produced = value if isinstance(value, dict) else (ticket.sink.state if ticket.sink else {})
        if produced:
            sequence.state = self._inputs.take_state(produced, sequence.state)
        if isinstance(value, dict) and self._hidden:
            return {name: v for name, v in value.items() if name not in self._hidden}
        return value

    def _resolve(
        self, ticket: SequenceTicket, value: RequestResult, dispatch_ns: int, end_ns: int
    ) -> None:
        success = not isinstance(value, BaseException)
        self._stats.record_request(
            success=success,
            queue_ns=max(0, dispatch_ns - ticket.enqueue_ns),
            total_ns=max(0, end_ns - ticket.enqueue_ns),
        )
        self._settle(ticket)
        sink = ticket.item.sink
        if isinstance(value, BaseException):
            sink.fail(_as_error(self.name, value))
        elif value is not None:
            sink.send(value, final=True)

    # -- sequence lifetimes -----------------------------------------------------------------

    def _after_request(self, sequence: SequenceRecord, now_ns: int) -> None:
        """A request of ``sequence`` left (answered or withdrawn): release or start idling."""
        if sequence.running is not None or sequence.requests:
            return
        if sequence.closed:
            sequence.state = None
            if sequence.slot is not None:  # its END was withdrawn: nothing more will come
                self._free(sequence.slot, now_ns)
        elif sequence.slot is not None:
            sequence.idle_since_ns = now_ns
            self._push_timer(now_ns + self._idle_ns, sequence)

    def _free(self, slot: Slot, now_ns: int) -> None:
        """Take ``slot`` from its sequence and give it to the oldest backlogged one."""
        if slot.sequence is not None:
            slot.sequence.slot = None
        slot.sequence = None
        while self._backlog:
            sequence = self._backlog.popleft()
            if sequence.closed and not sequence.requests and sequence.running is None:
                continue  # every request of it was withdrawn
            slot.sequence = sequence
            sequence.slot = slot
            sequence.deadline_ns = 0
            self._after_request(sequence, now_ns)
            return

    def _expire(self, now_ns: int) -> None:
        """Release idle sequences and time out backlogged requests whose time has come."""
        while self._timers and self._timers[0][0] <= now_ns:
            deadline, _, sequence = heapq.heappop(self._timers)
            if sequence.slot is None and deadline == sequence.deadline_ns:
                self._time_out_backlog(sequence, now_ns)
            elif (
                sequence.slot is not None
                and self._open.get(sequence.key) is sequence
                and sequence.running is None
                and not sequence.requests
                and sequence.idle_since_ns + self._idle_ns <= now_ns
            ):
                del self._open[sequence.key]
                self._expired[sequence.key] = None
                if len(self._expired) > _REMEMBERED_EXPIRED:
                    self._expired.popitem(last=False)
                sequence.state = None
                self._free(sequence.slot, now_ns)

    def _time_out_backlog(self, sequence: SequenceRecord, now_ns: int) -> None:
        if self._open.get(sequence.key) is sequence:
            del self._open[sequence.key]
        if sequence in self._backlog:
            self._backlog.remove(sequence)
        error = Unavailable(
            f"timeout of sequence {sequence.key} of model '{self.name}' expired while it "
            "waited for a free sequence slot"
        )
        while sequence.requests:
            ticket = sequence.requests.popleft()
            ticket.queued = False
            self._queued -= 1
            self._resolve(ticket, error, now_ns, now_ns)
        self._check_idle()

    def _push_timer(self, when_ns: int, sequence: SequenceRecord) -> None:
        heapq.heappush(self._timers, (when_ns, next(self._counter), sequence))
        if self._loop is not None and (self._timer is None or when_ns < self._timer_ns):
            self._arm_timer(time.monotonic_ns(), when_ns)

    def _arm_timer(self, now_ns: int, hold_ns: int) -> None:
        wake = self._timers[0][0] if self._timers else 0
        if hold_ns:
            wake = hold_ns if not wake else min(wake, hold_ns)
        if self._draining and self._pending == 0:
            wake = 0
        if self._timer is not None and wake != self._timer_ns:
            self._timer.cancel()
            self._timer = None
        if not wake or self._timer is not None or self._loop is None:
            return
        self._timer_ns = wake
        self._timer = self._loop.call_at(
            self._loop.time() + max(0, wake - now_ns) / 1e9, self._on_timer
        )

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
