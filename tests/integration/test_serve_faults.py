"""Faults in one model fail only that model's requests, each with a clear error: a model that
raises, one that hangs past its execution timeout (and the requests queued behind it), a
python model whose worker process dies; a steady model serves throughout."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from fault_models import DIE, HANG, RAISE, write_fault_model
from serve_process import ServeProcess, start_server
from tritonclient.utils import InferenceServerException

STEADY_CALLS = 200


def _infer(client: httpclient.InferenceServerClient, model: str, value: float) -> float:
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([value], np.float32))
    return float(client.infer(model, [x]).as_numpy("Y")[0])


def _fails(client: httpclient.InferenceServerClient, model: str, value: float) -> tuple[int, str]:
    with pytest.raises(InferenceServerException) as failure:
        _infer(client, model, value)
    return int(failure.value.status()), failure.value.message()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    write_fault_model(repository, "steady", runtime="in-server")
    write_fault_model(repository, "raising", runtime="in-server")
    write_fault_model(
        repository, "hung", runtime="in-server", execution_timeout_ms=500, queue_timeout_us=200_000
    )
    write_fault_model(repository, "dying", runtime="process")
    return repository


def test_each_fault_fails_only_its_own_requests(repo: Path, tmp_path: Path) -> None:
    server = start_server(repo, tmp_path, ["--exit-timeout-secs", "2"])
    steady: list[float | BaseException] = []

    def keep_calling() -> None:
        client = httpclient.InferenceServerClient(server.http_url)
        for i in range(STEADY_CALLS):
            try:
                steady.append(_infer(client, "steady", float(i)))
            except InferenceServerException as exc:
                steady.append(exc)
        client.close()

    background = threading.Thread(target=keep_calling, daemon=True)
    background.start()
    client = httpclient.InferenceServerClient(server.http_url, concurrency=2)
    try:
        status, message = _fails(client, "raising", RAISE)
        assert status == 500
        assert "model 'raising'" in message and "fault model asked to raise" in message

        hung = client.async_infer("hung", [_input(HANG)])
        _wait_pending(server, "hung", 1)  # so the next one queues behind it
        behind = client.async_infer("hung", [_input(1.0)])
        for request, expected in (
            (hung, "did not finish a batch within 500 ms (HEADRACE_EXECUTION_TIMEOUT_MS)"),
            (behind, "request timed out in the queue of model 'hung'"),
        ):
            with pytest.raises(InferenceServerException) as failure:
                request.get_result()
            assert failure.value.status() == "503"
            assert expected in failure.value.message()

        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("X", [1], "FP32")
        tensor.set_data_from_numpy(np.array([DIE], np.float32))
        with pytest.raises(InferenceServerException) as died:
            grpc.infer("dying", [tensor])
        assert died.value.status() == "StatusCode.UNAVAILABLE"
        assert "worker process (pid" in died.value.message()
        grpc.close()

        background.join(120)
        assert steady == [float(i) for i in range(STEADY_CALLS)]
        assert _infer(client, "raising", 7.0) == 7.0  # a raise fails one request, not the model
    finally:
        client.close()
        code = server.stop()
    # The hung model's thread is still asleep: the drain ends at the exit timeout, exit 1.
    assert code == 1
    assert "exit timeout expired (--exit-timeout-secs 2) with a model still unloading" in (
        server.log_tail()
    )


def _input(value: float) -> httpclient.InferInput:
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([value], np.float32))
    return x


def _wait_pending(server: ServeProcess, model: str, count: int) -> None:
    pattern = rf'nv_inference_pending_request_count\{{model="{model}",version="1"\}} (\d+)'
    deadline = time.monotonic() + 60
    while True:
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        match = re.search(pattern, text)
        if match and int(match.group(1)) >= count:
            return
        assert time.monotonic() < deadline, f"{model} never had {count} requests pending"
        time.sleep(0.01)
