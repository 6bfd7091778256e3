"""The default scheduler, for models without ``dynamic_batching``: one request per execution.

Requests run in arrival order, each alone, as soon as an instance has a free slot. The queue
is bounded (``--default-max-queue-size``) so overload is refused at once (Unavailable, in
Triton's words for a full queue) rather than absorbed; Triton applies no queue policy here, so
request priorities and timeouts are not used, and its queue is unbounded (the flag at 0).
"""

from __future__ import annotations

from collections import deque

from headrace.errors import InvalidConfig
from headrace.scheduling.base import StatsSink
from headrace.scheduling.dispatch import QueueingScheduler
from headrace.scheduling.pool import InstancePool
from headrace.scheduling.queue_policy import (
    DEFAULT_MAX_QUEUE_SIZE,
    MAX_QUEUE_SIZE_FLAG,
    QueuedRequest,
    queue_full,
)

__all__ = ["DefaultScheduler"]


class DefaultScheduler(QueueingScheduler):
    """FIFO, one request per batch, at most ``max_queue_size`` requests waiting (0: no bound)."""

    def __init__(
        self,
        pool: InstancePool,
        stats: StatsSink | None = None,
        *,
        name: str = "",
        max_batch_size: int = 0,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        super().__init__(pool, stats, name=name, max_batch_size=max_batch_size)
        if max_queue_size < 0:
            raise InvalidConfig(f"{MAX_QUEUE_SIZE_FLAG} must not be negative, got {max_queue_size}")
        self.max_queue_size = max_queue_size
        self._queue: deque[QueuedRequest] = deque()
        self._size = 0

    def _push(self, item: QueuedRequest, priority: int, timeout_us: int, now_ns: int) -> None:
        if self.max_queue_size and self._size >= self.max_queue_size:
            raise queue_full(item.item, self.name, self.max_queue_size, MAX_QUEUE_SIZE_FLAG)
        self._queue.append(item)
        self._size += 1

    def _discard(self, item: QueuedRequest) -> None:
        if item.queued:
            item.queued = False
            self._size -= 1

    def _queued(self) -> int:
        return self._size

    def _next_batch(self, now_ns: int) -> list[QueuedRequest] | None:
        while self._queue:
            item = self._queue.popleft()
            if not item.queued:
                continue
            self._discard(item)
            if item.gone:  # its caller went away while it was queued
                continue
            return [item]
        return None
