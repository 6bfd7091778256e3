"""ReadDeadlines: one timer bounds every read in flight; its cancel is told from others'."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from headrace.server.http.deadlines import ReadDeadlines

needs_uncancel = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.uncancel: 3.10 falls back to wait_for"
)


def test_reads_that_finish_return_their_value_and_leave_no_deadline() -> None:
    async def main() -> None:
        deadlines = ReadDeadlines(0.2)
        task = asyncio.current_task()
        for value in range(3):
            assert await deadlines.within(asyncio.sleep(0.01, value), task) == value
        assert deadlines.pending() == 0
        await asyncio.sleep(0.2)  # the sweep finds nothing and does not come back
        assert deadlines._timer is None

    asyncio.run(main())


@needs_uncancel
def test_a_stalled_read_times_out_within_a_quarter_of_the_timeout_late() -> None:
    async def main() -> None:
        deadlines = ReadDeadlines(0.4)
        assert deadlines.every_s == pytest.approx(0.1)
        quick = asyncio.create_task(_read(deadlines, asyncio.sleep(0.05, "quick")))
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"0\.4 s"):
            await deadlines.within(asyncio.Event().wait(), asyncio.current_task())
        waited = time.monotonic() - started
        assert 0.4 <= waited < 0.4 + 0.1 + 0.15  # the timeout, one sweep late, some slack
        assert await quick == "quick"  # a read beside it was left alone
        assert deadlines.pending() == 0
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the cancel was taken back

    asyncio.run(main())


@needs_uncancel
def test_a_cancel_from_elsewhere_is_a_cancel_not_a_timeout() -> None:
    async def main() -> None:
        deadlines = ReadDeadlines(10.0)
        reader = asyncio.create_task(_read(deadlines, asyncio.Event().wait()))
        await asyncio.sleep(0.05)
        reader.cancel()  # as a client that went away
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert deadlines.pending() == 0

    asyncio.run(main())


@needs_uncancel
def test_a_deadline_and_a_cancel_together_end_in_the_cancel() -> None:
    async def main() -> None:
        deadlines = ReadDeadlines(0.1)
        reader = asyncio.create_task(_read(deadlines, asyncio.Event().wait()))
        await asyncio.sleep(0)
        deadlines._deadlines[reader] = 0.0  # past its deadline at the next sweep
        deadlines._sweep(asyncio.get_running_loop())
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(main())


def test_without_a_task_it_is_wait_for() -> None:
    async def main() -> None:
        deadlines = ReadDeadlines(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await deadlines.within(asyncio.Event().wait(), None)
        assert await deadlines.within(asyncio.sleep(0, "ok"), None) == "ok"
        assert deadlines.pending() == 0

    asyncio.run(main())


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReadDeadlines(0)


async def _read(deadlines: ReadDeadlines, awaitable: object) -> object:
    return await deadlines.within(awaitable, asyncio.current_task())  # type: ignore[arg-type]
