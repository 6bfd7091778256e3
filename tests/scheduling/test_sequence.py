"""The sequence batcher: slots, ordering, strategies, controls, implicit state, bad input."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sched_fakes import RecordingStats
from sequence_fakes import WAIT_S, accumulator_pool, sequence_config, value

from headrace.errors import InvalidConfig, InvalidInput, ModelExecutionError, Unavailable
from headrace.scheduling import FutureSink, SequenceBatcher, make_scheduler
from headrace.types import WorkItem


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def send(
    batcher: SequenceBatcher,
    v: int,
    sequence_id: int | str,
    *,
    start: bool = False,
    end: bool = False,
    request_id: str = "",
    timeout_us: int = 0,
    inputs: dict[str, np.ndarray] | None = None,
) -> Awaitable[dict[str, Any]]:
    """Submit one request (raising at once if refused) and return its answer's future."""
    sink = FutureSink(asyncio.get_running_loop())
    item = WorkItem(
        inputs if inputs is not None else value(v, batcher.max_batch_size > 0),
        sink,
        request_id=request_id,
        sequence_id=sequence_id,
        sequence_start=start,
        sequence_end=end,
        timeout_us=timeout_us,
    )
    batcher.submit(item)
    return sink.future


def total(outputs: dict[str, Any]) -> int:
    return int(outputs["OUTPUT"].reshape(-1)[0])


async def wait_for(event: Any) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_S), "backend never started"


def test_make_scheduler_builds_the_sequence_batcher() -> None:
    config = sequence_config()
    pool, _ = accumulator_pool(config)
    try:
        assert isinstance(make_scheduler(config, pool), SequenceBatcher)
    finally:
        pool.close()


def test_implicit_state_carries_a_sum_and_start_resets_it() -> None:
    config = sequence_config()
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> list[int]:
        sums = [total(await send(batcher, 5, 7, start=True))]
        sums.append(total(await send(batcher, 3, 7)))
        sums.append(total(await send(batcher, 2, 7)))
        sums.append(total(await send(batcher, 10, 7, start=True)))  # starts again
        sums.append(total(await send(batcher, 1, 7, end=True)))
        return sums

    try:
        assert run(main()) == [5, 8, 10, 10, 11]
    finally:
        pool.close()
    seen = backend.seen
    assert [s.state for s in seen] == [0, 5, 8, 0, 10]
    assert [s.start for s in seen] == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert [s.end for s in seen] == [0, 0, 0, 0, 1]
    assert all(s.ready and s.corrid == 7 for s in seen)


def test_the_state_output_is_not_returned_to_the_client() -> None:
    config = sequence_config()
    pool, _ = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> dict[str, Any]:
        return await send(batcher, 5, 1, start=True, end=True)

    try:
        assert set(run(main())) == {"OUTPUT"}
    finally:
        pool.close()


def test_state_sent_through_the_sink_is_kept_and_hidden() -> None:
    config = sequence_config()
    pool, (backend,) = accumulator_pool(config)
    backend.via_sink = True
    batcher = SequenceBatcher(config, pool)

    async def main() -> list[dict[str, Any]]:
        first = await send(batcher, 4, 2, start=True)
        return [first, await send(batcher, 6, 2, end=True)]

    try:
        first, second = run(main())
    finally:
        pool.close()
    assert set(first) == {"OUTPUT"}
    assert total(second) == 10


def test_each_sequence_runs_in_order_on_one_instance() -> None:
    config = sequence_config(max_batch_size=2)
    pool, backends = accumulator_pool(config, count=2)
    batcher = SequenceBatcher(config, pool)

    async def one(sequence_id: int) -> list[int]:
        sums = []
        for step in range(6):
            answer = await send(
                batcher, step, sequence_id, start=step == 0, end=step == 5, request_id=str(step)
            )
            sums.append(total(answer))
        return sums

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(one(sequence_id) for sequence_id in range(1, 9)))

    try:
        results = run(main())
    finally:
        pool.close()
    assert results == [[0, 1, 3, 6, 10, 15]] * 8
    seen = [s for backend in backends for s in backend.seen if s.ready]
    for sequence_id in range(1, 9):
        mine = [s for s in seen if s.corrid == sequence_id]
        assert [s.request_id for s in mine] == [str(step) for step in range(6)]
        assert len({s.instance for s in mine}) == 1
    assert all(backend.seen for backend in backends), "both instances were used"
    assert batcher.pending == 0


