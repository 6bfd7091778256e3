"""Side by side with NVIDIA Triton 2.51: the same sequence models, the same client script.

Runs only where the tritonserver tool is installed (``../shared/tools/tritonserver`` next to
the repository, with ``~/.cache/headrace-tools/tritonserver/dist/.ready``): it serves the
``seq_*`` python-backend models with ``headrace serve`` and then with Triton, runs
:func:`sequence_client.scenario` against each and compares the transcripts.

Where they agree, the answers must be equal (errors: same status and Triton's message).
Where they differ on purpose, the test says how:

- implicit state: Triton 2.51's python backend feeds each request the *initial* state and
  drops the state output (it does not support implicit state; its docs name only the
  onnxruntime, TensorRT and PyTorch backends), so its sums never carry; headrace keeps the state
  for every backend;
- a string id on a model whose CORRID control is TYPE_UINT64: Triton runs it and hands the
  model a meaningless CORRID; headrace refuses it (INVALID_ARGUMENT);
- a TYPE_STRING CORRID control: Triton 2.51 refuses every request of such a model ("unexpected
  number of string elements 2 for inference input 'CORRID'"), headrace hands the model the id;
  an integer id there both refuse (Triton with a garbled message);
- control or state inputs sent by a client: both refuse them (INVALID_ARGUMENT), in their own
  words;
- an idle-released sequence: headrace adds to Triton's message why the id is unknown.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient
from sequence_client import outputs, scenario, sequence_repository
from serve_process import start_server

TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "tritonserver"
READY = Path.home() / ".cache" / "headrace-tools" / "tritonserver" / "dist" / ".ready"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    not (TOOL.is_file() and READY.is_file()), reason="the tritonserver tool is not installed"
)


def _free_ports(count: int) -> list[int]:
    """Ports free right now. Triton cannot bind port 0 and report it, so this races with other
    processes; ``triton`` retries with new ports when Triton dies at startup."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ready(url: str) -> bool:
    client = httpclient.InferenceServerClient(url, connection_timeout=2.0)
    try:
        return bool(client.is_server_ready())
    except Exception:  # refused while Triton is still loading its models
        return False
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Triton serving the sequence models: its HTTP and gRPC addresses."""
    repository = sequence_repository(tmp_path / "triton-repo")
    for attempt in range(3):
        http, grpc, metrics = _free_ports(3)
        log = tmp_path / f"triton-{attempt}.log"
        with open(log, "wb") as out:
            command = [str(TOOL), str(repository), str(http), str(grpc), str(metrics)]
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"127.0.0.1:{http}"
        try:
            while process.poll() is None and not _ready(url):
                if time.monotonic() > deadline:
                    pytest.fail(f"tritonserver not ready in {START_TIMEOUT_S}s:\n{log.read_text()}")
                try:
                    process.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                yield url, f"127.0.0.1:{grpc}"
                return
        finally:
            _stop(process)
    pytest.fail(f"tritonserver did not start:\n{log.read_text()[-4000:]}")


def _state_less(values: list[int], initial: int = 0) -> list[int]:
    """What a model sees when every request gets the initial state: no running sum."""
    return [initial + v for v in values]


def test_headrace_and_triton_answer_the_sequence_client_alike(
    tmp_path: Path, triton: tuple[str, str]
) -> None:
    theirs = scenario(*triton)
    ours_server = start_server(sequence_repository(tmp_path / "repo"), tmp_path)
    try:
        ours = scenario(ours_server.http_url, ours_server.grpc_url)
    finally:
        assert ours_server.stop() == 0, ours_server.log_tail()
    both = {"headrace": ours, "triton": theirs}
    (tmp_path / "transcripts.json").write_text(json.dumps(both, indent=1))  # for a failure
    _compare(ours, theirs)


def _compare(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    same = [
        "grpc controls",
        "grpc stream, two sequences interleaved",
        "integer ids on a model without a CORRID control",
        "largest uint64 ids",
        "eight sequences at once",
        "unknown sequence",
        "sequence after its end",
        "no sequence id",
        "no sequence id, grpc",
        "batch of two",
    ]
    for step in same:
        assert ours[step] == theirs[step], step
    # implicit state: headrace carries it, Triton's python backend does not
    stateful = {
        "http accumulate": ([5, 3, 2, 1], 0, [5, 8, 10, 11]),
        "grpc accumulate, start on an open sequence": ([4, 4, 7, 1], 0, [4, 8, 7, 8]),
        "http string ids": ([1, 2, 3], 100, [101, 103, 106]),
        "grpc string ids": ([5, 6], 100, [105, 111]),
        "still serving": ([2, 2], 0, [2, 4]),
    }
    for step, (values, initial, sums) in stateful.items():
        assert outputs(ours[step]) == sums, step
        assert outputs(theirs[step]) == _state_less(values, initial), step
    for step in ("http string ids", "grpc string ids"):
        assert outputs(ours[step], "ID") == outputs(theirs[step], "ID")
    for step in (
        "client sends a control input",
        "client sends a state input",
        "integer id on a string CORRID model",
    ):
        assert ours[step]["status"] == theirs[step]["status"], step
    assert outputs(ours["string CORRID control"], "ID") == ["delta", "delta"]
    for answer in theirs["string CORRID control"]:
        assert "unexpected number of string elements" in answer["message"]
    mismatch = "string id on a uint64 CORRID model"
    assert outputs([theirs[mismatch]]) == [1]
    assert ours[mismatch]["status"] == "400"
    our_late, their_late = ours["expired sequence"][1], theirs["expired sequence"][1]
    assert our_late["status"] == their_late["status"] == "400"
    assert our_late["message"].startswith(their_late["message"])
