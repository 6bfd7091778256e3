"""Start ``headrace serve`` as a child process on 127.0.0.1 and wait until it can be used.

The one launcher behind ``bench tune``, the end-to-end tests and the benchmark scripts. The
server binds port 0 and writes the ports it got to ``--ports-file``, so there is no race for a
free port. Every wait is bounded by a ``time.monotonic()`` deadline and doubles as a wait on
the process, so a server that dies while starting is reported at once, with its log. What
"ready" means is the caller's (a model's ready endpoint, the server's, or only live): a probe
given the ports. How to stop is also the caller's (a test insists on a drained exit, a
benchmark kills what lingers); :func:`stop` is the plain SIGTERM-then-kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import Unavailable

__all__ = ["Launched", "http_ok", "launch", "models_ready", "serve_command", "stop"]

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.05

Probe = Callable[[Mapping[str, int]], bool]
"""Given the bound ports (``http``, ``grpc``, ``metrics``): is the server ready for use?"""


@dataclass
class Launched:
    """A started server: its process, the ports it bound and its stdout+stderr log."""

    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int]

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"<log unreadable: {exc}>"


def serve_command(
    repository: Path | str, ports_file: Path | str, extra_args: Sequence[str] = ()
) -> list[str]:
    """``headrace serve`` from this interpreter on 127.0.0.1, every port 0, reported to a file."""
    return [
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


def launch(
    repository: Path | str,
    workdir: Path,
    extra_args: Sequence[str] = (),
    *,
    ready: Probe | None = None,
    what: str = "report ready",
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    stem: str = "serve",
    timeout_s: float = START_TIMEOUT_S,
) -> Launched:
    """Start the server (log ``workdir/STEM.log``, ports ``workdir/STEM-ports.json``) and
    return once it has written its ports and ``ready`` (if given) says yes.

    ``new_session`` puts it in its own process group, so the caller can kill the group.
    If it dies or is not ready within ``timeout_s``, it is killed and ``Unavailable`` raised
    with the end of its log."""
    ports_file = workdir / f"{stem}-ports.json"
    ports_file.unlink(missing_ok=True)
    log_path = workdir / f"{stem}.log"
    command = serve_command(repository, ports_file, extra_args)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=new_session,
        )
    server = Launched(process, log_path, {})
    deadline = time.monotonic() + timeout_s
    try:
        while not ports_file.exists():
            _wait_step(server, deadline, timeout_s, "write its ports file")
        server.ports = {k: int(v) for k, v in json.loads(ports_file.read_text()).items()}
        while ready is not None and not ready(server.ports):
            _wait_step(server, deadline, timeout_s, what)
    except BaseException:
        _kill(process, new_session)
        raise
    return server


def http_ok(path: str, timeout_s: float = 5.0) -> Probe:
    """A probe: ``GET http://127.0.0.1:HTTP_PORT/PATH`` answers 200."""

    def probe(ports: Mapping[str, int]) -> bool:
        url = f"http://127.0.0.1:{ports['http']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return probe


def models_ready(models: Sequence[str]) -> Probe:
    """A probe: every model in ``models`` answers its ``v2/models/NAME/ready``."""
    probes = [http_ok(f"/v2/models/{model}/ready") for model in models]
    return lambda ports: all(probe(ports) for probe in probes)


def stop(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM (the server drains), SIGKILL if it is still there after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _wait_step(server: Launched, deadline: float, timeout_s: float, what: str) -> None:
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
            f"headrace serve did not {what} within {timeout_s:g} s:\n{server.log_tail()}"
        )


def _kill(process: subprocess.Popen[bytes], group: bool) -> None:
    if process.poll() is None:
        if group:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
        else:
            process.kill()
    process.wait()
