"""The generate extension side by side: ``headrace serve`` against NVIDIA Triton 2.51.

Runs when the tritonserver tool (``../shared/tools/tritonserver``, the real C++ server with the
python backend) is installed, and skips otherwise. Both servers serve the same Triton
python-backend models and get the same requests (the cases of
:data:`decoupled_client.GENERATE_CASES`, which benchmarks/stateful_vs_triton.py records too);
each case says what must agree:

- ``SAME``: status, Content-Type and body, byte for byte;
- ``ERROR``: status and Content-Type, and both bodies are ``{"error": ...}`` (or one such
  event), whose words differ (headrace names more: the input, the value, the model);
- ``BAD_BODY``: Triton answers 500 (its JSON reader's errors are INTERNAL) where headrace
  answers 400, as its infer endpoint does for the same malformed input; both are errors.

:func:`verdicts.generate_rules` holds the last two as rules.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from decoupled_client import GENERATE_CASES, SAME, decoupled_repository, generate_key, post
from serve_process import ServeProcess, start_server
from verdicts import DIFFERS, generate_rules, verdict

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT.parent / "shared" / "tools" / "tritonserver"
TRITON_HOME = Path(
    os.environ.get("TRITON_HOME", Path.home() / ".cache" / "headrace-tools" / "tritonserver")
)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (TOOL.is_file() and (TRITON_HOME / "dist" / ".ready").is_file()),
        reason=f"the tritonserver tool is not installed ({TOOL}, {TRITON_HOME})",
    ),
]


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
    triton = start_triton(decoupled_repository(workdir / "triton-repo"), workdir)
    try:
        headrace: ServeProcess = start_server(decoupled_repository(workdir / "repo"), workdir)
        try:
            yield triton.port, headrace.ports["http"]
        finally:
            assert headrace.stop() == 0, headrace.log_tail()
    finally:
        triton.stop()


RULES = generate_rules()


@pytest.mark.parametrize(
    ("kind", "model", "route", "body"),
    GENERATE_CASES,
    ids=[f"{kind}:{model}/{route}:{body[:40]}" for kind, model, route, body in GENERATE_CASES],
)
def test_headrace_answers_as_triton(
    servers: tuple[int, int], kind: str, model: str, route: str, body: str
) -> None:
    triton_port, headrace_port = servers
    theirs = post(triton_port, model, route, body)
    ours = post(headrace_port, model, route, body)
    if kind == SAME:
        assert ours == theirs
        return
    found = verdict(ours, theirs, RULES[generate_key(model, route, body)])
    assert found.kind != DIFFERS, (ours, theirs)