def test_direct_batches_sequences_by_slot_with_null_requests_in_gaps() -> None:
    config = sequence_config(max_batch_size=4)
    pool, (backend,) = accumulator_pool(config, gated=True)
    batcher = SequenceBatcher(config, pool)
    assert backend.gate is not None

    async def main() -> None:
        first = send(batcher, 1, 11, start=True)  # slot 0, runs alone
        await wait_for(backend.started)
        others = [send(batcher, 1, 12, start=True), send(batcher, 1, 13, start=True)]
        backend.gate.set()
        await asyncio.gather(first, *others)
        await asyncio.gather(*(send(batcher, 2, key, end=True) for key in (11, 12, 13)))

    try:
        run(main())
    finally:
        pool.close()
    first, gap, full = backend.batches
    assert [s.corrid for s in first] == [11]
    assert [(s.ready, s.corrid, s.start) for s in gap] == [
        (False, 0, 0.0),
        (True, 12, 1.0),
        (True, 13, 1.0),
    ]
    assert (gap[0].end, gap[0].value, gap[0].state) == (0, 0, 0)
    assert [(s.corrid, s.end, s.state) for s in full] == [(11, 1, 1), (12, 1, 1), (13, 1, 1)]


def test_oldest_batches_the_oldest_request_of_each_candidate_sequence() -> None:
    config = sequence_config("oldest { max_candidate_sequences: 3 }", max_batch_size=2)
    pool, (backend,) = accumulator_pool(config, gated=True)
    batcher = SequenceBatcher(config, pool)
    assert backend.gate is not None

    async def main() -> list[int]:
        pending = [send(batcher, 1, 21, start=True)]
        await wait_for(backend.started)
        pending += [send(batcher, 2, 21), send(batcher, 3, 21, end=True)]
        pending += [send(batcher, 10, key, start=True, end=True) for key in (22, 23, 24)]
        backend.gate.set()
        return [total(answer) for answer in await asyncio.gather(*pending)]

    try:
        assert run(main()) == [1, 3, 6, 10, 10, 10]
    finally:
        pool.close()
    batches = [[s.corrid for s in batch] for batch in backend.batches]
    assert all(len(batch) == len(set(batch)) <= 2 for batch in batches)
    assert all(s.ready for s in backend.seen), "oldest sends no null requests"
    # three candidates: 24 waits in the backlog until 22's END frees its slot
    assert batches == [[21], [21, 22], [21, 23], [24]]


def test_new_sequences_wait_for_a_slot_and_time_out_in_the_backlog() -> None:
    config = sequence_config(max_batch_size=0)
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> None:
        assert total(await send(batcher, 1, 1, start=True)) == 1  # holds the only slot
        waiting = send(batcher, 5, 2, start=True)
        late = send(batcher, 6, 3, start=True, timeout_us=20_000)
        with pytest.raises(Unavailable, match=r"sequence 3 .* expired"):
            await late
        assert not waiting.done()
        assert total(await send(batcher, 1, 1, end=True)) == 2
        assert total(await waiting) == 5
        with pytest.raises(InvalidInput, match=r"sequence 3 .* START"):
            await send(batcher, 1, 3)

    try:
        run(main())
    finally:
        pool.close()
    assert [s.corrid for s in backend.seen] == [1, 1, 2]


def test_an_idle_sequence_is_released_and_its_id_must_start_again() -> None:
    config = sequence_config(max_batch_size=0, idle_us=30_000)
    pool, _ = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> None:
        await send(batcher, 1, 5, start=True)
        waiting = send(batcher, 1, 6, start=True)  # gets the slot once 5 idles out
        assert total(await waiting) == 1
        with pytest.raises(InvalidInput, match="released after 30 ms without requests"):
            await send(batcher, 1, 5)
        assert total(await send(batcher, 4, 5, start=True, end=True)) == 4  # a fresh start

    try:
        run(main())
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("sequence_id", "start", "message"),
    [
        (0, True, "must specify a non-zero or non-empty correlation ID"),
        ("", True, "must specify a non-zero or non-empty correlation ID"),
        (99, False, "sequence 99 to model 'acc' must specify the START flag"),
        ("abc", True, "takes uint64 integer sequence ids .* got string id 'abc'"),
        (-3, True, "sequence id -3 .* out of range"),
        (2**64, True, "out of range"),
    ],
)
def test_bad_sequence_ids_are_refused(sequence_id: Any, start: bool, message: str) -> None:
    config = sequence_config()
    pool, backends = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)
    stats_before = batcher.pending

    async def main() -> None:
        with pytest.raises(InvalidInput, match=message):
            send(batcher, 1, sequence_id, start=start)

    try:
        run(main())
    finally:
        pool.close()
    assert batcher.pending == stats_before == 0
    assert not backends[0].seen


