"""Short batches run on the calling (event loop) thread; slow ones go back to the threads."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from sched_fakes import make_config, make_pool, request

from headrace.errors import InvalidConfig, ModelExecutionError
from headrace.scheduling import InstancePool
from headrace.scheduling import pool as pool_module


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


async def batches(pool: InstancePool, values: list[float]) -> list:
    """Run one single-request batch per value, one after the other."""
    return [await pool.run([request(value)]) for value in values]


def test_after_a_short_first_batch_the_next_ones_run_on_the_loop_thread() -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=1_000_000)
    try:
        results = run(batches(pool, [1, 2, 3]))
    finally:
        pool.close()
    loop_thread = threading.current_thread().name
    assert backend.threads[0] != loop_thread  # nothing is known before the first batch
    assert backend.threads[1:] == [loop_thread, loop_thread]
    for value, (outputs,) in zip([1, 2, 3], results):
        np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 2 * value, np.float32))


def test_without_a_threshold_every_batch_goes_to_the_threads() -> None:
    pool, (backend,) = make_pool(make_config(8))
    try:
        run(batches(pool, [1, 2, 3]))
    finally:
        pool.close()
    assert threading.current_thread().name not in backend.threads


def test_a_slow_batch_sends_the_following_ones_back_to_the_threads() -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=20_000)
    loop_thread = threading.current_thread().name

    async def main() -> None:
        await batches(pool, [1, 2])
        backend.delay_s = 0.2  # ten times the threshold: the average jumps above it
        await batches(pool, [3, 4])

    try:
        run(main())
    finally:
        pool.close()
    assert backend.threads[1:3] == [loop_thread, loop_thread]
    assert backend.threads[3] != loop_thread


def test_a_failing_batch_on_the_loop_thread_fails_only_its_own_requests() -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=1_000_000)

    async def main() -> tuple[list, list]:
        await pool.run([request(1)])
        failed = await pool.run([request(-1), request(2)])
        after = await pool.run([request(3)])
        return failed, after

    try:
        failed, after = run(main())
    finally:
        pool.close()
    assert backend.threads[1] == threading.current_thread().name
    assert all(isinstance(result, ModelExecutionError) for result in failed)
    assert "negative input" in str(failed[0])
    np.testing.assert_array_equal(after[0]["y"], np.full((1, 4), 6, np.float32))
    assert pool.free_slots == pool.capacity


def test_a_batch_goes_to_the_threads_while_its_instance_has_another_in_flight() -> None:
    pool, (backend,) = make_pool(make_config(8), depth=2, run_now_below_us=1_000_000)

    async def main() -> list:
        await pool.run([request(1)])  # the cost is known from here on
        # Both start in one loop iteration: the first runs now, and its slot is still
        # counted in flight when the second is dispatched.
        runs = [asyncio.ensure_future(pool.run([request(value)])) for value in (2, 3)]
        return await asyncio.gather(*runs)

    try:
        results = run(main())
    finally:
        pool.close()
    assert backend.threads[1] == threading.current_thread().name
    assert backend.threads[2] != threading.current_thread().name
    for value, (outputs,) in zip([2, 3], results):
        np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 2 * value, np.float32))


def where(backend: object) -> list[str]:
    """'loop' or 'thread' for each batch the backend ran."""
    loop_thread = threading.current_thread().name
    return ["loop" if name == loop_thread else "thread" for name in backend.threads]  # type: ignore[attr-defined]


def test_a_batch_slow_only_on_the_threads_is_probed_on_the_loop_thread_and_stays_there() -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=20_000)
    backend.thread_delay_s = 0.05  # above the threshold, under ten times it
    try:
        results = run(batches(pool, [1, 2, 3, 4]))
    finally:
        pool.close()
    assert where(backend) == ["thread", "loop", "loop", "loop"]
    for value, (outputs,) in zip([1, 2, 3, 4], results):
        np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 2 * value, np.float32))


def test_a_batch_far_over_the_threshold_on_the_threads_is_never_probed() -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=2_000)
    backend.thread_delay_s = 0.05  # 25 times the threshold: a model that waits, not a cheap one
    try:
        run(batches(pool, [1, 2, 3]))
    finally:
        pool.close()
    assert where(backend) == ["thread", "thread", "thread"]


def test_a_probe_that_shows_a_slow_batch_waits_an_interval_before_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, (backend,) = make_pool(make_config(8), run_now_below_us=20_000)
    backend.delay_s = 0.03  # slow everywhere: the probe finds it slow on the loop thread too
    try:
        run(batches(pool, [1, 2, 3, 4]))
        assert where(backend) == ["thread", "loop", "thread", "thread"]
        monkeypatch.setattr(pool_module, "_PROBE_INTERVAL_NS", 0)
        run(batches(pool, [5, 6]))
    finally:
        pool.close()
    assert where(backend)[4:] == ["loop", "loop"]  # no interval: every batch is a probe


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="--run-now-below-us must not be negative"):
        make_pool(make_config(8), run_now_below_us=-1)
