"""Which sequences are open, which slot each holds, and when each stops holding it.

The table maps correlation ids to open sequences and hands slots out: a new sequence gets the
free slot with the lowest index on the least busy instance (Triton's order: first slots
first, so direct batches stay dense), or waits in the backlog, first come first served. A
slot comes back when its sequence's END is dispatched, when a sequence closed by END has
nothing left (its END was withdrawn), or when an open sequence has had nothing queued or
running for the idle time; the oldest backlogged sequence takes it at once. The table
remembers the last few idle-released ids, so a late request on one hears why it is refused.

Deadlines (idle releases, backlog timeouts) sit in one heap, checked by ``expire`` whenever
the batcher pumps; stale entries are skipped there. Event loop thread only.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque

from headrace.scheduling.sequence_slots import SequenceRecord, Slot

__all__ = ["SequenceTable"]

_REMEMBERED_RELEASES = 4096


class SequenceTable:
    """Open sequences by correlation id, slots per instance, the backlog and the deadlines."""

    def __init__(self, instances: int, slots_per_instance: int, idle_ns: int) -> None:
        self.lanes = [[Slot(i, s) for s in range(slots_per_instance)] for i in range(instances)]
        self.idle_ns = idle_ns
        self._open: dict[int | str, SequenceRecord] = {}
        self._backlog: deque[SequenceRecord] = deque()
        self._released: OrderedDict[int | str, None] = OrderedDict()
        self._deadlines: list[tuple[int, int, SequenceRecord]] = []
        self._counter = itertools.count()

    def get(self, key: int | str) -> SequenceRecord | None:
        return self._open.get(key)

    def was_released(self, key: int | str) -> bool:
        """Whether ``key``'s sequence was released for being idle (and not started since)."""
        return key in self._released

    def open(self, key: int | str) -> SequenceRecord:
        """A new sequence for ``key``, in a free slot or else in the backlog."""
        sequence = self._open[key] = SequenceRecord(key)
        self._released.pop(key, None)
        best: Slot | None = None
        rank: tuple[int, int] | None = None
        for lane in self.lanes:
            free = next((slot for slot in lane if slot.sequence is None), None)
            if free is None:
                continue
            busy = sum(1 for slot in lane if slot.sequence is not None)
            if rank is None or (free.index, busy) < rank:
                best, rank = free, (free.index, busy)
        if best is None:
            self._backlog.append(sequence)
        else:
            best.sequence = sequence
            sequence.slot = best
        return sequence

    def close(self, sequence: SequenceRecord) -> None:
        """Its END was accepted: later requests with its id start a new sequence."""
        sequence.closed = True
        if self._open.get(sequence.key) is sequence:
            del self._open[sequence.key]

    def reopen(self, sequence: SequenceRecord) -> None:
        """Its END was withdrawn: it is open again, unless its id has started anew since."""
        if sequence.key not in self._open:
            sequence.closed = False
            self._open[sequence.key] = sequence

    def time_out_in_backlog(self, sequence: SequenceRecord, deadline_ns: int) -> None:
        """A backlogged sequence's queued requests fail at ``deadline_ns`` (the earliest)."""
        if sequence.slot is None and (
            not sequence.deadline_ns or deadline_ns < sequence.deadline_ns
        ):
            sequence.deadline_ns = deadline_ns
            self._push(deadline_ns, sequence)

    def after_request(self, sequence: SequenceRecord, now_ns: int) -> None:
        """A request of ``sequence`` left (answered or withdrawn): release or start idling."""
        if sequence.running is not None or sequence.requests:
            return
        if sequence.closed:
            sequence.state = None
            if sequence.slot is not None:
                self.free(sequence.slot, now_ns)
        elif sequence.slot is not None:
            sequence.idle_since_ns = now_ns
            self._push(now_ns + self.idle_ns, sequence)

    def free(self, slot: Slot, now_ns: int) -> None:
        """Take ``slot`` from its sequence and give it to the oldest backlogged one."""
        if slot.sequence is not None:
            slot.sequence.slot = None
        slot.sequence = None
        while self._backlog:
            sequence = self._backlog.popleft()
            if sequence.closed and not sequence.requests:
                continue  # every request of it was withdrawn or timed out
            slot.sequence = sequence
            sequence.slot = slot
            sequence.deadline_ns = 0
            self.after_request(sequence, now_ns)
            return

    def expire(self, now_ns: int) -> list[SequenceRecord]:
        """Release the sequences idle for too long; return the backlogged ones that timed out
        (out of the table now; the caller fails their requests)."""
        timed_out: list[SequenceRecord] = []
        while self._deadlines and self._deadlines[0][0] <= now_ns:
            deadline, _, sequence = heapq.heappop(self._deadlines)
            if sequence.slot is None and deadline == sequence.deadline_ns:
                self._forget(sequence)
                if sequence in self._backlog:
                    self._backlog.remove(sequence)
                timed_out.append(sequence)
            elif (
                sequence.slot is not None
                and self._open.get(sequence.key) is sequence
                and sequence.running is None
                and not sequence.requests
                and sequence.idle_since_ns + self.idle_ns <= now_ns
            ):
                self._forget(sequence)
                self._released[sequence.key] = None
                if len(self._released) > _REMEMBERED_RELEASES:
                    self._released.popitem(last=False)
                sequence.state = None
                self.free(sequence.slot, now_ns)
        return timed_out

    def next_deadline_ns(self) -> int:
        """The earliest pending deadline (0: none); it may turn out stale."""
        return self._deadlines[0][0] if self._deadlines else 0

    def _forget(self, sequence: SequenceRecord) -> None:
        if self._open.get(sequence.key) is sequence:
            del self._open[sequence.key]

    def _push(self, when_ns: int, sequence: SequenceRecord) -> None:
        heapq.heappush(self._deadlines, (when_ns, next(self._counter), sequence))
