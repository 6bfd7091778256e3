"""``v2/logging``, ``v2/trace/setting`` and ``--log-requests`` through unmodified tritonclient.

A real core serves the fake ``scale`` model over both doors (each HTTP server in turn); the
test reads and changes the settings over HTTP and gRPC, as a Triton user's script would, and
checks what they do: the trace file written at stop, the access log's lines.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from server_fakes import scale_config, scale_factory
from tritonclient.utils import InferenceServerException

from headrace.server.access_log import AccessLog
from headrace.server.app import FrontendOptions, ServerApp
from headrace.server.core import InferenceServer
from headrace.server.tracing import TraceControl, TraceSettings


class Running:
    """A :class:`ServerApp` on its own loop in a daemon thread."""

    def __init__(self, http_server: str, trace_file: Path, access: io.StringIO) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.core = InferenceServer()
        start = TraceSettings(trace_file=str(trace_file))
        self.core.tracing = TraceControl(start, known=self.core.knows_model)
        self.core.access_log = AccessLog(access)
        options = FrontendOptions(
            http_port=0, grpc_port=0, metrics_port=None, http_server=http_server
        )
        self.app = ServerApp(self.core, options)
        self.call(self._start())

    async def _start(self) -> None:
        await self.app.start()
        await self.core.register_model("scale", scale_factory(), scale_config())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.app.stop())
        self.core.access_log.close()  # type: ignore[union-attr]
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(http_server: str, tmp_path: Path) -> Iterator[tuple[Running, Path, io.StringIO]]:
    access = io.StringIO()
    server = Running(http_server, tmp_path / "trace.json", access)
    try:
        yield server, tmp_path / "trace.json", access
    finally:
        if server.loop.is_running():
            server.stop()


def _http_infer(client: httpclient.InferenceServerClient, request_id: str) -> None:
    tensor = httpclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    client.infer("scale", [tensor], request_id=request_id)


def _grpc_infer(client: grpcclient.InferenceServerClient, request_id: str) -> None:
    tensor = grpcclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    client.infer("scale", [tensor], request_id=request_id)


def test_log_settings_over_both_protocols(running: tuple[Running, Path, io.StringIO]) -> None:
    server, _, _ = running
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.app.ports['http']}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.app.ports['grpc']}")
    assert {"logging", "trace"} <= set(http.get_server_metadata()["extensions"])
    assert http.get_log_settings() == {
        "log_file": "",
        "log_info": True,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 0,
        "log_format": "default",
    }
    changed = http.update_log_settings({"log_verbose_level": 2, "log_format": "ISO8601"})
    assert changed["log_verbose_level"] == 2 and changed["log_format"] == "ISO8601"
    seen = grpc.get_log_settings(as_json=True)["settings"]
    assert seen["log_verbose_level"] == {"uint32_param": 2}
    assert seen["log_format"] == {"string_param": "ISO8601"}
    after = grpc.update_log_settings({"log_info": False}, as_json=True)["settings"]
    assert after["log_info"] == {"bool_param": False}
    assert server.core.log_control.settings.log_info is False
    with pytest.raises(InferenceServerException) as exc:
        http.update_log_settings({"log_file": "/tmp/elsewhere.log"})
    assert exc.value.status() == "501"
    with pytest.raises(InferenceServerException) as exc:
        grpc.update_log_settings({"log_format": "bad"})
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "invalid argument for log_format, got: bad" in exc.value.message()
    http.close()
    grpc.close()


def test_trace_settings_and_trace_file(running: tuple[Running, Path, io.StringIO]) -> None:
    server, trace_file, access = running
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.app.ports['http']}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.app.ports['grpc']}")
    assert http.get_trace_settings()["trace_level"] == ["OFF"]
    on = http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
    assert on["trace_level"] == ["TIMESTAMPS"] and on["trace_file"] == str(trace_file)
    model = grpc.update_trace_settings("scale", {"trace_rate": "2"}, as_json=True)["settings"]
    assert model["trace_rate"] == {"value": ["2"]}
    assert http.get_trace_settings("scale")["trace_rate"] == "2"
    assert grpc.get_trace_settings(as_json=True)["settings"]["trace_rate"] == {"value": ["1"]}
    with pytest.raises(InferenceServerException) as exc:
        http.get_trace_settings("nope")
    assert exc.value.status() == "400" and "Request for unknown model : nope" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        grpc.update_trace_settings(settings={"trace_file": "/tmp/x.json"})
    assert exc.value.status() == "StatusCode.UNIMPLEMENTED"
    for i in range(2):
        _http_infer(http, f"h{i}")
        _grpc_infer(grpc, f"g{i}")
    http.close()
    grpc.close()
    server.stop()
    records = json.loads(trace_file.read_text())
    heads = [r for r in records if "model_name" in r]
    assert [h["request_id"] for h in heads] == ["g0", "g1"]  # rate 2: the 2nd and 4th request
    for head in heads:
        names = [
            r["timestamps"][0]["name"]
            for r in records
            if r["id"] == head["id"] and "timestamps" in r
        ]
        assert names == [
            "REQUEST_START",
            "QUEUE_START",
            "COMPUTE_START",
            "COMPUTE_END",
            "REQUEST_END",
        ]
        stamps = [
            r["timestamps"][0]["ns"] for r in records if r["id"] == head["id"] and "timestamps" in r
        ]
        assert stamps == sorted(stamps)
    lines = access.getvalue().splitlines()
    infers = [
        line for line in lines if "scale" in line and ("infer" in line or "ModelInfer" in line)
    ]
    assert len(infers) == 4
    assert any(" http POST /v2/models/scale/infer scale 200 " in line for line in infers)
    assert any(" grpc ModelInfer scale OK " in line for line in infers)
    assert any(" http GET /v2/models/nope/trace/setting nope 400 " in line for line in lines)
    assert all(line.endswith("ms") for line in lines)
