"""Response sinks: one response or a stream, fed from the loop thread or from any other."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from headrace.errors import InternalError, InvalidInput
from headrace.scheduling.sinks import FutureSink, StreamSink


def run(body):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(body(), timeout=30))


def test_future_sink_takes_the_first_response_from_any_thread() -> None:
    async def body() -> None:
        sink = FutureSink(asyncio.get_running_loop())
        assert not sink.done
        thread = threading.Thread(target=lambda: sink.send({"y": np.ones(2)}))
        thread.start()
        outputs = await sink.future
        thread.join()
        np.testing.assert_array_equal(outputs["y"], np.ones(2))
        sink.send({"y": np.zeros(2)})  # later answers are dropped
        sink.fail(InvalidInput("late"))
        assert sink.done and sink.future.result() is outputs

    run(body)


def test_future_sink_fails_on_an_error_or_a_bare_final_flag() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        failed = FutureSink(loop)
        failed.fail(InvalidInput("bad"))
        with pytest.raises(InvalidInput, match="bad"):
            await failed.future
        empty = FutureSink(loop)
        empty.send(None, final=True)
        with pytest.raises(InternalError, match="no response"):
            await empty.future

    run(body)


def test_stream_sink_yields_in_order_up_to_the_final_response() -> None:
    async def body() -> None:
        sink = StreamSink(asyncio.get_running_loop())

        def model() -> None:
            for step in range(3):
                sink.send({"y": np.array([step])}, final=False)
            sink.fail(InvalidInput("one bad response"), final=False)
            sink.send(None, final=True)
            sink.send({"y": np.array([9])}, final=True)  # after final: dropped

        thread = threading.Thread(target=model)
        thread.start()
        got = [response async for response in sink.responses()]
        thread.join()
        assert [r.outputs["y"].tolist() for r in got[:3] if r.outputs] == [[0], [1], [2]]
        assert [r.final for r in got] == [False, False, False, False, True]
        assert isinstance(got[3].error, InvalidInput) and got[4].outputs is None
        assert sink.done

    run(body)


def test_a_closed_stream_sink_drops_what_comes_after() -> None:
    async def body() -> None:
        sink = StreamSink(asyncio.get_running_loop())
        sink.send({"y": np.array([1])}, final=False)
        sink.close()
        assert sink.done
        sink.send({"y": np.array([2])}, final=True)
        response = await anext(sink.responses())
        assert response.outputs is not None and response.outputs["y"].tolist() == [1]

    run(body)
