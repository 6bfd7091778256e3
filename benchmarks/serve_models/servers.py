"""Start, probe and stop the servers under test: headrace, NVIDIA Triton and PyTriton.

Each server is a child process in its own session, bound to 127.0.0.1. ``ServerProcess`` is a
context manager: leaving it (normally, on an error or on Ctrl-C) sends SIGTERM to the whole
process group and SIGKILL after a grace period, so no server outlives the benchmark.
headrace is started by the product's launcher (:mod:`headrace.bench.serve_launch`: port 0,
its ports reported in a file); Triton and PyTriton need ports up front, so they get free ones
and are restarted on new ones if a port was taken meanwhile.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = [
    "Ports",
    "Served",
    "ServerProcess",
    "ServerStartFailed",
    "children_cpu_seconds",
    "free_ports",
    "launch",
    "process_tree_cpu_seconds",
    "shared_tool",
]

_HERE = Path(__file__).resolve().parent
SYSTEMS = ("headrace", "triton", "pytriton")
HEADRACE_ARGS: list[str] = []
"""Extra ``headrace serve`` arguments (serve_overhead.py --headrace-args)."""
HEADRACE_ENV: dict[str, str] = {}
"""Extra environment for ``headrace serve`` (serve_ab.py settings)."""


class ServerStartFailed(RuntimeError):
    """A server exited or did not become ready in time; the message ends with its log."""


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    def url(self, protocol: str) -> str:
        return f"127.0.0.1:{self.grpc if protocol.startswith('grpc') else self.http}"


class Served(Protocol):
    """What a load needs of a server under test: a :class:`ServerProcess`, or several
    processes read as one (benchmarks/serve_processes.py)."""

    system: str
    ports: Ports | None

    def stats(self, model: str) -> Mapping[str, Any]: ...

    def cpu_seconds(self) -> float: ...


class ServerProcess:
    """One running server; ``stats(model)`` reads its statistics endpoint over HTTP."""

    def __init__(
        self,
        system: str,
        command: list[str],
        env: dict[str, str],
        log: Path,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Start ``command`` in its own session, or adopt ``process`` already started so."""
        self.system = system
        self.command = command
        self.log_path = log
        self._log: IO[bytes] | None = None
        if process is None:
            self._log = open(log, "wb")  # noqa: SIM115  (closed in stop)
            process = subprocess.Popen(
                command,
                env=env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process = process
        self.ports: Ports | None = None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, models: list[str], timeout_s: float, ports_file: Path | None) -> Ports:
        """Block until every model in ``models`` answers ready; raise if the server dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ports is None and ports_file is not None and ports_file.is_file():
                found = json.loads(ports_file.read_text())
                self.ports = Ports(found["http"], found["grpc"], found.get("metrics", 0))
            if self.ports is not None and all(self._ready(m) for m in models):
                return self.ports
            try:  # doubles as the pause between probes: returns at once if the server died
                code = self.process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            raise ServerStartFailed(f"{self.system} exited with {code}: {self.log_tail()}")
        raise ServerStartFailed(
            f"{self.system} not ready within {timeout_s:.0f} s for {models}: {self.log_tail()}"
        )

    def stats(self, model: str) -> dict[str, Any]:
        """The model's entry of ``GET /v2/models/<model>/stats`` (Triton's statistics JSON)."""
        body = self._get(f"/v2/models/{model}/stats", timeout=10)
        entries = json.loads(body)["model_stats"]
        if not entries:
            raise RuntimeError(f"{self.system}: no statistics for model {model!r}")
        return dict(entries[0])

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the server (it stops its own helpers), SIGKILL its whole group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace_s)
        try:  # a stub or helper left in the group after the leader exited
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._log is not None:
            self._log.close()

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and every process under it (Triton's stubs)."""
        return process_tree_cpu_seconds([self.process.pid])

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def _ready(self, model: str) -> bool:
        try:
            self._get(f"/v2/models/{model}/ready", timeout=2)
        except (urllib.error.URLError, OSError):
            return False
        return True

    def _get(self, path: str, timeout: float) -> bytes:
        assert self.ports is not None, "ports are known once the server is up"
        url = f"http://127.0.0.1:{self.ports.http}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read())


