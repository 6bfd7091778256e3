"""One ``headrace serve`` child on 127.0.0.1 for ``bench tune``, and what it spends.

The server runs as a subprocess (a door never imports another door), binds port 0 and reports
the ports it got through ``--ports-file``, so there is no race for a free port. Readiness is
the model's own ``ready`` endpoint; every wait is bounded by a ``time.monotonic()`` deadline
and doubles as a wait on the process, so a server that dies while starting is reported at once
with its log. Its spend is read from the outside: CPU seconds of its process tree (psutil) and
the inference count of its statistics endpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import Unavailable

__all__ = ["TuneServer", "serve"]

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.1


@dataclass
class TuneServer:
    """A ready server: its process, ports and log."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and all its children so far."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in tree:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue  # a child that ended between the listing and the look
            total += times.user + times.system
        return total

    def inference_count(self, model: str) -> int:
        """The model's ``inference_count`` (items, batches expanded) from the statistics."""
        url = f"http://{self.http_url}/v2/models/{model}/stats"
        with urllib.request.urlopen(url, timeout=10.0) as response:
            stats = json.loads(response.read())
        return sum(int(entry.get("inference_count", 0)) for entry in stats["model_stats"])

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"<log unreadable: {exc}>"


@contextmanager
def serve(
    repository: Path, model: str, workdir: Path, extra_args: Sequence[str] = ()
) -> Iterator[TuneServer]:
    """Start ``headrace serve REPOSITORY`` on free ports; stop it (SIGTERM, then kill) after."""
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    log_path = workdir / "serve.log"
    command = [
        sys.executable,
        "-m",
        "headrace.cli",
        "serve",
        str(repository),
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--ports-file",
        str(ports_file),
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own interpreter and module
    server = TuneServer(process, {}, log_path)
    try:
        _wait_ready(server, ports_file, model, time.monotonic() + START_TIMEOUT_S)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: TuneServer, ports_file: Path, model: str, deadline: float) -> None:
    while not ports_file.exists():
        _wait_step(server, deadline, "write its ports file")
    server.ports = {k: int(v) for k, v in json.loads(ports_file.read_text()).items()}
    while not _ready(f"http://{server.http_url}/v2/models/{model}/ready"):
        _wait_step(server, deadline, f"report model {model!r} ready")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5.0) as response:  # noqa: S310 - http URL we built
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_step(server: TuneServer, deadline: float, what: str) -> None:
    try:
        code = server.process.wait(timeout=_POLL_S)
    except subprocess.TimeoutExpired:
        code = None
    if code is not None:
        raise Unavailable(
            f"headrace serve exited with {code} before it could {what}:\n{server.log_tail()}"
        )
    if time.monotonic() > deadline:
        raise Unavailable(
            f"headrace serve did not {what} within {START_TIMEOUT_S:g} s:\n{server.log_tail()}"
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
