"""SIGTERM on ``headrace serve`` with requests in flight: every door stops accepting at once,
the accepted requests finish, the drain is printed, exit 0; past --exit-timeout-secs the
requests still running are cancelled and the server still exits (1, as tritonserver)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from fault_models import HANG, write_fault_model
from serve_process import ServeProcess, start_server
from tritonclient.utils import InferenceServerException

WAIT_S = 60.0
"""Bound of every wait here (a failure, never a pacing delay)."""
SLOW_MS = 3000.0
"""How long each in-flight request runs: it is still running when the signal arrives, since
the test sends it only once the server holds every request."""


def _pending(server: ServeProcess, model: str = "fault") -> int:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    match = re.search(
        rf'nv_inference_pending_request_count\{{model="{model}",version="1"\}} (\d+)', text
    )
    return int(match.group(1)) if match else 0


def _wait_for(condition: Callable[[], bool], what: str, server: ServeProcess) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen\n{server.log_tail()}")
        time.sleep(0.02)


def _in_background(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def one(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:  # kept for the assertions
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, results


def _http_call(server: ServeProcess, value: float) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=WAIT_S)
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.array([value], np.float32))
        try:
            return client.infer("fault", [x]).as_numpy("Y")
        finally:
            client.close()

    return call


def _grpc_call(server: ServeProcess, value: float) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        x = grpcclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.array([value], np.float32))
        try:
            return client.infer("fault", [x], client_timeout=WAIT_S).as_numpy("Y")
        finally:
            client.close()

    return call


def _signal_and_wait_closed(server: ServeProcess) -> str:
    """SIGTERM, then the line saying the doors are closed (the log so far)."""
    server.process.send_signal(signal.SIGTERM)
    _wait_for(lambda: "headrace: stopping" in server.log_tail(20000), "the drain", server)
    return server.log_tail(20000)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    write_fault_model(repository, "fault", instances=6)
    return repository


@pytest.mark.parametrize("http_server", ["granian", "aiohttp"])
def test_sigterm_finishes_accepted_requests_refuses_new_ones_and_exits_zero(
    repo: Path, tmp_path: Path, http_server: str
) -> None:
    server = start_server(
        repo, tmp_path, ["--http-server", http_server, "--python-runtime", "in-server"]
    )
    try:
        calls = [_http_call(server, SLOW_MS + i) for i in range(4)]
        calls += [_grpc_call(server, SLOW_MS + 10 + i) for i in range(2)]
        threads, results = _in_background(calls)
        _wait_for(lambda: _pending(server) == 6, "6 requests in flight", server)
        log = _signal_and_wait_closed(server)
        assert "draining 6 requests in flight" in log
        assert _refused(server.ports["http"])
        fresh = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException) as refused:
            fresh.is_server_live(client_timeout=10)
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        for thread in threads:
            thread.join(WAIT_S)
        expected = [SLOW_MS + i for i in range(4)] + [SLOW_MS + 10 + i for i in range(2)]
        assert [float(np.asarray(r)[0]) for r in results] == expected, results
        assert server.wait_exit(WAIT_S) == 0
        assert re.search(r"drained 6 requests in flight in [0-9.]+ s; exiting", server.log_tail())
    finally:
        server.stop()


def test_an_open_grpc_stream_gets_its_answers_then_ends(repo: Path, tmp_path: Path) -> None:
    server = start_server(repo, tmp_path, ["--python-runtime", "in-server"])
    answers: list[Any] = []
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        answers.append(error if error is not None else float(result.as_numpy("Y")[0]))

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.start_stream(callback=callback)
        for value in (SLOW_MS, SLOW_MS + 1):
            x = grpcclient.InferInput("X", [1], "FP32")
            x.set_data_from_numpy(np.array([value], np.float32))
            client.async_stream_infer("fault", [x])
        _wait_for(lambda: _pending(server) == 2, "2 stream requests in flight", server)
        assert "draining 2 requests in flight" in _signal_and_wait_closed(server)
        assert server.wait_exit(WAIT_S) == 0
        done.set()
        assert answers == [SLOW_MS, SLOW_MS + 1]
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
        server.stop()


def test_a_drain_past_the_exit_timeout_cancels_and_still_exits(repo: Path, tmp_path: Path) -> None:
    server = start_server(
        repo, tmp_path, ["--python-runtime", "in-server", "--exit-timeout-secs", "1"]
    )
    try:
        threads, results = _in_background([_http_call(server, HANG), _grpc_call(server, HANG)])
        _wait_for(lambda: _pending(server) == 2, "2 hung requests in flight", server)
        assert "draining 2 requests in flight" in _signal_and_wait_closed(server)
        assert server.wait_exit(WAIT_S) == 1
        for thread in threads:
            thread.join(WAIT_S)
        assert all(isinstance(r, Exception) for r in results), results
        assert (
            "exit timeout expired (--exit-timeout-secs 1) with 2 of 2 requests still in flight"
            in server.log_tail()
        )
    finally:
        server.stop()
