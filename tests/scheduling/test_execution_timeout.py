"""HEADRACE_EXECUTION_TIMEOUT_MS: a batch that runs too long fails its requests, clearly."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sched_fakes import make_config, make_pool, request, wait_started

from headrace.errors import DeadlineExceeded, InvalidConfig
from headrace.scheduling import make_scheduler


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def _timed(config, milliseconds: str):  # type: ignore[no-untyped-def]
    config.parameters["HEADRACE_EXECUTION_TIMEOUT_MS"].string_value = milliseconds
    return config


@pytest.mark.parametrize("dynamic", [None, "max_queue_delay_microseconds: 0"])
def test_a_hung_batch_fails_its_requests_and_the_model_serves_once_it_returns(
    dynamic: str | None,
) -> None:
    config = _timed(make_config(8, dynamic), "50")
    pool, (backend,) = make_pool(config, depth=1, gated=True, run_now_below_us=1e9)
    scheduler = make_scheduler(config, pool)
    assert scheduler.execution_timeout_ms == 50  # type: ignore[attr-defined]

    async def main() -> tuple[BaseException, dict]:
        hung = asyncio.ensure_future(scheduler.schedule(request(1.0)))
        await wait_started(backend)
        with pytest.raises(DeadlineExceeded) as failure:
            await hung
        assert backend.gate is not None
        backend.gate.set()  # the model returns at last; its late answer goes nowhere
        after = await scheduler.schedule(request(3.0))
        return failure.value, after

    try:
        error, after = run(main())
    finally:
        pool.close()
    assert "model 'double' did not finish a batch within 50 ms" in str(error)
    assert "HEADRACE_EXECUTION_TIMEOUT_MS" in str(error)
    np.testing.assert_array_equal(after["y"], np.full((1, 4), 6, np.float32))
    assert scheduler.pending == 0


def test_a_timed_model_never_runs_batches_on_the_loop_thread() -> None:
    config = _timed(make_config(8), "1000")
    pool, (backend,) = make_pool(config, run_now_below_us=1e9)
    scheduler = make_scheduler(config, pool)

    async def main() -> None:
        for value in range(5):
            await scheduler.schedule(request(float(value)))

    try:
        run(main())
    finally:
        pool.close()
    assert "MainThread" not in backend.threads


@pytest.mark.parametrize("text", ["-5", "soon", "1.5"])
def test_a_bad_execution_timeout_names_the_parameter(text: str) -> None:
    config = _timed(make_config(8), text)
    pool, _ = make_pool(config)
    try:
        with pytest.raises(InvalidConfig, match=f"HEADRACE_EXECUTION_TIMEOUT_MS.*'{text}'"):
            make_scheduler(config, pool)
    finally:
        pool.close()
