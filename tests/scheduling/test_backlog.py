"""A stream's backlog: senders off the loop wait for room and give up after the timeout, the
loop's own sends never wait, a door waits for room before reading more, and a full
:class:`StreamSink` fails its request with a message that names the flags."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from headrace.errors import Unavailable
from headrace.scheduling.backlog import StreamBacklog
from headrace.scheduling.sinks import StreamSink
from headrace.types import sending_without_waiting


def test_a_sender_waits_for_room_and_goes_on_once_one_is_released() -> None:
    backlog = StreamBacklog(limit=2, timeout_s=60)
    assert backlog.reserve(lambda: False) and backlog.reserve(lambda: False)
    reserved: list[bool] = []
    thread = threading.Thread(target=lambda: reserved.append(backlog.reserve(lambda: False)))
    thread.start()
    backlog.release()
    thread.join(30)
    assert reserved == [True]
    assert backlog.pending == 2 and backlog.peak == 2


def test_a_release_wakes_a_sender_already_asleep_for_room() -> None:
    # the release's shortcut (nobody held back: no notify) must not skip a sleeping sender
    backlog = StreamBacklog(limit=1, timeout_s=60)
    backlog.add()
    reserved: list[bool] = []
    thread = threading.Thread(target=lambda: reserved.append(backlog.reserve(lambda: False)))
    thread.start()
    deadline = time.monotonic() + 10
    while backlog._sleepers == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert backlog._sleepers == 1  # asleep in reserve before the release
    backlog.release()
    thread.join(5)
    assert reserved == [True] and backlog.pending == 1


def test_a_sender_gives_up_after_the_timeout_and_a_gone_receiver_never_waits() -> None:
    backlog = StreamBacklog(limit=1, timeout_s=0.05)
    backlog.add()
    assert backlog.reserve(lambda: False) is False
    assert backlog.reserve(lambda: True) is True  # nobody reads it: no point waiting
    with pytest.raises(ValueError, match="at least 1"):
        StreamBacklog(limit=0)


def test_room_waits_until_a_release_and_when_room_runs_then() -> None:
    async def main() -> list[str]:
        backlog = StreamBacklog(limit=1)
        backlog.add()
        seen: list[str] = []
        backlog.when_room(lambda: seen.append("callback"))
        waiter = asyncio.create_task(backlog.room())
        await asyncio.sleep(0)
        assert not waiter.done() and seen == []
        backlog.release()
        await waiter
        seen.append("room")
        backlog.when_room(lambda: seen.append("at once"))
        return seen

    assert asyncio.run(main()) == ["callback", "room", "at once"]


def test_a_full_stream_sink_fails_its_request_and_raises_to_the_sender() -> None:
    async def main() -> tuple[BaseException | None, list[object]]:
        loop = asyncio.get_running_loop()
        sink = StreamSink(loop, StreamBacklog(limit=1, timeout_s=0.05))
        raised: list[BaseException] = []

        def model() -> None:
            try:
                for index in range(3):
                    sink.send({"i": index}, final=False)
            except Unavailable as exc:
                raised.append(exc)

        await asyncio.to_thread(model)
        got = [item async for item in sink.responses()]
        return (raised[0] if raised else None), got

    raised, got = asyncio.run(main())
    assert isinstance(raised, Unavailable)
    assert "--max-stream-pending-responses" in raised.message
    assert len(got) == 2 and got[1].error is raised and got[1].final  # type: ignore[attr-defined]


def test_a_thread_that_must_not_wait_is_told_the_backlog_is_full() -> None:
    async def main() -> list[StreamBacklog]:
        sink = StreamSink(asyncio.get_running_loop(), StreamBacklog(limit=1, timeout_s=60))
        full: list[StreamBacklog] = []

        def reader() -> None:
            with sending_without_waiting(full.append):
                sink.send({"i": 0}, final=False)
                sink.send({"i": 1}, final=False)  # over the bound: counted, not waited for

        await asyncio.to_thread(reader)
        assert sink.backlog.pending == 2
        return full

    full = asyncio.run(main())
    assert len(full) == 2
