"""``headrace serve`` with Triton's logging and tracing flags, end to end in a real process:
the log file gets the log and the access log, v2/logging changes what is written, and
``--trace-config`` traces into its file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import examples_repository, start_server


def _simple_inputs(module: object) -> list[object]:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [1, 16], "INT32")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
        inputs.append(tensor)
    return inputs


def test_log_file_access_log_and_trace_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("serve-logging")
    repository = workdir / "repo"
    shutil.copytree(examples_repository(tmp_path_factory), repository)
    log_file, trace_file = workdir / "server.log", workdir / "trace.json"
    server = start_server(
        repository,
        workdir,
        [
            "--model-control-mode", "explicit", "--load-model", "simple",
            "--log-file", str(log_file), "--log-requests", "--log-format", "ISO8601",
            "--trace-config", f"triton,file={trace_file}", "--trace-config", "level=TIMESTAMPS",
            "--trace-config", "rate=1",
        ],
    )  # fmt: skip
    try:
        with httpclient.InferenceServerClient(server.http_url) as http:
            settings = http.get_log_settings()
            assert settings["log_file"] == str(log_file)
            assert settings["log_format"] == "ISO8601" and settings["log_info"] is False
            http.infer("simple", _simple_inputs(httpclient), request_id="over-http")
            http.update_log_settings({"log_info": True})
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            grpc.infer("simple", _simple_inputs(grpcclient), request_id="over-grpc")
            assert grpc.get_trace_settings(as_json=True)["settings"]["trace_rate"] == {
                "value": ["1"]
            }
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    text = log_file.read_text()
    assert " http POST /v2/models/simple/infer simple 200 " in text
    assert " grpc ModelInfer simple OK " in text
    # log_info was turned on over HTTP: the drain's INFO line is in the file, ISO8601 style
    assert any(" I " in line and "draining" in line for line in text.splitlines()), text
    records = json.loads(trace_file.read_text())
    ids = [r["request_id"] for r in records if "model_name" in r]
    assert ids == ["over-http", "over-grpc"]


def test_help_shows_the_flags_with_their_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for flag in (
        "--log-verbose",
        "--log-info",
        "--log-format",
        "--log-file",
        "--log-requests",
        "--trace-config",
    ):
        assert flag in help_text
    assert "(default off)" in help_text and "(default default)" in help_text


def test_a_bad_trace_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", str(tmp_path), "--trace-config", "speed=3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "headrace: error: --trace-config 'speed=3': unknown setting 'speed' "
        "(level, rate, count, mode, file, log-frequency)"
    ]
