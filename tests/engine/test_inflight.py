"""The bounded in-flight driver: order, the depth bound, and errors only after draining."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from headrace.engine.inflight import drive_in_flight
from headrace.errors import InvalidInput


class Recorder:
    """A submit function on a thread pool that records what the driver holds at each submit."""

    def __init__(self, pool: ThreadPoolExecutor, fail_at: int = -1, seed: int = 0) -> None:
        self.pool = pool
        self.fail_at = fail_at
        self.rng = random.Random(seed)
        self.futures: list[Future[int]] = []
        self.done: list[tuple[int, int]] = []
        self.held_at_submit: list[int] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def submit(self, item: int) -> Future[int]:
        self.held_at_submit.append(len(self.futures) - len(self.done))
        future = self.pool.submit(self._work, item, self.rng.random() / 500)
        self.futures.append(future)
        return future

    def on_done(self, item: int, result: int) -> None:
        self.done.append((item, result))

    def _work(self, item: int, seconds: float) -> int:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(seconds)  # the work itself: uneven, so futures finish out of order
            if item == self.fail_at:
                raise ValueError(f"item {item} failed")
            return item * 10
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16) as executor:
        yield executor


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_results_come_back_in_order_and_the_depth_is_never_exceeded(
    pool: ThreadPoolExecutor, depth: int
) -> None:
    recorder = Recorder(pool, seed=depth)
    completed = drive_in_flight(range(60), recorder.submit, depth, recorder.on_done)
    assert completed == 60
    assert recorder.done == [(item, item * 10) for item in range(60)]
    assert max(recorder.held_at_submit) <= depth - 1
    assert recorder.most_running <= depth


class OnDemand(Future):  # type: ignore[type-arg]
    """A future that finishes only when someone waits on it, so the driver never reaps early."""

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value

    def result(self, timeout: float | None = None) -> int:
        if not self.done():
            self.set_result(self.value)
        return super().result(timeout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("depth", [1, 4])
def test_the_room_is_filled_before_the_oldest_is_waited_on(depth: int) -> None:
    held: list[int] = []
    futures: list[OnDemand] = []

    def submit(item: int) -> Future[int]:
        held.append(sum(not future.done() for future in futures))
        futures.append(OnDemand(item))
        return futures[-1]

    done: list[int] = []
    drive_in_flight(range(10), submit, depth, lambda item, result: done.append(result))
    assert held == [min(index, depth - 1) for index in range(10)]
    assert done == list(range(10))


def test_items_are_pulled_only_when_there_is_room(pool: ThreadPoolExecutor) -> None:
    recorder = Recorder(pool)
    pulled_ahead: list[int] = []

    def items() -> Iterator[int]:
        for item in range(30):
            pulled_ahead.append(len(recorder.futures) - len(recorder.done))
            yield item

    drive_in_flight(items(), recorder.submit, 4, recorder.on_done)
    assert max(pulled_ahead) <= 4


def test_without_a_callback_it_counts_what_completed() -> None:
    def submit(item: int) -> Future[int]:
        future: Future[int] = Future()
        future.set_result(item)
        return future

    assert drive_in_flight(iter(range(7)), submit, 2) == 7
    assert drive_in_flight([], submit, 2) == 0


def test_a_failed_future_stops_submission_and_raises_after_draining(
    pool: ThreadPoolExecutor,
) -> None:
    recorder = Recorder(pool, fail_at=10)
    with pytest.raises(ValueError, match="item 10 failed"):
        drive_in_flight(range(100), recorder.submit, 5, recorder.on_done)
    assert all(future.done() for future in recorder.futures)  # nothing left running
    assert len(recorder.futures) <= 10 + 5  # no submission once the failure was seen
    assert recorder.done == [(item, item * 10) for item in range(10)]  # in order, up to it


@pytest.mark.parametrize("where", ["submit", "on_done", "items"])
def test_other_errors_also_wait_for_what_is_in_flight(pool: ThreadPoolExecutor, where: str) -> None:
    recorder = Recorder(pool)
    release = threading.Event()
    slow: Future[None] = pool.submit(release.wait)

    def submit(item: int) -> Future[int]:
        if where == "submit" and item == 3:
            raise RuntimeError("submit broke")
        return slow if item == 0 else recorder.submit(item)  # type: ignore[return-value]

    def on_done(item: int, result: int) -> None:
        if where == "on_done" and item == 0:
            raise RuntimeError("callback broke")

    def items() -> Iterator[int]:
        yield from range(3)
        if where == "items":
            raise RuntimeError("items broke")
        yield from range(3, 6)

    if where == "on_done":
        release.set()
    else:
        threading.Timer(0.05, release.set).start()
    with pytest.raises(RuntimeError, match="broke"):
        drive_in_flight(items(), submit, 4, on_done)
    assert slow.done() and all(future.done() for future in recorder.futures)


def test_depth_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="at least 1, got 0"):
        drive_in_flight([1], lambda item: Future(), 0)
