"""CachingScheduler: hits skip the model's scheduler, misses store what it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from headrace.errors import InternalError
from headrace.scheduling.base import Scheduler
from headrace.scheduling.caching import CachingScheduler
from headrace.scheduling.response_cache import ResponseCache
from headrace.types import WorkItem


class _Inner(Scheduler):
    """Answers each request at once with y = 2x (or fails it), and remembers what it saw."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[WorkItem] = []
        self.withdrawn: list[Any] = []
        self.fail = fail

    def submit(self, item: WorkItem) -> Any:
        self.seen.append(item)
        if self.fail:
            item.sink.fail(InternalError("model broke"))
        else:
            item.sink.send({"y": np.asarray(item.inputs["x"]) * 2}, parameters={"p": "v"})
        return len(self.seen)

    def withdraw(self, ticket: Any) -> None:
        self.withdrawn.append(ticket)

    async def drain(self) -> None:
        return None

    @property
    def pending(self) -> int:
        return 0


class _Stats:
    def __init__(self) -> None:
        self.hits: list[tuple[int, int]] = []
        self.misses: list[int] = []

    def record_cache_hit(self, *, hit_ns: int, total_ns: int) -> None:
        self.hits.append((hit_ns, total_ns))

    def record_cache_miss(self, *, miss_ns: int) -> None:
        self.misses.append(miss_ns)


class _RecordingSink:
    def __init__(self) -> None:
        self.sent: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
        self.failed: list[BaseException] = []

    @property
    def done(self) -> bool:
        return bool(self.sent or self.failed)

    def send(self, outputs: Any, *, final: bool = True, parameters: Any = None) -> None:
        self.sent.append((outputs, parameters))

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self.failed.append(error)


def _scheduler(inner: _Inner) -> tuple[CachingScheduler, _Stats]:
    stats = _Stats()
    return CachingScheduler(inner, ResponseCache(1 << 20), stats, name="m", version=1), stats


def test_a_repeated_request_is_answered_from_the_cache_without_the_model() -> None:
    inner = _Inner()
    caching, stats = _scheduler(inner)
    x = np.arange(4, dtype=np.float32)
    first, second = _RecordingSink(), _RecordingSink()
    caching.submit(WorkItem({"x": x}, first))
    ticket = caching.submit(WorkItem({"x": x.copy()}, second))
    assert len(inner.seen) == 1
    assert len(stats.misses) == 1 and len(stats.hits) == 1
    (outputs, parameters), (cached, cached_parameters) = first.sent[0], second.sent[0]
    assert outputs is not None and cached is not None
    np.testing.assert_array_equal(cached["y"], outputs["y"])
    assert dict(cached_parameters or {}) == parameters == {"p": "v"}
    caching.withdraw(ticket)  # a hit has nothing to withdraw
    assert inner.withdrawn == []


def test_a_different_request_misses() -> None:
    inner = _Inner()
    caching, stats = _scheduler(inner)
    caching.submit(WorkItem({"x": np.zeros(4, np.float32)}, _RecordingSink()))
    caching.submit(WorkItem({"x": np.ones(4, np.float32)}, _RecordingSink()))
    caching.submit(
        WorkItem({"x": np.ones(4, np.float32)}, _RecordingSink(), requested_outputs=("y",))
    )
    assert len(inner.seen) == 3
    assert len(stats.misses) == 3 and stats.hits == []


def test_a_failed_request_stores_nothing_and_is_no_miss() -> None:
    inner = _Inner(fail=True)
    caching, stats = _scheduler(inner)
    sinks = [_RecordingSink(), _RecordingSink()]
    for sink in sinks:
        caching.submit(WorkItem({"x": np.zeros(4, np.float32)}, sink))
    assert len(inner.seen) == 2
    assert all(sink.failed for sink in sinks)
    assert stats.misses == [] and len(caching.cache) == 0


def test_a_miss_ticket_is_withdrawn_from_the_inner_scheduler() -> None:
    inner = _Inner()
    caching, _ = _scheduler(inner)
    ticket = caching.submit(WorkItem({"x": np.zeros(4, np.float32)}, _RecordingSink()))
    caching.withdraw(ticket)
    assert inner.withdrawn == [ticket]


def test_schedule_over_a_future_sink_returns_the_cached_outputs() -> None:
    inner = _Inner()
    caching, _ = _scheduler(inner)

    async def body() -> list[np.ndarray]:
        x = np.arange(3, dtype=np.float32)
        return [(await caching.schedule({"x": x}))["y"] for _ in range(3)]

    results = asyncio.run(body())
    assert len(inner.seen) == 1
    for result in results:
        np.testing.assert_array_equal(result, [0, 2, 4])
