"""Triton's generate extension end to end: a real ``headrace serve`` over plain HTTP.

``request_meta`` (plain) and ``repeat_decoupled`` (decoupled: n, n + 1, n + 2, then the final
flag; an error response for negative n) from tests/data/python_models. tritonclient has no
generate API, so the requests are raw HTTP. The expected bytes are what NVIDIA Triton 2.51 sent
for the same models and requests (tests/integration/test_generate_vs_triton.py compares the
two servers side by side when Triton is installed).
"""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_process import ServeProcess, start_server

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
WAIT_S = 10.0
SSE = "text/event-stream; charset=utf-8"
EXACTLY_ONE = (
    b'{"error":"generate expects model to produce exactly 1 response, use generate stream for '
    b'model that generates various number of responses"}'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("generate")
    repository = workdir / "repo"
    for name in ("request_meta", "repeat_decoupled"):
        shutil.copytree(MODELS / name, repository / name)
    process = start_server(repository, workdir, ["--http-server", http_server])
    yield process
    assert process.stop() == 0, process.log_tail()


def post(server: ServeProcess, path: str, body: Any) -> tuple[int, str, bytes]:
    host, port = server.http_url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    try:
        conn.request("POST", path, body=json.dumps(body).encode())
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def events(body: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, each ``data: {...}`` + a blank line."""
    assert body.endswith(b"\n\n") or body == b""
    parts = body.split(b"\n\n")[:-1]
    assert all(part.startswith(b"data: ") for part in parts), body
    return [json.loads(part[len(b"data: ") :]) for part in parts]


def test_generate_on_a_plain_model(server: ServeProcess) -> None:
    request = {"X": 7, "id": "r1", "temperature": 0.5, "parameters": {"flag": True, "n": 3}}
    status, content_type, body = post(server, "/v2/models/request_meta/generate", request)
    assert (status, content_type) == (200, "application/json")
    assert body.startswith(b'{"META":"{') and body.endswith(
        b'"id":"r1","model_name":"request_meta","model_version":"1"}'
    )
    meta = json.loads(json.loads(body)["META"])
    assert meta["request_id"] == "r1" and (meta["correlation_id"], meta["flags"]) == (0, 0)
    assert meta["parameters"] == {"flag": True, "id": "r1", "n": 3, "temperature": 0.5}


def test_generate_stream_on_a_plain_model(server: ServeProcess) -> None:
    status, content_type, body = post(server, "/v2/models/request_meta/generate_stream", {"X": 1})
    assert (status, content_type) == (200, SSE)
    [event] = events(body)
    assert (event["model_name"], event["model_version"]) == ("request_meta", "1")
    assert json.loads(event["META"])["parameters"] == {}


@pytest.mark.parametrize("in_thread", [False, True])
def test_generate_stream_on_a_decoupled_model(server: ServeProcess, in_thread: bool) -> None:
    request: dict[str, Any] = {"IN": 5}
    if in_thread:
        request["parameters"] = {"in_thread": True}
    status, content_type, body = post(
        server, "/v2/models/repeat_decoupled/generate_stream", request
    )
    assert (status, content_type) == (200, SSE)
    assert body == (
        b'data: {"OUT":5,"model_name":"repeat_decoupled","model_version":"1"}\n\n'
        b'data: {"OUT":6,"model_name":"repeat_decoupled","model_version":"1"}\n\n'
        b'data: {"OUT":7,"model_name":"repeat_decoupled","model_version":"1"}\n\n'
    )


def test_generate_on_a_decoupled_model_wants_exactly_one_response(server: ServeProcess) -> None:
    assert post(server, "/v2/models/repeat_decoupled/generate", {"IN": 1}) == (
        200,
        "application/json",
        EXACTLY_ONE,
    )


def test_an_error_response(server: ServeProcess) -> None:
    assert post(server, "/v2/models/repeat_decoupled/generate_stream", {"IN": -1}) == (
        400,
        SSE,
        b'data: {"error":"negative input -1"}\n\n',
    )
    assert post(server, "/v2/models/repeat_decoupled/generate", {"IN": -1}) == (
        400,
        "application/json",
        b'{"error":"negative input -1"}',
    )


def test_errors_before_inference(server: ServeProcess) -> None:
    for route in ("generate", "generate_stream"):
        status, content_type, body = post(server, f"/v2/models/nope/{route}", {"X": 1})
        assert (status, content_type) == (404, "application/json")
        assert "nope" in json.loads(body)["error"]
        status, content_type, body = post(server, f"/v2/models/request_meta/{route}", {"X": "1"})
        assert (status, content_type) == (400, "application/json")
        assert "attempt to access JSON non-signed-integer" in json.loads(body)["error"]
    # the server keeps serving
    assert post(server, "/v2/models/request_meta/generate", {"X": 1})[0] == 200
