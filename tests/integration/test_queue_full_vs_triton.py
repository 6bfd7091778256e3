"""Side by side with NVIDIA Triton 2.51: a request that finds a model's queue full.

Runs only where the tritonserver tool is installed. Both servers serve the same python model
(``max_queue_size: 1``, one instance) whose ``execute`` holds its batch until the test opens
a gate file. With one request running, two more are sent at once: one waits in the queue,
the other is refused at once. The refusal's status must be Triton's, over HTTP and gRPC, and
headrace's text must begin with Triton's, word for word (headrace then names the model, the
bound and the setting).
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import pytest
from serve_process import start_server
from triton_process import TRITON_MISSING, triton_server

from one_infer import infer_or_refusal

pytestmark = pytest.mark.skipif(TRITON_MISSING, reason="the tritonserver tool is not installed")

WAIT_S = 60.0
CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 1
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { default_queue_policy { max_queue_size: 1 } }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TritonPythonModel:
    def execute(self, requests):
        open(os.path.join(HERE, "started"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(HERE, "open")) and time.monotonic() < deadline:
            time.sleep(0.01)  # the test opens the gate by creating the file
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""


def _repository(root: Path) -> Path:
    (root / "gated" / "1").mkdir(parents=True)
    (root / "gated" / "config.pbtxt").write_text(CONFIG)
    (root / "gated" / "1" / "model.py").write_text(MODEL)
    return root


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _scenario(model_dir: Path, urls: dict[str, str]) -> dict[str, list[str]]:
    """Per protocol: the answers of one running request and two sent behind it, sorted."""
    answers: dict[str, list[str]] = {}
    for protocol, url in urls.items():
        for name in ("started", "open"):
            (model_dir / name).unlink(missing_ok=True)
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(infer_or_refusal, protocol, url, "gated", "IN")
            _wait_for(model_dir / "started")
            behind = [pool.submit(infer_or_refusal, protocol, url, "gated", "IN") for _ in range(2)]
            # the refusal comes back while the gate is still shut; then the others finish
            first, _ = wait(behind, WAIT_S, return_when=FIRST_COMPLETED)
            assert first and next(iter(first)).result() != "ok", protocol
            (model_dir / "open").touch()
            answers[protocol] = sorted(
                [running.result(WAIT_S), *(f.result(WAIT_S) for f in behind)]
            )
    return answers


def test_a_full_queue_is_refused_as_triton_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "triton").mkdir()
    repo = _repository(tmp_path / "triton" / "repo")
    with triton_server(repo, tmp_path / "triton") as triton:
        theirs = _scenario(repo / "gated", {"http": triton.http_url, "grpc": triton.grpc_url})
    (tmp_path / "headrace").mkdir()
    repo = _repository(tmp_path / "headrace" / "repo")
    server = start_server(repo, tmp_path / "headrace", ["--python-runtime", "in-server"])
    try:
        ours = _scenario(repo / "gated", {"http": server.http_url, "grpc": server.grpc_url})
    finally:
        assert server.stop() == 0, server.log_tail()
    for protocol in ("http", "grpc"):
        (their_refusal, *their_ok), (our_refusal, *our_ok) = theirs[protocol], ours[protocol]
        assert their_ok == our_ok == ["ok", "ok"], (theirs, ours)
        assert their_refusal.endswith("] Exceeds maximum queue size"), their_refusal
        assert our_refusal.startswith(their_refusal), (our_refusal, their_refusal)
        assert "model 'gated' has 1 requests queued (max_queue_size)" in our_refusal
