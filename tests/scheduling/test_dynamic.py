"""The dynamic batcher: batching, delay, preferred sizes, priorities, queue policies, drain."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from sched_fakes import RecordingStats, make_config, make_pool, request, wait_started

from headrace.errors import (
    DeadlineExceeded,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
)
from headrace.scheduling import DynamicBatcher, make_scheduler


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_requests_are_batched_and_each_gets_its_own_output() -> None:
    config = make_config(16, "max_queue_delay_microseconds: 20000")
    pool, (backend,) = make_pool(config)
    stats = RecordingStats()
    batcher = DynamicBatcher(config, pool, stats)

    async def main() -> list[dict]:
        return await asyncio.gather(*(batcher.schedule(request(i)) for i in range(64)))

    try:
        results = run(main())
    finally:
        pool.close()
    for index, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 2 * index, np.float32))
    assert max(backend.sizes) > 1
    assert max(backend.sizes) <= 16
    assert sum(backend.sizes) == 64
    assert sorted(backend.seen) == list(range(64))
    assert sum(stats.batches) == 64
    assert len(stats.requests) == 64 and all(ok for ok, _, _ in stats.requests)
    assert batcher.pending == 0


def test_lone_request_waits_for_the_queue_delay() -> None:
    config = make_config(8, "max_queue_delay_microseconds: 200000")
    pool, (backend,) = make_pool(config)
    batcher = DynamicBatcher(config, pool)

    async def main() -> float:
        start = time.monotonic()
        await batcher.schedule(request(1))
        return time.monotonic() - start

    try:
        elapsed = run(main())
    finally:
        pool.close()
    assert elapsed >= 0.2
    assert backend.sizes == [1]


def test_full_batch_does_not_wait_for_the_delay() -> None:
    config = make_config(8, "max_queue_delay_microseconds: 20000000")  # 20 s
    pool, (backend,) = make_pool(config)
    batcher = DynamicBatcher(config, pool)

    async def main() -> float:
        start = time.monotonic()
        await asyncio.gather(*(batcher.schedule(request(i, rows=2)) for i in range(4)))
        return time.monotonic() - start

    try:
        elapsed = run(main())
    finally:
        pool.close()
    assert elapsed < 10
    assert backend.sizes == [8]  # four requests of two rows each, in one batch


def test_preferred_batch_size_dispatches_without_waiting() -> None:
    config = make_config(8, "preferred_batch_size: [4] max_queue_delay_microseconds: 300000")
    pool, (backend,) = make_pool(config)
    batcher = DynamicBatcher(config, pool)

    async def main() -> None:
        await asyncio.gather(*(batcher.schedule(request(i)) for i in range(6)))

    try:
        run(main())
    finally:
        pool.close()
    assert backend.sizes == [4, 2]


def test_requests_are_never_split_across_batches() -> None:
    config = make_config(4)
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> list[dict]:
        first = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        rest = [asyncio.ensure_future(batcher.schedule(request(i, rows=3))) for i in (1, 2)]
        await asyncio.sleep(0)
        backend.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        results = run(main())
    finally:
        pool.close()
    assert [r["y"].shape[0] for r in results] == [1, 3, 3]
    assert [len(batch) for batch in backend.batches] == [1, 3, 3]


def test_oversized_request_is_refused() -> None:
    config = make_config(4)
    pool, _ = make_pool(config)
    batcher = DynamicBatcher(config, pool)
    try:
        with pytest.raises(InvalidInput, match="batch size 5"):
            run(batcher.schedule(request(1, rows=5)))
    finally:
        pool.close()


def test_higher_priority_runs_first() -> None:
    config = make_config(1, "priority_levels: 2 default_priority_level: 2")
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> None:
        blocker = asyncio.ensure_future(batcher.schedule(request(0), priority=1))
        await wait_started(backend)
        low = asyncio.ensure_future(batcher.schedule(request(1), priority=2))
        default = asyncio.ensure_future(batcher.schedule(request(2)))  # 0 = level 2
        high = asyncio.ensure_future(batcher.schedule(request(3), priority=1))
        await asyncio.sleep(0)
        assert batcher.pending == 4
        backend.gate.set()
        await asyncio.gather(blocker, low, default, high)

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen == [0, 3, 1, 2]


def test_full_queue_refuses_at_once() -> None:
    config = make_config(1, "default_queue_policy { max_queue_size: 2 }")
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    stats = RecordingStats()
    batcher = DynamicBatcher(config, pool, stats)

    async def main() -> list[dict]:
        blocker = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        queued = [asyncio.ensure_future(batcher.schedule(request(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match=r"Exceeds maximum queue size.*\(max_queue_size\)"):
            await batcher.schedule(request(3))
        backend.gate.set()
        return await asyncio.gather(blocker, *queued)

    try:
        results = run(main())
    finally:
        pool.close()
    assert len(results) == 3
    assert sorted(ok for ok, _, _ in stats.requests) == [False, True, True, True]


def test_a_config_without_max_queue_size_is_bounded_by_the_server_default() -> None:
    config = make_config(1, "max_queue_delay_microseconds: 0")
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = make_scheduler(config, pool, default_max_queue_size=1)
    assert isinstance(batcher, DynamicBatcher)

    async def main() -> list[dict]:
        blocker = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        queued = asyncio.ensure_future(batcher.schedule(request(1)))
        await asyncio.sleep(0)
        with pytest.raises(
            Unavailable, match=r"has 1 requests queued \(--default-max-queue-size\)"
        ):
            await batcher.schedule(request(2))
        backend.gate.set()
        return await asyncio.gather(blocker, queued)

    try:
        assert len(run(main())) == 2
    finally:
        pool.close()


def test_queue_timeout_rejects_while_the_instance_is_busy() -> None:
    config = make_config(
        1, "default_queue_policy { default_timeout_microseconds: 50000 timeout_action: REJECT }"
    )
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> None:
        blocker = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        with pytest.raises(DeadlineExceeded, match="timed out"):
            await batcher.schedule(request(1))  # expires before the gate opens
        backend.gate.set()
        await blocker

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen == [0]


def test_request_timeout_applies_only_with_override_allowed() -> None:
    allowed = make_config(
        1,
        "default_queue_policy { default_timeout_microseconds: 20000000 "
        "allow_timeout_override: true }",
    )
    refused = make_config(1, "default_queue_policy { default_timeout_microseconds: 20000000 }")
    for config, expect_timeout in ((allowed, True), (refused, False)):
        pool, (backend,) = make_pool(config, depth=1, gated=True)
        batcher = DynamicBatcher(config, pool)

        async def main() -> bool:
            blocker = asyncio.ensure_future(batcher.schedule(request(0)))  # noqa: B023
            await wait_started(backend)  # noqa: B023
            short = asyncio.ensure_future(batcher.schedule(request(1), timeout_us=30000))  # noqa: B023
            done, _ = await asyncio.wait([short], timeout=1.0)
            backend.gate.set()  # noqa: B023
            await blocker
            if done:
                with pytest.raises(DeadlineExceeded):
                    short.result()
                return True
            await short
            return False

        try:
            assert run(main()) is expect_timeout
        finally:
            pool.close()


def test_delay_action_moves_late_requests_behind_on_time_ones() -> None:
    config = make_config(
        1,
        "default_queue_policy { default_timeout_microseconds: 20000000 "
        "allow_timeout_override: true timeout_action: DELAY }",
    )
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> None:
        blocker = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        late = asyncio.ensure_future(batcher.schedule(request(1), timeout_us=1))
        on_time = asyncio.ensure_future(batcher.schedule(request(2)))
        await asyncio.sleep(0)
        backend.gate.set()
        await asyncio.gather(blocker, late, on_time)  # DELAY never rejects

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen == [0, 2, 1]


def test_failing_batch_fails_only_its_requests() -> None:
    config = make_config(4)
    pool, _ = make_pool(config)
    stats = RecordingStats()
    batcher = DynamicBatcher(config, pool, stats)

    async def main() -> dict:
        with pytest.raises(ModelExecutionError, match="negative input"):
            await batcher.schedule(request(-1))
        return await batcher.schedule(request(5))

    try:
        outputs = run(main())
    finally:
        pool.close()
    np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 10, np.float32))
    assert [ok for ok, _, _ in stats.requests] == [False, True]
    assert stats.batches == [1]  # the failed batch adds no batch statistics


def test_two_instances_run_two_batches_at_once() -> None:
    config = make_config(1)
    pool, backends = make_pool(config, count=2, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> list[dict]:
        tasks = [asyncio.ensure_future(batcher.schedule(request(i))) for i in (1, 2)]
        for backend in backends:
            await wait_started(backend)
        assert pool.in_flight_per_instance() == [1, 1]
        for backend in backends:
            backend.gate.set()
        return await asyncio.gather(*tasks)

    try:
        results = run(main())
    finally:
        pool.close()
    assert [float(r["y"][0, 0]) for r in results] == [2.0, 4.0]
    assert sorted(v for b in backends for v in b.seen) == [1.0, 2.0]


def test_cancelled_queued_request_is_skipped() -> None:
    config = make_config(1)
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> None:
        blocker = asyncio.ensure_future(batcher.schedule(request(0)))
        await wait_started(backend)
        gone = asyncio.ensure_future(batcher.schedule(request(1)))
        kept = asyncio.ensure_future(batcher.schedule(request(2)))
        await asyncio.sleep(0)
        gone.cancel()
        backend.gate.set()
        await asyncio.gather(blocker, kept)
        assert gone.cancelled()

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen == [0, 2]
    assert batcher.pending == 0


def test_drain_finishes_accepted_requests_and_refuses_new_ones() -> None:
    config = make_config(1, "max_queue_delay_microseconds: 20000000")
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    batcher = DynamicBatcher(config, pool)

    async def main() -> list[dict]:
        accepted = [asyncio.ensure_future(batcher.schedule(request(i))) for i in (1, 2)]
        await wait_started(backend)
        drain = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0)
        assert not drain.done()
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.schedule(request(3))
        backend.gate.set()
        await drain
        assert batcher.pending == 0
        return [task.result() for task in accepted]

    try:
        results = run(main())
    finally:
        pool.close()
    assert [float(r["y"][0, 0]) for r in results] == [2.0, 4.0]


@pytest.mark.parametrize(
    ("dynamic", "field"),
    [
        ("preferred_batch_size: [16]", "preferred_batch_size"),
        ("priority_levels: 2 default_priority_level: 3", "default_priority_level"),
        (
            "priority_levels: 2 default_priority_level: 1 priority_queue_policy { key: 5 value {} }",
            "priority_queue_policy",
        ),
    ],
)
def test_bad_batcher_settings_are_refused(dynamic: str, field: str) -> None:
    config = make_config(8, dynamic)
    pool, _ = make_pool(config)
    try:
        with pytest.raises(InvalidConfig, match=field):
            DynamicBatcher(config, pool)
    finally:
        pool.close()
