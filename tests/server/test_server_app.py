"""ServerApp (in-process) and ``headrace serve`` (a real process): ports, drain, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from server_fakes import run, scale_config, scale_factory, write_python_model

from headrace.errors import InvalidConfig
from headrace.server.app import DrainReport, FrontendOptions, ServerApp
from headrace.server.core import InferenceServer


def _http_infer(port: int, model: str, name: str, x: np.ndarray, datatype: str) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        data = httpclient.InferInput(name, list(x.shape), datatype)
        data.set_data_from_numpy(x)
        return client.infer(model, [data]).as_numpy("Y" if name == "X" else "y")
    finally:
        client.close()


def test_stop_drains_in_flight_requests(tmp_path: Path) -> None:
    gate, started = threading.Event(), threading.Event()

    async def body() -> np.ndarray:
        core = InferenceServer()
        options = FrontendOptions(
            http_port=0,
            grpc_port=None,
            metrics_port=None,
            ports_file=str(tmp_path / "ports.json"),
        )
        app = ServerApp(core, options)
        await app.start()
        await core.register_model(
            "scale", scale_factory(gate=gate, started=started), scale_config()
        )
        assert json.loads((tmp_path / "ports.json").read_text()) == {"http": app.ports["http"]}
        x = np.ones((1, 4), np.float32)
        call = asyncio.create_task(
            asyncio.to_thread(_http_infer, app.ports["http"], "scale", "x", x, "FP32")
        )
        await asyncio.to_thread(started.wait, 10)
        stopping = asyncio.create_task(app.stop())
        await asyncio.sleep(0)
        assert not stopping.done()
        gate.set()
        result = await call
        await stopping
        assert not core.live()
        return result

    np.testing.assert_allclose(run(body), np.full((1, 4), 2, np.float32))


@pytest.mark.parametrize("http_server", ["granian", "aiohttp"])
def test_stop_reports_the_drain_and_cuts_it_off_at_the_exit_timeout(
    http_server: str,
) -> None:
    gate, started = threading.Event(), threading.Event()

    async def body() -> tuple[DrainReport, BaseException | np.ndarray]:
        core = InferenceServer()
        options = FrontendOptions(
            http_port=0,
            grpc_port=None,
            metrics_port=None,
            http_server=http_server,
            exit_timeout_s=0.2,
        )
        app = ServerApp(core, options)
        await app.start()
        await core.register_model(
            "scale", scale_factory(gate=gate, started=started), scale_config()
        )
        x = np.ones((1, 4), np.float32)
        call = asyncio.ensure_future(
            asyncio.to_thread(_http_infer, app.ports["http"], "scale", "x", x, "FP32")
        )
        await asyncio.to_thread(started.wait, 10)
        closed: list[int] = []
        try:
            report = await app.stop(on_closed=closed.append)
        finally:
            gate.set()
        assert closed == [1]
        try:
            answer: BaseException | np.ndarray = await call
        except Exception as exc:
            answer = exc
        return report, answer

    report, answer = run(body)
    assert (report.in_flight, report.unfinished, report.timeout_s) == (1, 1, 0.2)
    assert not report.complete
    assert report.describe().startswith(
        "exit timeout expired (--exit-timeout-secs 0.2) with 1 of 1 requests still in flight"
    )
    assert isinstance(answer, Exception)  # cut off: 503 (granian) or a dropped connection


def test_a_negative_exit_timeout_names_the_flag() -> None:
    with pytest.raises(InvalidConfig, match="--exit-timeout-secs must not be negative, got -1"):
        FrontendOptions(exit_timeout_s=-1)


def test_headrace_serve_process_serves_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_python_model(repo, "mul", {1: 10})
    ports_file = tmp_path / "ports.json"
    command = [
        sys.executable,
        "-c",
        "import sys; from headrace.cli import main; sys.exit(main(sys.argv[1:]))",
        "serve",
        str(repo),
        "--http-port=0",
        "--metrics-port=0",
        "--grpc-port=0",
        f"--ports-file={ports_file}",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # blocks until the server reports it is serving
            seen.append(line)
            if "headrace: serving on" in line:
                break
        output = "".join(seen)
        assert "mul" in output and "READY" in output, output
        ports = json.loads(ports_file.read_text())
        assert set(ports) == {"http", "grpc", "metrics"}
        x = np.array([[4]], dtype=np.int32)
        np.testing.assert_array_equal(_http_infer(ports["http"], "mul", "X", x, "INT32"), x * 10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
