"""Work items through a scheduler: metadata to request-list backends, sinks, withdraw, affinity."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sched_fakes import WAIT_S, make_config, make_pool, request, wait_started

from headrace.backends.base import Backend, BackendContext, RequestResult
from headrace.engine.instance import ModelInstance
from headrace.scheduling import DefaultScheduler, FutureSink, InstancePool, StreamSink
from headrace.types import Outputs, WorkItem


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


class Answering(Backend):
    """Sees each work item; answers 'stream' requests through the sink, others by returning."""

    name = "answering"
    handles_request_lists = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.seen: list[tuple[str, int | str, bool, bool, dict[str, Any]]] = []

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        raise AssertionError("request-list backends get work items")

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        results: list[RequestResult] = []
        for item in requests:
            self.seen.append(
                (
                    item.request_id,
                    item.sequence_id,
                    item.sequence_start,
                    item.sequence_end,
                    dict(item.parameters),
                )
            )
            y = item.inputs["x"] * 2
            if item.parameters.get("stream"):
                item.sink.send({"y": y}, final=False)
                item.sink.send({"y": y + 1}, final=True)
                results.append(None)
            else:
                results.append({"y": y})
        return results


def answering_pool() -> tuple[InstancePool, Answering]:
    config = make_config(8)
    backend = Answering(BackendContext("double", 1, "", "", config))
    return InstancePool([ModelInstance(backend, num_buffers=1)]), backend


def test_work_item_metadata_reaches_a_request_list_backend_and_sinks_answer() -> None:
    pool, backend = answering_pool()
    scheduler = DefaultScheduler(pool, name="double", max_batch_size=8)

    async def main() -> tuple[Outputs, list[Any]]:
        loop = asyncio.get_running_loop()
        plain = FutureSink(loop)
        scheduler.submit(
            WorkItem(
                request(1.0),
                plain,
                request_id="a",
                sequence_id="s-1",
                sequence_start=True,
                parameters={"k": 1},
            )
        )
        streamed = StreamSink(loop)
        scheduler.submit(
            WorkItem(request(2.0), streamed, request_id="b", parameters={"stream": True})
        )
        got = [r async for r in streamed.responses()]
        outputs = await plain.future
        await asyncio.wait_for(scheduler.drain(), WAIT_S)  # the batches' own ends, too
        return outputs, got

    try:
        plain, streamed = run(main())
    finally:
        pool.close()
    np.testing.assert_array_equal(plain["y"], np.full((1, 4), 2.0, np.float32))
    assert [(r.outputs["y"][0, 0], r.final) for r in streamed] == [(4.0, False), (5.0, True)]
    assert backend.seen == [
        ("a", "s-1", True, False, {"k": 1}),
        ("b", 0, False, False, {"stream": True}),
    ]
    assert scheduler.pending == 0


def test_withdrawing_a_queued_item_frees_its_place_at_once() -> None:
    config = make_config(8)
    pool, (backend,) = make_pool(config, depth=1, gated=True)
    scheduler = DefaultScheduler(pool, name="double", max_batch_size=8, max_queue_size=1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = FutureSink(loop)
        scheduler.submit(WorkItem(request(1.0), first))
        await wait_started(backend)  # the first runs; the next one queues
        second = FutureSink(loop)
        ticket = scheduler.submit(WorkItem(request(2.0), second))
        assert scheduler.pending == 2
        second.future.cancel()  # its caller went away
        scheduler.withdraw(ticket)
        assert scheduler.pending == 1
        third = FutureSink(loop)
        scheduler.submit(WorkItem(request(3.0), third))  # the queue has room again
        assert backend.gate is not None
        backend.gate.set()
        await first.future
        outputs = await third.future
        np.testing.assert_array_equal(outputs["y"], np.full((1, 4), 6.0, np.float32))
        await asyncio.wait_for(scheduler.drain(), WAIT_S)

    try:
        run(main())
    finally:
        pool.close()
    assert sorted(backend.seen) == [1.0, 3.0]


def test_pool_affinity_runs_a_batch_on_the_chosen_instance() -> None:
    config = make_config(8)
    pool, backends = make_pool(config, count=2)

    async def main() -> None:
        for _ in range(3):
            (result,) = await pool.run([WorkItem(request(1.0))], affinity=1)
            assert not isinstance(result, BaseException)

    try:
        run(main())
    finally:
        pool.close()
    assert [len(b.seen) for b in backends] == [0, 3]