def test_id_kinds_follow_the_corrid_control() -> None:
    string_model = sequence_config(corrid="TYPE_STRING", max_batch_size=0)
    pool, (backend,) = accumulator_pool(string_model)
    batcher = SequenceBatcher(string_model, pool)

    async def main() -> None:
        with pytest.raises(InvalidInput, match=r"takes string sequence ids .* got integer id 5"):
            send(batcher, 1, 5, start=True)
        await send(batcher, 1, "alpha", start=True, end=True)

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen[0].corrid == b"alpha"


def test_narrow_corrid_types_get_the_id_in_their_own_type() -> None:
    config = sequence_config(corrid="TYPE_INT32")
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> None:
        await send(batcher, 1, 2**32 + 9, start=True, end=True)

    try:
        run(main())
    finally:
        pool.close()
    assert backend.seen[0].corrid == 9


def test_inputs_the_server_fills_and_batches_over_one_are_refused() -> None:
    config = sequence_config()
    pool, _ = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)
    control = {**value(1), "START": np.ones((1, 1), np.float32)}
    state = {**value(1), "ACC_IN": np.ones((1, 1), np.int32)}
    two = {"INPUT": np.ones((2, 1), np.int32)}

    async def main() -> None:
        for inputs, message in (
            (control, "input 'START' .* sequence control or state input"),
            (state, "input 'ACC_IN' .* sequence control or state input"),
            (two, "must specify batch-size 1 due to requirements of sequence batcher"),
        ):
            with pytest.raises(InvalidInput, match=message):
                send(batcher, 1, 1, start=True, inputs=inputs)

    try:
        run(main())
    finally:
        pool.close()


def test_a_start_on_an_open_sequence_continues_it_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = sequence_config()
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> list[int]:
        first = total(await send(batcher, 3, 8, start=True))
        with caplog.at_level(logging.WARNING, logger="headrace.scheduling.sequence"):
            second = total(await send(batcher, 4, 8, start=True))
        return [first, second, total(await send(batcher, 1, 8, end=True))]

    try:
        assert run(main()) == [3, 4, 5]
    finally:
        pool.close()
    assert "started again before it ended" in caplog.text
    assert len({s.instance for s in backend.seen}) == 1


def test_a_failing_request_fails_alone_and_the_sequence_goes_on() -> None:
    config = sequence_config()
    pool, _ = accumulator_pool(config)
    stats = RecordingStats()
    batcher = SequenceBatcher(config, pool, stats)

    async def main() -> list[int]:
        first = total(await send(batcher, 2, 4, start=True))
        with pytest.raises(ModelExecutionError, match="this request fails"):
            await send(batcher, -1, 4)
        with pytest.raises(ModelExecutionError, match="the whole batch fails"):
            await send(batcher, -2, 4)
        return [first, total(await send(batcher, 3, 4, end=True))]

    try:
        assert run(main()) == [2, 5]
    finally:
        pool.close()
    assert [ok for ok, _, _ in stats.requests] == [True, False, False, True]
    # executions in which every request failed add no batch statistics, as in Triton
    assert stats.batches == [1, 1]


def test_queue_bound_and_drain_refuse_with_unavailable() -> None:
    config = sequence_config(max_batch_size=0, idle_us=50_000)
    pool, (backend,) = accumulator_pool(config, gated=True)
    batcher = SequenceBatcher(config, pool, max_queue_size=2)
    assert backend.gate is not None

    async def main() -> None:
        first = send(batcher, 1, 1, start=True)
        await wait_for(backend.started)
        queued = [send(batcher, 1, 1), send(batcher, 1, 2, start=True)]
        with pytest.raises(Unavailable, match="Exceeds maximum queue size; model 'acc' has 2"):
            send(batcher, 1, 3, start=True)
        drained = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="shutting down"):
            send(batcher, 1, 1, end=True)
        assert not drained.done()
        backend.gate.set()
        await asyncio.gather(first, queued[0])
        # sequence 2 waits for the slot of sequence 1, which only idles out: drain waits for
        # that, since every accepted request completes
        await asyncio.wait_for(drained, 10)
        assert total(await queued[1]) == 1

    try:
        run(main())
    finally:
        pool.close()
    assert batcher.pending == 0


