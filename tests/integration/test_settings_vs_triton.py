"""Log and trace settings side by side with NVIDIA Triton 2.51: the same calls through
unmodified tritonclient get the same answers, and the trace files the same records.

Left out on purpose (see headrace.server.log_settings and .tracing): values of the wrong JSON
type (Triton: a 500 naming its JSON parser; headrace: 400), a negative ``trace_rate`` or
``log_frequency`` (Triton wraps it to 4294967295; headrace refuses it), HTTP's ``log_format``
error (Triton: 503; headrace: 400 as Triton's gRPC door says INVALID_ARGUMENT).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import examples_repository, start_server
from triton_process import TRITON_MISSING, triton_server
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.skipif(TRITON_MISSING, reason="tritonserver tool not installed")

Call = Callable[[httpclient.InferenceServerClient, grpcclient.InferenceServerClient], Any]

CALLS: list[tuple[str, Call]] = [
    ("http log get", lambda h, g: h.get_log_settings()),
    ("http log verbose", lambda h, g: h.update_log_settings({"log_verbose_level": 1})),
    ("grpc log format", lambda h, g: g.update_log_settings({"log_format": "ISO8601"}, as_json=True)),
    ("grpc log format bad", lambda h, g: g.update_log_settings({"log_format": "bad"})),
    ("http log file", lambda h, g: h.update_log_settings({"log_file": "/tmp/elsewhere.log"})),
    ("grpc log file", lambda h, g: g.update_log_settings({"log_file": "/tmp/elsewhere.log"})),
    ("http log unknown", lambda h, g: h.update_log_settings({"nothing": 1})),
    ("http log restore", lambda h, g: h.update_log_settings({"log_verbose_level": 0, "log_format": "default"})),
    ("http trace get", lambda h, g: h.get_trace_settings()),
    ("grpc trace get model", lambda h, g: g.get_trace_settings("simple", as_json=True)),
    ("http trace unknown model", lambda h, g: h.get_trace_settings("nope")),
    ("grpc trace unknown model", lambda h, g: g.update_trace_settings("nope", {"trace_rate": "2"})),
    ("http trace count", lambda h, g: h.update_trace_settings(settings={"trace_count": "5"})),
    ("http trace rate", lambda h, g: h.update_trace_settings(settings={"trace_rate": "3"})),
    ("http trace rate x", lambda h, g: h.update_trace_settings(settings={"trace_rate": "x"})),
    ("grpc trace rate huge", lambda h, g: g.update_trace_settings(settings={"trace_rate": "99999999999"})),
    ("grpc trace count -2", lambda h, g: g.update_trace_settings(settings={"trace_count": "-2"})),
    ("http trace off and on", lambda h, g: h.update_trace_settings(settings={"trace_level": ["OFF", "TIMESTAMPS"]})),
    ("http trace unknown level", lambda h, g: h.update_trace_settings(settings={"trace_level": ["BAD"]})),
    ("http trace model rate", lambda h, g: h.update_trace_settings("simple", {"trace_rate": "2"})),
    ("grpc trace model level", lambda h, g: g.update_trace_settings("simple", {"trace_level": ["OFF"]}, as_json=True)),
    ("http trace model", lambda h, g: h.get_trace_settings("simple")),
    ("http trace model clear", lambda h, g: h.update_trace_settings("simple", {"trace_level": None, "trace_rate": None})),
    ("http trace global reset", lambda h, g: h.update_trace_settings(settings={"trace_count": None, "trace_rate": None})),
    ("http trace file", lambda h, g: h.update_trace_settings(settings={"trace_file": "/tmp/x.json"})),
    ("grpc trace file", lambda h, g: g.update_trace_settings(settings={"trace_file": "/tmp/x.json"})),
]  # fmt: skip


def _answer(call: Call, http: Any, grpc: Any, trace_file: Path) -> Any:
    try:
        result = call(http, grpc)
    except InferenceServerException as exc:
        return ("error", exc.status(), exc.message())
    text = json.dumps(result, sort_keys=True).replace(str(trace_file), "TRACE_FILE")
    return json.loads(text)


def _run(urls: tuple[str, str], trace_file: Path) -> list[Any]:
    answers = []
    with (
        httpclient.InferenceServerClient(urls[0]) as http,
        grpcclient.InferenceServerClient(urls[1]) as grpc,
    ):
        for _, call in CALLS:
            answers.append(_answer(call, http, grpc, trace_file))
        for i in range(4):
            inputs = []
            for name in ("INPUT0", "INPUT1"):
                tensor = httpclient.InferInput(name, [1, 16], "INT32")
                tensor.set_data_from_numpy(np.full((1, 16), i, dtype=np.int32))
                inputs.append(tensor)
            http.infer("simple", inputs, request_id=f"r{i}")
    return answers


def _stamps(trace_file: Path) -> list[tuple[str, list[str]]]:
    records = json.loads(trace_file.read_text())
    traces = []
    for head in (r for r in records if "model_name" in r):
        names = [
            r["timestamps"][0]["name"]
            for r in records
            if r["id"] == head["id"] and "timestamps" in r
        ]
        traces.append((head["request_id"], names))
    return traces


def test_settings_and_trace_files_match_triton(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("settings-vs-triton")
    repository = workdir / "repo"
    repository.mkdir()
    shutil.copytree(examples_repository(tmp_path_factory) / "simple", repository / "simple")
    trace_args = ["--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1"]

    triton_trace = workdir / "triton-trace.json"
    with triton_server(
        repository, workdir, [*trace_args, "--trace-config", f"triton,file={triton_trace}"]
    ) as triton:
        expected = _run((triton.http_url, triton.grpc_url), triton_trace)

    ours_trace = workdir / "headrace-trace.json"
    # --log-info true: Triton's default; headrace serve writes info records only with -v
    ours_args = [*trace_args, "--trace-config", f"triton,file={ours_trace}", "--log-info", "true"]
    server = start_server(repository, workdir, ours_args)
    try:
        got = _run((server.http_url, server.grpc_url), ours_trace)
    finally:
        assert server.stop() == 0, server.log_tail()

    for (label, _), theirs, ours in zip(CALLS, expected, got):
        assert ours == theirs, f"{label}: Triton {theirs!r}, headrace {ours!r}"
    ours_stamps, their_stamps = _stamps(ours_trace), _stamps(triton_trace)
    assert [r for r, _ in ours_stamps] == [r for r, _ in their_stamps] == ["r0", "r1", "r2", "r3"]
    for (_, mine), (_, theirs) in zip(ours_stamps, their_stamps):
        assert mine == [name for name in theirs if name in mine]  # Triton's order, core stamps
