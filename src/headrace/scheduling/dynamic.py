"""The dynamic batcher: Triton's ``dynamic_batching`` for one model version.

When an instance has a free slot, the batcher walks the queues (most urgent priority level
first, on-time requests before delayed ones, arrival order within each) and gathers whole
requests while their batch sizes sum to at most ``max_batch_size``. It dispatches

- everything gathered, when the batch is full (``max_batch_size`` reached, or the next
  request would not fit), when the oldest gathered request has waited
  ``max_queue_delay_microseconds``, or while draining;
- otherwise the longest prefix whose size is a ``preferred_batch_size``, if any is;
- otherwise nothing: it waits for more requests, or for the delay to expire.

Requests are never split across batches. Queue policies (sizes, timeouts, REJECT/DELAY) are
applied per priority level by :class:`~headrace.scheduling.queue_policy.PriorityQueues`; a
level whose policy sets no ``max_queue_size`` is bounded by ``--default-max-queue-size``.
"""

from __future__ import annotations

from typing import Any

from headrace.errors import InvalidConfig
from headrace.scheduling.base import StatsSink
from headrace.scheduling.dispatch import QueueingScheduler
from headrace.scheduling.pool import InstancePool
from headrace.scheduling.queue_policy import (
    DEFAULT_MAX_QUEUE_SIZE,
    PriorityQueues,
    QueuedRequest,
    QueuePolicy,
)

__all__ = ["DynamicBatcher"]


class DynamicBatcher(QueueingScheduler):
    """Batches queued requests per the model configuration's ``dynamic_batching``."""

    def __init__(
        self,
        config: Any,
        pool: InstancePool,
        stats: StatsSink | None = None,
        source: str = "",
        *,
        default_max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        """``config`` is the model's ``model_config_pb2.ModelConfig``;
        ``default_max_queue_size`` bounds the priority levels it leaves unbounded (0: none)."""
        super().__init__(pool, stats, name=config.name, max_batch_size=int(config.max_batch_size))
        settings = config.dynamic_batching
        source = source or config.name
        self.limit = max(1, self.max_batch_size)
        self.preferred = frozenset(int(size) for size in settings.preferred_batch_size)
        for size in sorted(self.preferred):
            if not 1 <= size <= self.limit:
                raise InvalidConfig(
                    f"{size} must be in [1, max_batch_size {self.limit}]",
                    source=source,
                    field="dynamic_batching.preferred_batch_size",
                )
        self.delay_ns = int(settings.max_queue_delay_microseconds) * 1000
        self._queues = PriorityQueues(
            levels=int(settings.priority_levels),
            default_level=int(settings.default_priority_level),
            default_policy=QueuePolicy.from_proto(settings.default_queue_policy),
            level_policies={
                int(level): QueuePolicy.from_proto(policy)
                for level, policy in settings.priority_queue_policy.items()
            },
            source=source,
            model=config.name,
            fallback_size=default_max_queue_size,
        )
        self._hold_until_ns: int | None = None

    def _push(self, item: QueuedRequest, priority: int, timeout_us: int, now_ns: int) -> None:
        self._queues.push(item, priority, timeout_us, now_ns)

    def _discard(self, item: QueuedRequest) -> None:
        self._queues.discard(item)

    def _queued(self) -> int:
        return len(self._queues)

    def _expire(self, now_ns: int) -> list[QueuedRequest]:
        return self._queues.expire(now_ns)

    def _next_batch(self, now_ns: int) -> list[QueuedRequest] | None:
        self._hold_until_ns = None
        chosen: list[QueuedRequest] = []
        size = 0
        preferred_count = 0
        full = False
        for item in self._queues:
            if item.gone:  # its caller went away; withdraw() takes it out
                continue
            if size + item.batch_size > self.limit:
                full = True
                break
            chosen.append(item)
            size += item.batch_size
            if size in self.preferred:
                preferred_count = len(chosen)
            if size == self.limit:
                full = True
                break
        if not chosen:
            return None
        oldest_ns = min(item.enqueue_ns for item in chosen)
        if not (full or self.draining or now_ns - oldest_ns >= self.delay_ns):
            if not preferred_count:
                self._hold_until_ns = oldest_ns + self.delay_ns
                return None
            chosen = chosen[:preferred_count]
        self._queues.take(chosen)
        return chosen

    def _wake_ns(self, now_ns: int, slot_free: bool) -> int | None:
        wake = self._queues.next_deadline_ns()
        if slot_free and len(self._queues) and self._hold_until_ns is not None:
            wake = self._hold_until_ns if wake is None else min(wake, self._hold_until_ns)
        return wake
