"""The sequence batcher's bookkeeping: sequences, the instance batch slots they hold, and
which requests of an instance's slots form its next batch under each Triton strategy.

A sequence holds one slot for its life; a slot belongs to one instance, so every request of a
sequence runs there. At most one request of a sequence runs at a time (``running``), in
arrival order. The strategies only look at slots and never change them:

- ``direct``: a slot is a batch row. The next batch has every slot from 0 to the last one with
  a request ready, with a *null* request (``None``) in the rows between whose slot has nothing
  ready, so that every sequence keeps its row (the model sees READY false there), as Triton
  does. With ``max_queue_delay_microseconds`` and ``minimum_slot_utilization`` both set, a
  batch waits until enough slots are ready or its oldest request waited the delay.
- ``oldest``: the slots are candidate sequences; the next batch takes the oldest ready
  requests, one per sequence, dynamic-batcher style: all of them when the batch is full or the
  oldest waited ``max_queue_delay_microseconds``, else the largest ``preferred_batch_size``
  that fits, else nothing yet.

Everything here runs on the event loop thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.types import Outputs, ResponseSink, WorkItem

__all__ = [
    "DISCARD",
    "DirectPlan",
    "OldestPlan",
    "SequenceRecord",
    "SequenceTicket",
    "Slot",
    "StateSink",
]


@dataclass(eq=False, slots=True)
class SequenceTicket:
    """One accepted request of a sequence: the scheduler's ticket for it."""

    item: WorkItem
    sequence: SequenceRecord
    enqueue_ns: int
    queued: bool = True
    settled: bool = False
    sink: StateSink | None = None
    """Catches the implicit state of a request that answers through its sink."""


@dataclass(eq=False, slots=True)
class SequenceRecord:
    """One correlation id's sequence, from its START request to its END (or idle release)."""

    key: int | str
    requests: deque[SequenceTicket] = field(default_factory=deque)
    slot: Slot | None = None
    running: SequenceTicket | None = None
    state: dict[str, np.ndarray] | None = None
    closed: bool = False
    """Its END request was accepted: no further request joins it."""
    idle_since_ns: int = 0
    deadline_ns: int = 0
    """While in the backlog: when its queued requests time out (0: never)."""


@dataclass(eq=False, slots=True)
class Slot:
    """Batch slot ``index`` of instance ``instance``, held by at most one sequence."""

    instance: int
    index: int
    sequence: SequenceRecord | None = None

    @property
    def ready(self) -> bool:
        """Whether the slot's sequence has a request waiting and none running."""
        sequence = self.sequence
        return sequence is not None and bool(sequence.requests) and sequence.running is None

    @property
    def front_ns(self) -> int:
        """When the slot's next request arrived (only meaningful when ``ready``)."""
        return self.sequence.requests[0].enqueue_ns  # type: ignore[union-attr]


@dataclass(frozen=True)
class DirectPlan:
    """``direct``: batch rows are slots; waits only with both delay and utilization set."""

    delay_ns: int = 0
    utilization: float = 0.0

    def pick(self, lane: list[Slot], now_ns: int, hurry: bool) -> tuple[list[Slot | None], int]:
        """The next batch (``None`` rows are null requests) and, when empty, when to look again
        (0: only when something changes)."""
        ready = [slot for slot in lane if slot.ready]
        if not ready:
            return [], 0
        if self.delay_ns and self.utilization and not hurry:
            oldest = min(slot.front_ns for slot in ready)
            if now_ns - oldest < self.delay_ns and len(ready) / len(lane) < self.utilization:
                return [], oldest + self.delay_ns
        last = ready[-1].index
        return [slot if slot.ready else None for slot in lane[: last + 1]], 0


@dataclass(frozen=True)
class OldestPlan:
    """``oldest``: dynamic batching over the oldest request of each candidate sequence."""

    limit: int = 1
    delay_ns: int = 0
    preferred: tuple[int, ...] = ()

    def pick(self, lane: list[Slot], now_ns: int, hurry: bool) -> tuple[list[Slot | None], int]:
        ready = sorted((slot for slot in lane if slot.ready), key=lambda slot: slot.front_ns)
        if not ready:
            return [], 0
        chosen: list[Slot | None] = list(ready[: self.limit])
        oldest = ready[0].front_ns
        if len(ready) >= self.limit or hurry or now_ns - oldest >= self.delay_ns:
            return chosen, 0
        fitting = [size for size in self.preferred if size <= len(chosen)]
        if not fitting:
            return [], oldest + self.delay_ns
        return chosen[: max(fitting)], 0


class StateSink:
    """Wraps a request's sink: keeps the state outputs sent through it, hides the undeclared.

    For requests that answer through their sink (decoupled python models); it may be called
    from the model's threads, before the batch completes on the loop.
    """

    __slots__ = ("_hidden", "_names", "_sink", "state")

    def __init__(self, sink: ResponseSink, names: frozenset[str], hidden: frozenset[str]) -> None:
        self._sink = sink
        self._names = names
        self._hidden = hidden
        self.state: dict[str, Any] = {}

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if outputs:
            self.state.update({k: v for k, v in outputs.items() if k in self._names})
            outputs = {k: v for k, v in outputs.items() if k not in self._hidden}
        self._sink.send(outputs, final=final, parameters=parameters)

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self._sink.fail(error, final=final)

    @property
    def done(self) -> bool:
        return self._sink.done


class DiscardSink:
    """The sink of a null request: nobody waits for its answers."""

    __slots__ = ()

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        pass

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        pass

    @property
    def done(self) -> bool:
        return False


DISCARD = DiscardSink()
