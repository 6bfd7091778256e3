"""Stopping the gRPC door while calls wait in gRPC core's queue: each is refused with
UNAVAILABLE by headrace, or answered; none is CANCELLED by gRPC (calls no handler had started
used to be, when ``server.stop()`` emptied that queue)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from server_fakes import scale_config, scale_factory

from headrace.server.app import DrainReport, FrontendOptions, ServerApp
from headrace.server.core import InferenceServer
from headrace.server.grpc.closing import SHUTTING_DOWN

CALLS = 64
BLOCK_S = 0.5
"""How long the server's loop is held while the calls come in: they wait in core's queue."""
WAIT_S = 60.0


@pytest.fixture()
def served() -> Iterator[tuple[asyncio.AbstractEventLoop, ServerApp]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> ServerApp:
        options = FrontendOptions(http_port=None, grpc_port=0, metrics_port=None)
        app = ServerApp(InferenceServer(), options)
        await app.start()
        await app.core.register_model("scale", scale_factory(), scale_config())
        return app

    app = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT_S)
    try:
        yield loop, app
    finally:
        asyncio.run_coroutine_threadsafe(app.stop(), loop).result(WAIT_S)  # no-op if stopped
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


def test_calls_waiting_in_core_when_the_door_stops_are_refused_not_cancelled(
    served: tuple[asyncio.AbstractEventLoop, ServerApp],
) -> None:
    loop, app = served
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{app.ports['grpc']}")
    assert client.is_server_live()
    outcomes: list[tuple[str, str]] = []
    done = threading.Condition()
    held = threading.Event()

    def callback(result: Any, error: Any) -> None:
        with done:
            if error is None:
                outcomes.append(("OK", ""))
            else:
                outcomes.append((str(error.status()), error.message()))
            done.notify()

    stopping: list[asyncio.Future[DrainReport]] = []

    def hold_then_stop() -> None:
        held.set()
        time.sleep(BLOCK_S)  # the loop is busy: calls pile up in gRPC core meanwhile
        stopping.append(asyncio.ensure_future(app.stop()))

    async def stopped() -> DrainReport:
        return await stopping[0]

    loop.call_soon_threadsafe(hold_then_stop)
    assert held.wait(WAIT_S)
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    try:
        for _ in range(CALLS):
            client.async_infer("scale", [x], callback)
        with done:
            assert done.wait_for(lambda: len(outcomes) == CALLS, WAIT_S), outcomes
        report = asyncio.run_coroutine_threadsafe(stopped(), loop).result(WAIT_S)
    finally:
        client.close()
    assert report.complete, report
    statuses = Counter(status for status, _ in outcomes)
    assert set(statuses) <= {"OK", "StatusCode.UNAVAILABLE"}, statuses
    refusals = Counter(message for status, message in outcomes if status != "OK")
    assert refusals[SHUTTING_DOWN] == statuses["StatusCode.UNAVAILABLE"], refusals