def launch(
    system: str,
    repository: Path,
    models: list[str],
    workdir: Path,
    options: dict[str, int],
    timeout_s: float = 300.0,
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """Start ``system`` serving ``models`` from ``repository`` and wait until they are ready.

    ``extra_args`` go to ``headrace serve`` or ``tritonserver`` as they are (flags both read,
    such as ``--cache-config``)."""
    if system == "headrace":
        return _launch_headrace(repository, models, workdir, timeout_s, extra_args)
    attempts = 3
    for attempt in range(attempts):
        ports = Ports(*free_ports(3))
        command, env = _command(system, repository, models, ports, options)
        if system == "triton":
            command = [*command, *extra_args]
        server = ServerProcess(system, command, env, workdir / f"{system}.log")
        server.ports = ports
        try:
            server.wait_ready(models, timeout_s, None)
        except BaseException:
            server.stop()
            if attempt + 1 == attempts:
                raise
            continue
        return server
    raise AssertionError("unreachable")


def _launch_headrace(
    repository: Path,
    models: list[str],
    workdir: Path,
    timeout_s: float,
    extra_args: Sequence[str],
) -> ServerProcess:
    """``headrace serve`` through the product's launcher (port 0, its ports file, readiness of
    every model), in its own session so that stopping it takes its helpers too."""
    from headrace.bench import serve_launch
    from headrace.errors import Unavailable

    args = ["--model-control-mode", "explicit", *HEADRACE_ARGS]
    args += [f"--load-model={model}" for model in models]
    try:
        launched = serve_launch.launch(
            repository,
            workdir,
            [*args, *extra_args],
            ready=serve_launch.models_ready(models),
            what=f"report {models} ready",
            env={**os.environ, **HEADRACE_ENV},
            new_session=True,
            stem="headrace",
            timeout_s=timeout_s,
        )
    except Unavailable as exc:
        raise ServerStartFailed(str(exc)) from exc
    command = [str(a) for a in launched.process.args]  # type: ignore[union-attr]
    server = ServerProcess("headrace", command, {}, launched.log_path, launched.process)
    found = launched.ports
    server.ports = Ports(found["http"], found["grpc"], found.get("metrics", 0))
    return server


def _command(
    system: str,
    repository: Path,
    models: list[str],
    ports: Ports,
    options: dict[str, int],
) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if system == "triton":
        command = [shared_tool("tritonserver"), str(repository)]
        command += [str(ports.http), str(ports.grpc), str(ports.metrics), "--"]
        command += ["--model-control-mode=explicit", "--log-verbose=0"]
        command += [f"--load-model={m}" for m in models]
        return command, env
    if system == "pytriton":
        python = _triton_venv() / "bin" / "python"
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
        nets = ",".join(m.rsplit("_", 1)[0] for m in models)
        command = [str(python), str(_HERE / "pytriton_server.py"), "--repository", str(repository)]
        command += ["--nets", nets, "--http-port", str(ports.http)]
        command += ["--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
        command += ["--max-batch-size", str(options["max_batch_size"])]
        command += ["--max-queue-delay-us", str(options["max_queue_delay_us"])]
        command += ["--instances", str(options["instances"])]
        return command, env
    raise ValueError(f"unknown system {system!r}; choose from {list(SYSTEMS)}")


def shared_tool(name: str) -> str:
    """``../shared/tools/<name>`` found upwards from this file or the working directory."""
    for start in (Path.cwd(), _HERE):
        for parent in (start, *start.parents):
            candidate = parent / "shared" / "tools" / name
            if candidate.is_file():
                return str(candidate)
    raise FileNotFoundError(f"../shared/tools/{name} not found above {Path.cwd()} or {_HERE}")


def _triton_venv() -> Path:
    home = Path(os.environ.get("TRITON_HOME", Path.home() / ".cache/headrace-tools/tritonserver"))
    venv = home / "venv"
    if not (venv / "bin" / "python").is_file():
        raise FileNotFoundError(
            f"PyTriton's venv {venv} is missing; run ../shared/tools/tritonserver once to create it"
        )
    return venv


def process_tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by the processes ``pids`` and every process under them."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in tree:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the perf_analyzer runs: the client)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_ports(count: int) -> list[int]:
    """Ports free right now (the caller retries on new ones if a race takes one)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
