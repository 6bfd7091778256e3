"""Run NVIDIA Triton 2.51 (the ``tritonserver`` tool of ``../shared/tools``) for side-by-side
tests; they skip where the tool is not installed."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import tritonclient.http as httpclient

__all__ = ["TRITON_MISSING", "TritonProcess", "triton_server"]

TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "tritonserver"
READY = Path.home() / ".cache" / "headrace-tools" / "tritonserver" / "dist" / ".ready"
TRITON_MISSING = not (TOOL.is_file() and READY.is_file())
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TritonProcess:
    http_url: str
    grpc_url: str
    metrics_url: str


def _free_ports(count: int) -> list[int]:
    """Ports free right now. Triton cannot bind port 0 and report it, so this races with other
    processes; :func:`triton_server` retries with new ports when Triton dies at startup."""
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


@contextmanager
def triton_server(
    repository: Path, workdir: Path, extra_args: Sequence[str] = ()
) -> Iterator[TritonProcess]:
    """Triton serving ``repository`` on free ports until the block ends (SIGTERM then)."""
    log = workdir / "triton.log"
    for attempt in range(3):
        http, grpc, metrics = _free_ports(3)
        log = workdir / f"triton-{attempt}.log"
        command = [str(TOOL), str(repository), str(http), str(grpc), str(metrics)]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*command, "--", *extra_args], stdout=out, stderr=subprocess.STDOUT
            )
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
                yield TritonProcess(url, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics")
                return
        finally:
            _stop(process)
    pytest.fail(f"tritonserver did not start:\n{log.read_text()[-4000:]}")
