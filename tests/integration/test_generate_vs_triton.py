"""The generate extension side by side: ``headrace serve`` against NVIDIA Triton 2.51.

Runs when the tritonserver tool (``../shared/tools/tritonserver``, the real C++ server with the
python backend) is installed, and skips otherwise. Both servers serve the same Triton
python-backend models and get the same requests; each case says what must agree:

- ``SAME``: status, Content-Type and body, byte for byte;
- ``ERROR``: status and Content-Type, and both bodies are ``{"error": ...}`` (or one such
  event), whose words differ (headrace names more: the input, the value, the model);
- ``BAD_BODY``: Triton answers 500 (its JSON reader's errors are INTERNAL) where headrace
  answers 400, as its infer endpoint does for the same malformed input; both are errors.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_process import ServeProcess, start_server

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT.parent / "shared" / "tools" / "tritonserver"
TRITON_HOME = Path(
    os.environ.get("TRITON_HOME", Path.home() / ".cache" / "headrace-tools" / "tritonserver")
)
MODELS = ROOT / "tests" / "data" / "python_models"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
WAIT_S = 20.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (TOOL.is_file() and (TRITON_HOME / "dist" / ".ready").is_file()),
        reason=f"the tritonserver tool is not installed ({TOOL}, {TRITON_HOME})",
    ),
]

#: Decoupled: N responses (I = 0 … N-1), then an error response when FAIL, then the final flag.
COUNTS_CONFIG = """\
name: "counts"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [
  { name: "N" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "FAIL" data_type: TYPE_BOOL dims: [ 1 ] optional: true }
]
output [ { name: "I" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
COUNTS_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            fail = pb_utils.get_input_tensor_by_name(request, "FAIL")
            for i in range(n):
                out = pb_utils.Tensor("I", np.array([i], np.int32))
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            if fail is not None and fail.as_numpy()[0]:
                error = pb_utils.TritonError(f"failed after {n}")
                sender.send(pb_utils.InferenceResponse(error=error))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

#: Echoes whichever of its optional inputs it gets: one per JSON kind, and a 2-D one.
KINDS_CONFIG = """\
name: "kinds"
backend: "python"
max_batch_size: 0
input [
  { name: "B" data_type: TYPE_BOOL dims: [ -1 ] optional: true },
  { name: "U8" data_type: TYPE_UINT8 dims: [ -1 ] optional: true },
  { name: "I8" data_type: TYPE_INT8 dims: [ -1 ] optional: true },
  { name: "F" data_type: TYPE_FP32 dims: [ -1 ] optional: true },
  { name: "D" data_type: TYPE_FP64 dims: [ -1 ] optional: true },
  { name: "M" data_type: TYPE_INT32 dims: [ 2, -1 ] optional: true }
]
output [
  { name: "B" data_type: TYPE_BOOL dims: [ -1 ] },
  { name: "U8" data_type: TYPE_UINT8 dims: [ -1 ] },
  { name: "I8" data_type: TYPE_INT8 dims: [ -1 ] },
  { name: "F" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "D" data_type: TYPE_FP64 dims: [ -1 ] },
  { name: "M" data_type: TYPE_INT32 dims: [ 2, -1 ] }
]
"""
KINDS_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tensors = [
                pb_utils.Tensor(tensor.name(), tensor.as_numpy()) for tensor in request.inputs()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
"""

SAME, ERROR, BAD_BODY = "same", "error", "bad body"

CASES: list[tuple[str, str, str, str]] = [
    # plain model: inputs by name, every other key a parameter
    (SAME, "request_meta", "generate", '{"X": 7}'),
    (SAME, "request_meta", "generate", '{"X": [7]}'),
    (SAME, "request_meta", "generate", '{"X": [[7]]}'),
    (SAME, "request_meta", "generate", '{"X": -1, "temperature": 0.5, "flag": true, "n": 3}'),
    (SAME, "request_meta", "generate", '{"X": 7, "parameters": {"flag": true, "s": "abc"}}'),
    (SAME, "request_meta", "generate", '{"parameters": {"X": 7, "s": "abc"}}'),
    (SAME, "request_meta", "generate", '{"X": 7, "id": "abc"}'),
    (SAME, "request_meta", "generate", '{"X": 7, "id": "q", "parameters": {"id": "r"}}'),
    (SAME, "request_meta", "generate", '{"X": 7, "a": 1, "a": 2, "id": "q", "id": "r"}'),
    (SAME, "request_meta", "generate", '{"X": 7, "parameters": {"a": 1}, "parameters": {}}'),
    (
        SAME,
        "request_meta",
        "generate",
        '{"X": 7, "sequence_id": 5, "sequence_start": true, "priority": 1, "timeout": 100, '
        '"binary_data_output": true, "triton_x": 1}',
    ),
    (SAME, "request_meta", "versions/1/generate", '{"X": 7}'),
    (SAME, "request_meta", "generate_stream", '{"X": 7}'),
    (SAME, "add_sub", "generate", '{"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "add_sub", "generate", '{"INPUT0": [1.5, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "add_sub", "generate_stream", '{"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "bytes_identity", "generate", '{"IN": "hello"}'),
    (SAME, "bytes_identity", "generate", '{"IN": ["a", "b\\u00e9", "\\n\\"x\\""]}'),
    (SAME, "bytes_identity", "generate", '{"IN": [["a"], ["b"]]}'),
    (SAME, "bytes_identity", "generate", '{"IN": []}'),
    (SAME, "negative_error", "generate", '{"X": [1, 4]}'),
    (SAME, "negative_error", "generate", '{"X": [1, 4, 9, 16]}'),
    (
        SAME,
        "kinds",
        "generate",
        '{"B": [true, false], "U8": [1, 255, 300], "I8": [-1, 2], "F": [0.1, 1], "D": 2}',
    ),
    (SAME, "kinds", "generate", '{"M": [1, 2, 3, 4], "F": []}'),
    (SAME, "kinds", "generate", "{}"),
    # decoupled: responses as the model sends them; /generate wants exactly one
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": 1}'),
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": 1, "in_thread": true}'),
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": -1}'),
    (SAME, "repeat_decoupled", "generate", '{"IN": 1}'),
    (SAME, "repeat_decoupled", "generate", '{"IN": -1}'),
    (SAME, "counts", "generate", '{"N": 0}'),
    (SAME, "counts", "generate", '{"N": 1}'),
    (SAME, "counts", "generate", '{"N": 2}'),
    (SAME, "counts", "generate", '{"N": 0, "FAIL": true}'),
    (SAME, "counts", "generate", '{"N": 1, "FAIL": true}'),
    (SAME, "counts", "generate_stream", '{"N": 0}'),
    (SAME, "counts", "generate_stream", '{"N": 1}'),
    (SAME, "counts", "generate_stream", '{"N": 2, "FAIL": true}'),
    (SAME, "counts", "generate_stream", '{"N": 0, "FAIL": true}'),
    # errors: the same status and Content-Type, each server's own words
    (ERROR, "negative_error", "generate", '{"X": [-1, 4]}'),
    (ERROR, "negative_error", "generate_stream", '{"X": [-1, 4]}'),
    (ERROR, "negative_error", "generate", '{"X": [1e7, 4]}'),
    (ERROR, "raising", "generate", '{"X": 13}'),
    (ERROR, "raising", "generate_stream", '{"X": 13}'),
    (ERROR, "missing", "generate", '{"X": 7}'),
    (ERROR, "missing", "generate_stream", '{"X": 7}'),
    (ERROR, "request_meta", "versions/2/generate", '{"X": 7}'),
    (ERROR, "request_meta", "generate", "{}"),
    (ERROR, "request_meta", "generate_stream", "{}"),
    (ERROR, "request_meta", "generate", '{"X": [7, 8]}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "X": 8}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "parameters": {"X": 8}}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "nested": {"a": 1}}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "a": null}'),
    (ERROR, "add_sub", "generate", '{"INPUT0": [1, 2, 3], "INPUT1": [1, 1, 1, 1]}'),
    (ERROR, "add_sub", "generate", '{"INPUT0": [[1, 2, 3, 4]], "INPUT1": [1, 1, 1, 1]}'),
    (ERROR, "kinds", "generate", '{"M": [1, 2, 3]}'),
    # malformed bodies and values of the wrong JSON kind: Triton 500, headrace 400
    (BAD_BODY, "request_meta", "generate", "not json"),
    (BAD_BODY, "request_meta", "generate", ""),
    (BAD_BODY, "request_meta", "generate", "[1]"),
    (BAD_BODY, "request_meta", "generate", '{"X": "7"}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7.5}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7, "id": 5}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7, "parameters": 3}'),
    (BAD_BODY, "bytes_identity", "generate", '{"IN": 5}'),
    (BAD_BODY, "kinds", "generate", '{"B": 1}'),
    (BAD_BODY, "kinds", "generate", '{"U8": -1}'),
    (BAD_BODY, "kinds", "generate", '{"F": "x"}'),
    (BAD_BODY, "kinds", "generate", '{"M": [[1, 2], [3, 4]]}'),
]


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def errors(self) -> list[str]:
        """The error messages of the body: one JSON object, or one per event."""
        if self.content_type.startswith("text/event-stream"):
            parts = [p[len(b"data: ") :] for p in self.body.split(b"\n\n")[:-1]]
        else:
            parts = [self.body]
        return [json.loads(part)["error"] for part in parts]


def ask(port: int, model: str, route: str, body: str) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("POST", f"/v2/models/{model}/{route}", body=body.encode())
        response = conn.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        conn.close()


# --- the two servers -----------------------------------------------------------------------


def build_repository(path: Path) -> Path:
    for name in ("request_meta", "repeat_decoupled", "add_sub", "bytes_identity"):
        shutil.copytree(MODELS / name, path / name)
    for name in ("negative_error", "raising"):
        shutil.copytree(MODELS / name, path / name)
    for name, config, model in (
        ("counts", COUNTS_CONFIG, COUNTS_MODEL),
        ("kinds", KINDS_CONFIG, KINDS_MODEL),
    ):
        (path / name / "1").mkdir(parents=True)
        (path / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (path / name / "1" / "model.py").write_text(model, encoding="utf-8")
    return path


def free_ports(count: int) -> list[int]:
    """Ports free a moment ago; Triton needs them up front, so a taken one means a retry."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Triton:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/v2/health/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def start_triton(repository: Path, workdir: Path) -> Triton:
    for attempt in range(3):
        ports = free_ports(3)
        log = workdir / f"triton-{attempt}.log"
        with open(log, "wb") as out:
            command = [str(TOOL), str(repository), *map(str, ports)]
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        triton = Triton(process, ports[0], log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(triton.port):
            try:
                code: int | None = process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                code = None
            text = log.read_text(errors="replace")
            if code is not None and "already in use" in text:
                break  # a port was taken meanwhile: try new ones
            if code is not None or time.monotonic() > deadline:
                triton.stop()
                pytest.fail(f"tritonserver did not become ready:\n{text[-4000:]}")
        else:
            return triton
    pytest.fail("tritonserver found no free ports in three tries")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    workdir = tmp_path_factory.mktemp("generate-vs-triton")
    triton = start_triton(build_repository(workdir / "triton-repo"), workdir)
    try:
        headrace: ServeProcess = start_server(build_repository(workdir / "repo"), workdir)
        try:
            yield triton.port, headrace.ports["http"]
        finally:
            assert headrace.stop() == 0, headrace.log_tail()
    finally:
        triton.stop()


@pytest.mark.parametrize(
    ("kind", "model", "route", "body"),
    CASES,
    ids=[f"{kind}:{model}/{route}:{body[:40]}" for kind, model, route, body in CASES],
)
def test_headrace_answers_as_triton(
    servers: tuple[int, int], kind: str, model: str, route: str, body: str
) -> None:
    triton_port, headrace_port = servers
    theirs = ask(triton_port, model, route, body)
    ours = ask(headrace_port, model, route, body)
    if kind == SAME:
        assert ours == theirs
        return
    assert ours.content_type == theirs.content_type
    assert len(ours.errors()) == len(theirs.errors()) >= 1
    if kind == ERROR:
        assert ours.status == theirs.status
    else:
        assert (theirs.status, ours.status) == (500, 400)