def test_withdrawn_requests_leave_the_sequence_usable() -> None:
    config = sequence_config(max_batch_size=0, idle_us=50_000)
    pool, (backend,) = accumulator_pool(config, gated=True)
    batcher = SequenceBatcher(config, pool)
    assert backend.gate is not None

    async def main() -> None:
        sink = FutureSink(asyncio.get_running_loop())
        first = send(batcher, 1, 1, start=True)
        await wait_for(backend.started)
        ticket = batcher.submit(WorkItem(value(5, False), sink, sequence_id=1, sequence_end=True))
        batcher.withdraw(ticket)
        assert batcher.pending == 1
        backend.gate.set()
        await first
        # the END was withdrawn: the sequence stays open (until it idles out)
        assert total(await send(batcher, 2, 1)) == 3
        assert total(await send(batcher, 1, 9, start=True, end=True)) == 1

    try:
        run(main())
    finally:
        pool.close()
    assert [s.value for s in backend.seen] == [1, 2, 1]


def test_stats_count_every_request_and_batch() -> None:
    config = sequence_config()
    pool, _ = accumulator_pool(config)
    stats = RecordingStats()
    batcher = SequenceBatcher(config, pool, stats)

    async def main() -> None:
        await send(batcher, 1, 1, start=True)
        with pytest.raises(InvalidInput):
            send(batcher, 1, 2)
        await send(batcher, 1, 1, end=True)

    try:
        run(main())
    finally:
        pool.close()
    # the refused request (no start on an unknown sequence) counts nowhere, as in Triton
    assert [ok for ok, _, _ in stats.requests] == [True, True]
    assert stats.batches == [1, 1]


@pytest.mark.parametrize(
    ("initial", "first_state"),
    [
        ("", 0),
        ('initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "z" }', 0),
        ('initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "seven" name: "f" }', 7),
    ],
)
def test_initial_state(tmp_path: Path, initial: str, first_state: int) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "seven").write_bytes(np.array([7], np.int32).tobytes())
    config = sequence_config(state=initial)
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool, model_dir=str(tmp_path))

    async def main() -> int:
        await send(batcher, 1, 1, start=True)
        return total(await send(batcher, 1, 1, end=True))

    try:
        assert run(main()) == first_state + 2
    finally:
        pool.close()
    assert backend.seen[0].state == first_state


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        ('initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "z" }', "type"),
        ("initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true }", "'name'"),
        ('initial_state { data_type: TYPE_INT32 dims: [ 2 ] zero_data: true name: "z" }', "dims"),
        ('initial_state { data_type: TYPE_INT32 dims: [ 1 ] name: "z" }', "zero_data"),
        (
            'initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "none" name: "z" }',
            "cannot read",
        ),
        (
            'initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "short" name: "z" }',
            "holds 2 bytes, 4 are needed",
        ),
    ],
)
def test_bad_initial_states_fail_the_load(tmp_path: Path, initial: str, message: str) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "short").write_bytes(b"\x01\x02")
    config = sequence_config(state=initial)
    pool, _ = accumulator_pool(config)
    try:
        with pytest.raises(InvalidConfig, match=message):
            SequenceBatcher(config, pool, model_dir=str(tmp_path))
    finally:
        pool.close()


@pytest.mark.parametrize(
    "strategy",
    [
        "direct { max_queue_delay_microseconds: 200000 minimum_slot_utilization: 0.5 }",
        "oldest { max_candidate_sequences: 4 max_queue_delay_microseconds: 200000 "
        "preferred_batch_size: [ 2 ] }",
    ],
)
def test_batching_delay_holds_a_lone_request_but_not_a_batch_worth_sending(
    strategy: str,
) -> None:
    config = sequence_config(strategy, max_batch_size=4)
    pool, (backend,) = accumulator_pool(config)
    batcher = SequenceBatcher(config, pool)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await send(batcher, 1, 1, start=True)  # alone: waits for the delay
        waited = loop.time() - started
        # two ready at once: half the slots (direct) or a preferred size (oldest)
        await asyncio.gather(send(batcher, 1, 1), send(batcher, 1, 2, start=True))
        return waited

    try:
        assert run(main()) >= 0.18
    finally:
        pool.close()
    assert [len(batch) for batch in backend.batches] == [1, 2]
