"""``headrace serve --python-runtime``: python models in worker processes, end to end with
tritonclient; a worker that dies fails only its request and comes back; the per-model
parameter chooses the runtime; bound callables can run in a worker too."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import start_server
from tritonclient.utils import InferenceServerException

from headrace.server.binding import Server, Tensor

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"

CRASHING_MODEL = """
import os, signal
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] < 0:
                os.kill(os.getpid(), signal.SIGKILL)
            out = pb_utils.Tensor("Y", (x * 2).astype(np.float32))
            out_pid = pb_utils.Tensor("PID", np.array([os.getpid()], dtype=np.int64))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out, out_pid]))
        return responses
"""

CONFIG = """
name: "{name}"
backend: "python"
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [
  {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "PID" data_type: TYPE_INT64 dims: [ 1 ] }}
]
{extra}
"""


def write_model(repo: Path, name: str, extra: str = "") -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, extra=extra))
    (repo / name / "1" / "model.py").write_text(CRASHING_MODEL)


def runtime_parameter(value: str) -> str:
    return f'parameters {{ key: "HEADRACE_PYTHON_RUNTIME" value {{ string_value: "{value}" }} }}'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    target.mkdir()
    shutil.copytree(MODELS / "add_sub", target / "add_sub")
    write_model(target, "crashing")
    write_model(target, "in_server", runtime_parameter("in-server"))
    return target


def infer_pid(client: httpclient.InferenceServerClient, model: str, value: float) -> int:
    x = np.full(3, value, dtype=np.float32)
    tensor = httpclient.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor])
    np.testing.assert_array_equal(result.as_numpy("Y"), x * 2)
    return int(result.as_numpy("PID")[0])


def test_python_models_run_in_workers_that_come_back(repo: Path, tmp_path: Path) -> None:
    server = start_server(repo, tmp_path, ["--python-runtime", "process"])
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        worker = infer_pid(client, "crashing", 1.0)
        assert worker != server.process.pid
        assert worker in {child.pid for child in psutil.Process(server.process.pid).children()}
        assert infer_pid(client, "in_server", 1.0) == server.process.pid

        x = -np.ones(3, dtype=np.float32)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("X", [3], "FP32")
        tensor.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as failure:
            grpc.infer("crashing", [tensor])
        assert failure.value.status() == "StatusCode.UNAVAILABLE"
        assert f"worker process (pid {worker})" in failure.value.message()
        assert "SIGKILL" in failure.value.message()

        a = httpclient.InferInput("INPUT0", [4], "FP32")
        a.set_data_from_numpy(np.ones(4, dtype=np.float32))
        b = httpclient.InferInput("INPUT1", [4], "FP32")
        b.set_data_from_numpy(np.ones(4, dtype=np.float32))
        assert client.infer("add_sub", [a, b]).as_numpy("OUTPUT0").tolist() == [2.0] * 4

        deadline = time.monotonic() + 60
        while True:  # the new worker loads the model again
            try:
                replacement = infer_pid(client, "crashing", 2.0)
                break
            except InferenceServerException as exc:
                assert "restarting its worker process" in exc.message()
                assert time.monotonic() < deadline, "the worker did not come back"
                time.sleep(0.1)
        assert replacement not in (worker, server.process.pid)
        assert client.is_model_ready("crashing")
    finally:
        server.stop()


def test_in_server_runtime_runs_python_models_in_the_server(repo: Path, tmp_path: Path) -> None:
    server = start_server(repo, tmp_path, ["--python-runtime", "in-server"])
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        assert infer_pid(client, "crashing", 1.0) == server.process.pid
    finally:
        server.stop()


def double_with_pid(X: np.ndarray) -> dict[str, np.ndarray]:
    return {"Y": X * 2, "PID": np.full((X.shape[0], 1), os.getpid(), dtype=np.int64)}


def test_a_bound_callable_runs_in_a_worker_process() -> None:
    server = Server()
    inputs = [Tensor("X", np.float32, (-1,))]
    outputs = [Tensor("Y", np.float32, (-1,)), Tensor("PID", np.int64, (1,))]
    server.bind("worker", double_with_pid, inputs, outputs, max_batch_size=8, runtime="process")
    server.bind("here", double_with_pid, inputs, outputs, max_batch_size=8)
    try:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        remote = server.infer("worker", {"X": x})
        local = server.infer("here", {"X": x})
        np.testing.assert_array_equal(remote["Y"], x * 2)
        assert int(local["PID"][0, 0]) == os.getpid()
        assert int(remote["PID"][0, 0]) != os.getpid()
    finally:
        server.stop()
