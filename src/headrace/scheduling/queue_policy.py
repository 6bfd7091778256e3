"""Queued requests, Triton queue policies and the per-priority-level queues that apply them.

Semantics follow Triton's ``ModelQueuePolicy``: ``max_queue_size`` refuses a request at once
when its level is full, in Triton's words (``Exceeds maximum queue size``). Where the config
leaves it 0 (Triton: unbounded) the server's ``--default-max-queue-size`` applies instead, so
no queue grows with what clients send unless the operator asks for it (that flag at 0); ``default_timeout_microseconds`` (0 = none) sets a
deadline that a request's own ``timeout_us`` may only shorten, and only when
``allow_timeout_override`` is set; past its deadline a request is rejected (``REJECT``) or
moved behind every on-time request of its level (``DELAY``). Priority levels number from 1
(most urgent); a request priority of 0, or one above ``priority_levels``, means the
``default_priority_level``.

Everything here runs on the event loop thread; nothing is thread-safe on purpose.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from headrace.errors import InvalidConfig, Unavailable, request_tag
from headrace.types import WorkItem

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE",
    "MAX_QUEUE_SIZE_FLAG",
    "PriorityQueues",
    "QueuePolicy",
    "QueuedRequest",
    "TimeoutAction",
    "queue_full",
]

DEFAULT_MAX_QUEUE_SIZE = 4096
"""Requests one model version holds queued when its config sets no ``max_queue_size``
(``--default-max-queue-size``; the dynamic batcher: per priority level). Far above what a
normal load queues (one per client waiting), far below what exhausts memory."""
MAX_QUEUE_SIZE_FLAG = "--default-max-queue-size"


def queue_full(
    item: WorkItem, model: str, limit: int, setting: str, where: str = ""
) -> Unavailable:
    """The refusal of a request that finds its queue full: Triton's words, then which queue
    and which setting bounds it (``max_queue_size`` or the server's flag)."""
    return Unavailable(
        f"{request_tag(item.request_id)}Exceeds maximum queue size; model '{model}' has "
        f"{limit} requests queued{where} ({setting})"
    )


TimeoutAction = str
"""``"REJECT"`` or ``"DELAY"``, as ``ModelQueuePolicy.TimeoutAction`` names them."""


@dataclass(eq=False, slots=True)
class QueuedRequest:
    """One accepted work item while it waits for, and then runs in, a batch.

    It is the scheduler's ticket for the item: ``Scheduler.submit`` returns it and
    ``Scheduler.withdraw`` takes it back.
    """

    item: WorkItem
    batch_size: int
    enqueue_ns: int
    level: int = 0
    deadline_ns: int = 0
    """Monotonic deadline in ns; 0 when the request has none."""
    queued: bool = True
    delayed: bool = False
    settled: bool = False
    """Answered or withdrawn: no longer counted as pending."""

    @property
    def gone(self) -> bool:
        """Whether nobody waits for this request any more (its caller went away)."""
        return self.item.sink.done


@dataclass(frozen=True)
class QueuePolicy:
    """One priority level's ``ModelQueuePolicy``."""

    timeout_action: TimeoutAction = "REJECT"
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0

    @classmethod
    def from_proto(cls, message: Any) -> QueuePolicy:
        """Read a ``model_config_pb2.ModelQueuePolicy``."""
        action = "DELAY" if int(message.timeout_action) == 1 else "REJECT"
        return cls(
            timeout_action=action,
            default_timeout_us=int(message.default_timeout_microseconds),
            allow_timeout_override=bool(message.allow_timeout_override),
            max_queue_size=int(message.max_queue_size),
        )

    def timeout_us(self, requested_us: int) -> int:
        """The timeout that applies to a request asking for ``requested_us`` (0 = none).

        As Triton does, a request may shorten the default timeout but never lengthen it or
        set one where the policy has none.
        """
        timeout = self.default_timeout_us
        if self.allow_timeout_override and 0 < requested_us < timeout:
            timeout = requested_us
        return timeout


@dataclass
class _Level:
    policy: QueuePolicy
    main: deque[QueuedRequest] = field(default_factory=deque)
    delayed: deque[QueuedRequest] = field(default_factory=deque)
    size: int = 0

    def trim(self) -> None:
        """Drop entries that left the queue from the fronts of both deques."""
        while self.main and (not self.main[0].queued or self.main[0].delayed):
            self.main.popleft()
        while self.delayed and not self.delayed[0].queued:
            self.delayed.popleft()


class PriorityQueues:
    """Per-level FIFO queues; iteration yields live requests, most urgent level first.

    Removal is lazy: a request leaves by having ``queued`` cleared (``take``, ``discard``,
    ``expire``); stale entries are skipped and trimmed from the fronts of the deques.
    """

    def __init__(
        self,
        levels: int = 0,
        default_level: int = 0,
        default_policy: QueuePolicy | None = None,
        level_policies: Mapping[int, QueuePolicy] | None = None,
        source: str = "",
        model: str = "",
        fallback_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        """``fallback_size`` bounds each level whose policy leaves ``max_queue_size`` 0
        (``--default-max-queue-size``; 0: such levels are unbounded, as in Triton)."""
        if levels < 0:
            raise InvalidConfig(
                f"must not be negative, got {levels}",
                source=source,
                field="dynamic_batching.priority_levels",
            )
        if levels and not 1 <= default_level <= levels:
            raise InvalidConfig(
                f"must be in [1, {levels}], got {default_level}",
                source=source,
                field="dynamic_batching.default_priority_level",
            )
        base = default_policy or QueuePolicy()
        overrides = dict(level_policies or {})
        for key in overrides:
            if not levels or not 1 <= key <= levels:
                raise InvalidConfig(
                    f"names level {key}, the model has {levels} priority levels",
                    source=source,
                    field="dynamic_batching.priority_queue_policy",
                )
        if fallback_size < 0:
            raise InvalidConfig(f"{MAX_QUEUE_SIZE_FLAG} must not be negative, got {fallback_size}")
        self._model = model or source
        self._fallback_size = fallback_size
        self.levels = levels
        self.default_level = default_level if levels else 0
        keys = range(1, levels + 1) if levels else range(1)
        self._levels = {key: _Level(overrides.get(key, base)) for key in keys}
        self._deadlines: list[tuple[int, int, QueuedRequest]] = []
        self._counter = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def level_for(self, priority: int) -> int:
        """The level a request priority maps to (Triton: 0 or out of range = the default)."""
        if not self.levels or priority <= 0 or priority > self.levels:
            return self.default_level
        return priority

    def push(self, item: QueuedRequest, priority: int, timeout_us: int, now_ns: int) -> None:
        """Enqueue ``item`` at its priority's level, or raise Unavailable when that is full."""
        item.level = self.level_for(priority)
        level = self._levels[item.level]
        limit = level.policy.max_queue_size
        setting = "max_queue_size"
        if not limit:
            limit, setting = self._fallback_size, MAX_QUEUE_SIZE_FLAG
        if limit and level.size >= limit:
            where = f" at priority level {item.level}" if self.levels else ""
            raise queue_full(item.item, self._model, limit, setting, where)
        timeout = level.policy.timeout_us(timeout_us)
        if timeout:
            item.deadline_ns = now_ns + timeout * 1000
            heapq.heappush(self._deadlines, (item.deadline_ns, next(self._counter), item))
        level.main.append(item)
        level.size += 1
        self._size += 1

    def __iter__(self) -> Iterator[QueuedRequest]:
        for level in self._levels.values():
            for item in level.main:
                if item.queued and not item.delayed:
                    yield item
            for item in level.delayed:
                if item.queued:
                    yield item

    def discard(self, item: QueuedRequest) -> None:
        """Remove ``item`` if it is still queued (taken into a batch, cancelled, rejected)."""
        if not item.queued:
            return
        item.queued = False
        self._levels[item.level].size -= 1
        self._size -= 1

    def take(self, items: list[QueuedRequest]) -> None:
        """Remove requests that go into a batch."""
        for item in items:
            self.discard(item)
        for level in self._levels.values():
            level.trim()

    def expire(self, now_ns: int) -> list[QueuedRequest]:
        """Apply timeout actions to requests past their deadline; return the rejected ones."""
        rejected: list[QueuedRequest] = []
        while self._deadlines and self._deadlines[0][0] <= now_ns:
            _, _, item = heapq.heappop(self._deadlines)
            if not item.queued or item.delayed:
                continue
            level = self._levels[item.level]
            if level.policy.timeout_action == "DELAY":
                item.delayed = True
                level.delayed.append(item)
            else:
                self.discard(item)
                rejected.append(item)
        for level in self._levels.values():
            level.trim()
        return rejected

    def next_deadline_ns(self) -> int | None:
        """The earliest deadline of a request still waiting on time, if any."""
        while self._deadlines:
            _, _, item = self._deadlines[0]
            if item.queued and not item.delayed:
                return self._deadlines[0][0]
            heapq.heappop(self._deadlines)
        return None

    def drain_all(self) -> list[QueuedRequest]:
        """Remove and return every queued request (used when a scheduler is torn down)."""
        items = list(self)
        self.take(items)
        return items
