"""Run ``headrace serve`` as a real subprocess for the end-to-end tests.

The examples repository is built once per test session (with ``headrace examples create``) and
each server gets its own copy, so a test module can add models to it. A server is ready once
it has written its ports file and answers tritonclient's ``is_server_ready``; every wait is
bounded by a ``time.monotonic()`` deadline and doubles as a wait on the process, so a server
that dies while starting fails the test at once with its log (the launcher is
:mod:`headrace.bench.serve_launch`, shared with bench tune and the benchmark scripts). Teardown sends SIGTERM and
expects a drained exit with status 0; SIGKILL is only the fallback, and it fails the test.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from headrace.bench import serve_launch
from headrace.errors import Unavailable

__all__ = [
    "ServeProcess",
    "examples_repository",
    "onnx_reference",
    "start_server",
    "write_fp16_identity",
]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

#: Triton python-backend model: OUTPUT0 = INPUT0, whatever the dtype (used for FP16 here).
_IDENTITY_MODEL_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
"""

_FP16_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{
  name: "INPUT0"
  data_type: TYPE_FP16
  dims: [ -1 ]
}}
output {{
  name: "OUTPUT0"
  data_type: TYPE_FP16
  dims: [ -1 ]
}}
{extra}
"""


@dataclass
class ServeProcess:
    """A running ``headrace serve`` child, its bound ports and its combined log."""

    process: subprocess.Popen[bytes]
    repository: Path
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stdout+stderr, for failure messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"<log unreadable: {exc}>"

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status if the process ends within ``timeout`` seconds, else None."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """SIGTERM, wait for the drain; SIGKILL only as a fallback, which fails the test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.wait_exit(STOP_TIMEOUT_S)
        if code is None:
            self.process.kill()
            self.process.wait()
            pytest.fail(
                f"headrace serve ignored SIGTERM for {STOP_TIMEOUT_S}s and was killed\n"
                f"{self.log_tail()}"
            )
        return code


def examples_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples repository, built once per session by ``headrace examples create``."""
    path = tmp_path_factory.getbasetemp() / "headrace-examples"
    done = path.with_suffix(".done")
    if not done.exists():
        if path.exists():
            shutil.rmtree(path)
        result = subprocess.run(
            [sys.executable, "-m", "headrace.cli", "examples", "create", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            pytest.fail(f"headrace examples create failed:\n{result.stdout}\n{result.stderr}")
        done.touch()
    return path


def onnx_reference(model_file: Path, output: str = "OUTPUT0") -> Callable[..., np.ndarray]:
    """onnxruntime run directly on a repository's model file: the reference for served results."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([output], {input_name: x})[0])

    return run


def write_fp16_identity(
    repository: Path, name: str = "fp16_identity", batching_delay_us: int | None = None
) -> None:
    """Add an FP16 identity python-backend model, written as a Triton model.py, to a repo.

    With ``batching_delay_us`` it gets ``dynamic_batching`` with that queue delay.
    """
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True)
    extra = (
        f"dynamic_batching {{ max_queue_delay_microseconds: {batching_delay_us} }}"
        if batching_delay_us is not None
        else ""
    )
    config = _FP16_CONFIG.format(name=name, extra=extra)
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    (model_dir / "1" / "model.py").write_text(_IDENTITY_MODEL_PY, encoding="utf-8")


def start_server(
    repository: Path, workdir: Path, extra_args: Sequence[str] = (), *, ready: bool = True
) -> ServeProcess:
    """Start ``headrace serve`` on free ports and return once it is ready (or, with
    ``ready=False``, once it is live: a server that is not ready on purpose)."""
    check = "is_server_ready" if ready else "is_server_live"
    try:
        launched = serve_launch.launch(
            repository,
            workdir,
            extra_args,
            ready=lambda ports: _answers(ports, check),
            what="report ready" if ready else "report live",
            timeout_s=START_TIMEOUT_S,
        )
    except Unavailable as exc:
        pytest.fail(str(exc))
    return ServeProcess(launched.process, repository, launched.log_path, launched.ports)


def _answers(ports: Mapping[str, int], check: str) -> bool:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{ports['http']}", connection_timeout=5.0)
    try:
        return bool(getattr(client, check)())
    except Exception:  # refused or reset while the server is still opening its doors
        return False
    finally:
        client.close()
