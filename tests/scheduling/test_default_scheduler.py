"""The default scheduler (no dynamic batching) and make_scheduler's choice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sched_fakes import RecordingStats, make_config, make_pool, request, wait_started

from headrace.errors import ModelNotFound, Unavailable
from headrace.scheduling import (
    DEFAULT_MAX_QUEUE_SIZE,
    DefaultScheduler,
    DynamicBatcher,
    SequenceBatcher,
    make_scheduler,
)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_each_request_executes_alone_with_its_own_output() -> None:
    config = make_config(8)
    pool, (backend,) = make_pool(config)
    stats = RecordingStats()
    scheduler = make_scheduler(config, pool, stats)
    assert isinstance(scheduler, DefaultScheduler)

    async def main() -> list[dict]:
        return await asyncio.gather(*(scheduler.schedule(request(i, rows=2)) for i in range(32)))

    try:
        results = run(main())
    finally:
        pool.close()
    for index, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], np.full((2, 4), 2 * index, np.float32))
    assert backend.sizes == [2] * 32
    assert stats.batches == [2] * 32
    assert sorted(backend.seen) == sorted(float(i) for i in range(32) for _ in range(2))
    assert len(stats.requests) == 32 and all(ok for ok, _, _ in stats.requests)


def test_model_without_batch_dimension() -> None:
    config = make_config(0)
    pool, _ = make_pool(config)
    scheduler = make_scheduler(config, pool)

    async def main() -> list[dict]:
        inputs = [{"x": np.full((4,), i, np.float32)} for i in range(3)]
        return await asyncio.gather(*(scheduler.schedule(x) for x in inputs))

    try:
        results = run(main())
    finally:
        pool.close()
    assert [r["y"].tolist() for r in results] == [[2.0 * i] * 4 for i in range(3)]


def test_queue_is_bounded() -> None:
    config = make_config(8)
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    scheduler = DefaultScheduler(pool, name=config.name, max_batch_size=8, max_queue_size=2)

    async def main() -> list[dict]:
        blocker = asyncio.ensure_future(scheduler.schedule(request(0)))
        await wait_started(backend)
        queued = [asyncio.ensure_future(scheduler.schedule(request(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="Exceeds maximum queue size"):
            await scheduler.schedule(request(3))
        backend.gate.set()
        return await asyncio.gather(blocker, *queued)

    try:
        results = run(main())
    finally:
        pool.close()
    assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0]
    assert backend.seen == [0.0, 1.0, 2.0]


def test_the_bound_is_the_server_default_and_zero_lifts_it() -> None:
    config = make_config(8)
    pool, _ = make_pool(config, count=3)
    try:
        scheduler = make_scheduler(config, pool)
        assert isinstance(scheduler, DefaultScheduler)
        assert scheduler.max_queue_size == DEFAULT_MAX_QUEUE_SIZE  # per model version
        unbounded = make_scheduler(config, pool, default_max_queue_size=0)
        assert isinstance(unbounded, DefaultScheduler) and unbounded.max_queue_size == 0
    finally:
        pool.close()


def test_drain_completes_in_flight_and_refuses_new() -> None:
    config = make_config(8)
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    scheduler = make_scheduler(config, pool)

    async def main() -> list[dict]:
        accepted = [asyncio.ensure_future(scheduler.schedule(request(i))) for i in (1, 2)]
        await wait_started(backend)
        drain = asyncio.ensure_future(scheduler.drain())
        await asyncio.sleep(0)
        assert scheduler.pending == 2 and not drain.done()
        with pytest.raises(Unavailable):
            await scheduler.schedule(request(3))
        backend.gate.set()
        await drain
        return [task.result() for task in accepted]

    try:
        results = run(main())
    finally:
        pool.close()
    assert [float(r["y"][0, 0]) for r in results] == [2.0, 4.0]
    assert scheduler.pending == 0


def test_make_scheduler_choices() -> None:
    dynamic = make_config(8, "max_queue_delay_microseconds: 100")
    pool, _ = make_pool(dynamic)
    try:
        assert isinstance(make_scheduler(dynamic, pool), DynamicBatcher)
        sequence = make_config(8)
        sequence.sequence_batching.SetInParent()
        assert isinstance(make_scheduler(sequence, pool), SequenceBatcher)
        ensemble = make_config(8)
        ensemble.platform = "ensemble"
        step = ensemble.ensemble_scheduling.step.add(model_name="missing", model_version=-1)
        step.input_map["x"] = "x"
        step.output_map["y"] = "y"
        with pytest.raises(ModelNotFound, match=r"ensemble 'double' step 0 \(model 'missing'\)"):
            make_scheduler(ensemble, None)  # no router: no other model is reachable
    finally:
        pool.close()
