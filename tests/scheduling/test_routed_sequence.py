"""Sequences across frontends: each frontend routes by correlation id, the instance's own
process runs the sequence batcher (here: two "actors" as event loop threads, no Ray)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest
from sched_fakes import RecordingStats
from sequence_fakes import accumulator_pool, sequence_config, value

from headrace.errors import InvalidInput, Unavailable
from headrace.scheduling.routed_sequence import RoutedSequenceScheduler, route
from headrace.scheduling.sinks import FutureSink
from headrace.types import WorkItem


class FakeActor:
    """One instance with its own event loop thread, as a Ray async actor has."""

    def __init__(self, instance: Any, name: str) -> None:
        self.name = name
        self.instance = instance
        self.dead = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn: Any, *args: Any) -> Future[Any]:
        if self.dead:
            failed: Future[Any] = Future()
            failed.set_exception(Unavailable(f"model 'acc' instance '{self.name}' is gone"))
            return failed
        return asyncio.run_coroutine_threadsafe(fn(self.instance, *args), self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def actors() -> Iterator[list[FakeActor]]:
    pool, _ = accumulator_pool(sequence_config(), count=2)
    made = [FakeActor(instance, f"acc_{i}") for i, instance in enumerate(pool.instances)]
    yield made
    for actor in made:
        actor.stop()
    pool.close()


def test_route_is_the_same_everywhere() -> None:
    assert [route(i, 3) for i in (0, 1, 2, 3, 2**64 - 1)] == [0, 1, 2, 0, (2**64 - 1) % 3]
    assert route("alpha", 2) == route("alpha", 2) and 0 <= route("alpha", 7) < 7


async def _send(
    scheduler: RoutedSequenceScheduler, v: int, sequence: int | str, start: bool, end: bool
) -> int:
    sink = FutureSink(asyncio.get_running_loop())
    scheduler.submit(
        WorkItem(value(v), sink, sequence_id=sequence, sequence_start=start, sequence_end=end)
    )
    outputs = await sink.future
    return int(np.asarray(outputs["OUTPUT"]).ravel()[0])


def test_two_frontends_carry_each_sequences_state(actors: list[FakeActor]) -> None:
    config = sequence_config()
    stats = [RecordingStats(), RecordingStats()]
    frontends = [RoutedSequenceScheduler(config, actors, s) for s in stats]

    async def main() -> list[list[int]]:
        results = []
        for sequence in (1, 2, 3, 4):
            sums = []
            for step, v in enumerate((5, 3, 2, 1)):
                frontend = frontends[step % 2]
                sums.append(await _send(frontend, v, sequence, step == 0, step == 3))
            results.append(sums)
        for frontend in frontends:
            await frontend.drain()
        return results

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [[5, 8, 10, 11]] * 4
    # each frontend counted the requests it carried, with the actor's own timings
    assert [len(s.requests) for s in stats] == [8, 8]
    assert all(success for s in stats for success, _, _ in s.requests)
    assert sum(len(s.batches) for s in stats) == 16


def test_refusals_and_a_dead_actor_fail_only_their_request(actors: list[FakeActor]) -> None:
    stats = RecordingStats()
    frontend = RoutedSequenceScheduler(sequence_config(), actors, stats)

    async def main() -> None:
        with pytest.raises(InvalidInput, match="7"):  # not started: the actor's batcher says so
            await _send(frontend, 1, 7, False, False)
        actors[route(8, 2)].dead = True
        with pytest.raises(Unavailable, match="model 'acc' instance"):
            await _send(frontend, 1, 8, True, False)
        assert await _send(frontend, 4, 9, True, True) == 4  # the other actor serves
        await frontend.drain()
        with pytest.raises(Unavailable, match="shutting down"):
            await _send(frontend, 1, 9, True, True)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert [success for success, _, _ in stats.requests] == [False, True]
