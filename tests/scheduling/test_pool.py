"""The instance pool: slots, concurrency across instances, per-request results and errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sched_fakes import make_config, make_pool, request, wait_started

from headrace.errors import InvalidConfig, ModelExecutionError
from headrace.scheduling import InstancePool


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_run_returns_each_requests_outputs() -> None:
    pool, (backend,) = make_pool(make_config(8))

    async def main() -> list:
        return await pool.run([request(1), request(2, rows=3)])

    try:
        first, second = run(main())
    finally:
        pool.close()
    np.testing.assert_array_equal(first["y"], np.full((1, 4), 2, np.float32))
    np.testing.assert_array_equal(second["y"], np.full((3, 4), 4, np.float32))
    assert backend.sizes == [4]


def test_capacity_is_one_batch_per_cpu_instance_unless_a_depth_is_given() -> None:
    pool, _ = make_pool(make_config(8), count=2)
    deep, _ = make_pool(make_config(8), count=2, depth=3)
    try:
        assert (len(pool), pool.capacity, pool.free_slots) == (2, 2, 2)
        assert deep.capacity == 6
    finally:
        pool.close()
        deep.close()


def test_two_instances_run_concurrently() -> None:
    pool, backends = make_pool(make_config(8), count=2, depth=1, gated=True)

    async def main() -> list:
        runs = [asyncio.ensure_future(pool.run([request(i)])) for i in (1, 2)]
        for backend in backends:
            await wait_started(backend)
        assert pool.in_flight_per_instance() == [1, 1]
        assert pool.free_slots == 0
        for backend in backends:
            backend.gate.set()
        return await asyncio.gather(*runs)

    try:
        results = run(main())
    finally:
        pool.close()
    assert [float(r[0]["y"][0, 0]) for r in results] == [2.0, 4.0]
    assert pool.in_flight == 0


def test_run_waits_for_a_free_slot() -> None:
    pool, (backend,) = make_pool(make_config(8), depth=1, gated=True)

    async def main() -> list:
        first = asyncio.ensure_future(pool.run([request(1)]))
        await wait_started(backend)
        second = asyncio.ensure_future(pool.run([request(2)]))
        await asyncio.sleep(0)
        assert not second.done() and pool.try_acquire() is None
        assert backend.seen == [1.0]
        backend.gate.set()
        return await asyncio.gather(first, second)

    try:
        results = run(main())
    finally:
        pool.close()
    assert backend.seen == [1.0, 2.0]
    assert [float(r[0]["y"][0, 0]) for r in results] == [2.0, 4.0]


def test_failed_batch_gives_each_request_the_error_and_the_pool_recovers() -> None:
    pool, _ = make_pool(make_config(8))

    async def main() -> tuple[list, list]:
        failed = await pool.run([request(-1), request(1)])
        good = await pool.run([request(3)])
        return failed, good

    try:
        failed, good = run(main())
    finally:
        pool.close()
    assert all(isinstance(entry, ModelExecutionError) for entry in failed)
    assert "negative input" in str(failed[0])
    assert float(good[0]["y"][0, 0]) == 6.0
    assert pool.free_slots == pool.capacity


def test_release_listeners_hear_each_finished_batch() -> None:
    pool, _ = make_pool(make_config(8))
    heard: list[int] = []
    pool.add_release_listener(lambda: heard.append(pool.in_flight))

    async def main() -> None:
        await asyncio.gather(pool.run([request(1)]), pool.run([request(2)]))

    try:
        run(main())
    finally:
        pool.close()
    assert len(heard) == 2 and heard[-1] == 0


def test_pool_needs_instances_and_a_positive_depth() -> None:
    with pytest.raises(InvalidConfig, match="at least one"):
        InstancePool([])
    pool, _ = make_pool(make_config(8))
    try:
        with pytest.raises(InvalidConfig, match="depth"):
            InstancePool(pool.instances, depth=0)
    finally:
        pool.close()


class _Remote:
    """An instance living elsewhere (a Ray actor's stand-in): up or down, answering at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True
        self.depth = 1
        self.can_run_now = False
        self.batches = 0

    def submit_requests_timed(self, requests):  # type: ignore[no-untyped-def]
        from concurrent.futures import Future

        from headrace.engine.instance import TimedRequests
        from headrace.engine.stats import StageTimes
        from headrace.errors import Unavailable

        self.batches += 1
        future: Future = Future()
        if not self.alive:
            future.set_exception(Unavailable(f"instance '{self.name}' is down"))
        else:
            future.set_result(TimedRequests([dict(r) for r in requests], StageTimes()))
        return future

    def close(self, *, drain: bool = True) -> None:
        pass


def test_batches_go_to_instances_that_are_up_and_fail_at_once_when_none_is() -> None:
    from headrace.errors import Unavailable

    up, down = _Remote("up"), _Remote("down")
    down.alive = False
    pool = InstancePool([down, up])

    async def main() -> list:
        return [await pool.run([request(i)]) for i in range(4)]

    assert (pool.alive, pool.free_slots) == (True, 1)  # the down instance's slot is not free
    run(main())
    assert (up.batches, down.batches) == (4, 0)
    up.alive = False
    assert (pool.alive, pool.free_slots) == (False, 2)  # none up: batches go, and fail at once
    (error,) = run(pool.run([request(1)]))
    assert isinstance(error, Unavailable) and "is down" in error.message
    down.alive = True
    run(pool.run([request(1)]))
    assert down.batches == 2 and pool.alive
