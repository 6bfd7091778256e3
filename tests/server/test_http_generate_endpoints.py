"""``POST …/generate`` and ``…/generate_stream`` on the HTTP frontend, over real sockets.

A real :class:`InferenceServer` serves Triton python-backend models from tests/data/python_models
(``request_meta``, plain; ``repeat_decoupled``, decoupled) behind the HTTP frontend (on each
``--http-server``) on its own loop in a background thread; requests are raw HTTP, so bytes,
statuses and headers are what a client sees. Expected bodies are what NVIDIA Triton 2.51 sent for the same requests.
A fake core checks that a client leaving mid-stream cancels its request.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headrace.server.core import InferenceServer, ModelMetadata, StreamedResponse
from headrace.server.http.generate import EXACTLY_ONE_RESPONSE
from headrace.server.http.servers import make_http_frontend
from headrace.server.memory import SharedMemoryRegistry
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
WAIT_S = 10.0
SSE = "text/event-stream; charset=utf-8"


class Served:
    """A frontend on its own loop in a daemon thread."""

    def __init__(self, core: Any, http_server: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.frontend = make_http_frontend(http_server, core, "127.0.0.1", 0)
        self.call(self.frontend.start())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.frontend.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Served]:
    repository = tmp_path_factory.mktemp("generate") / "repo"
    for name in ("request_meta", "repeat_decoupled", "add_sub"):
        shutil.copytree(MODELS / name, repository / name)
    core = InferenceServer(repository)
    server = Served(core, http_server)
    server.call(core.start())
    yield server
    server.call(core.stop())
    server.close()


def post(
    server: Served, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.frontend.port, timeout=WAIT_S)
    try:
        conn.request("POST", path, body=raw, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def meta_body(parameters: str = "{}", request_id: str = "") -> bytes:
    """request_meta's answer to X=7, as Triton 2.51 sends it."""
    meta = (
        '{\\"correlation_id\\": 0, \\"end\\": false, \\"flags\\": 0, \\"parameters\\": '
        + parameters.replace('"', '\\"')
        + f', \\"request_id\\": \\"{request_id}\\", \\"start\\": false}}'
    )
    id_field = f'"id":"{request_id}",' if request_id else ""
    return (
        f'{{"META":"{meta}",{id_field}"model_name":"request_meta","model_version":"1"}}'
    ).encode()


def test_generate_on_a_plain_model(served: Served) -> None:
    status, headers, body = post(served, "/v2/models/request_meta/generate", {"X": 7})
    assert (status, headers["Content-Type"], body) == (200, "application/json", meta_body())
    body = post(served, "/v2/models/request_meta/versions/1/generate", {"X": [7]})[2]
    assert body == meta_body()
    request = {"X": 7, "id": "abc", "temperature": 0.5, "parameters": {"flag": True}}
    body = post(served, "/v2/models/request_meta/generate", request)[2]
    expected = '{"flag": true, "id": "abc", "temperature": 0.5}'
    assert body == meta_body(expected, request_id="abc")


def test_generate_stream_on_a_plain_model(served: Served) -> None:
    status, headers, body = post(served, "/v2/models/request_meta/generate_stream", {"X": 7})
    assert (status, headers["Content-Type"]) == (200, SSE)
    assert body == b"data: " + meta_body() + b"\n\n"


def test_lists_fill_the_input_shape(served: Served) -> None:
    request = {"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}
    status, _, body = post(served, "/v2/models/add_sub/generate", request)
    assert status == 200
    assert body == (
        b'{"OUTPUT0":[2.0,3.0,4.0,5.0],"OUTPUT1":[0.0,1.0,2.0,3.0],'
        b'"model_name":"add_sub","model_version":"1"}'
    )


@pytest.mark.parametrize("in_thread", [False, True])
def test_generate_stream_sends_each_decoupled_response(served: Served, in_thread: bool) -> None:
    request: dict[str, Any] = {"IN": 1}
    if in_thread:
        request["in_thread"] = True
    status, headers, body = post(served, "/v2/models/repeat_decoupled/generate_stream", request)
    assert (status, headers["Content-Type"]) == (200, SSE)
    assert body == b"".join(
        b'data: {"OUT":%d,"model_name":"repeat_decoupled","model_version":"1"}\n\n' % n
        for n in (1, 2, 3)
    )


def test_generate_wants_exactly_one_response_from_a_decoupled_model(served: Served) -> None:
    status, headers, body = post(served, "/v2/models/repeat_decoupled/generate", {"IN": 1})
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {"error": EXACTLY_ONE_RESPONSE}


def test_an_error_response_first_sets_400(served: Served) -> None:
    status, headers, body = post(served, "/v2/models/repeat_decoupled/generate_stream", {"IN": -1})
    assert (status, headers["Content-Type"]) == (400, SSE)
    assert body == b'data: {"error":"negative input -1"}\n\n'
    status, headers, body = post(served, "/v2/models/repeat_decoupled/generate", {"IN": -1})
    assert (status, headers["Content-Type"]) == (400, "application/json")
    assert body == b'{"error":"negative input -1"}'


@pytest.mark.parametrize("route", ["generate", "generate_stream"])
@pytest.mark.parametrize(
    ("model", "body", "status", "words"),
    [
        ("missing", {"X": 7}, 404, "Request for unknown model: 'missing' is not found"),
        ("request_meta/versions/2", {"X": 7}, 404, "'request_meta' version 2 is not found"),
        ("request_meta", {}, 400, "missing required input(s) ['X']"),
        ("request_meta", {"X": [7, 8]}, 400, "can not convert input 'X'"),
        ("request_meta", b"not json", 400, "failed to parse the request JSON"),
        ("request_meta", {"X": "7"}, 400, "non-signed-integer as signed-integer"),
    ],
)
def test_errors_before_inference_are_json_with_the_status_table(
    served: Served, route: str, model: str, body: Any, status: int, words: str
) -> None:
    got, headers, raw = post(served, f"/v2/models/{model}/{route}", body)
    assert (got, headers["Content-Type"]) == (status, "application/json")
    assert words in json.loads(raw)["error"]


def test_compressed_bodies_methods_and_metadata(served: Served) -> None:
    body = gzip.compress(json.dumps({"X": 7}).encode())
    status, _, raw = post(
        served, "/v2/models/request_meta/generate", body, {"Content-Encoding": "gzip"}
    )
    assert (status, raw) == (200, meta_body())
    conn = http.client.HTTPConnection("127.0.0.1", served.frontend.port, timeout=WAIT_S)
    try:
        conn.request("GET", "/v2/models/request_meta/generate")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (
            405,
            {"error": "Method Not Allowed"},
        )
        conn.request("GET", "/v2")
        extensions = json.loads(conn.getresponse().read())["extensions"]
    finally:
        conn.close()
    assert not any("generate" in name for name in extensions)  # Triton 2.51 lists none


# --- a client that leaves ------------------------------------------------------------------


class EndlessCore:
    """One model, ``slow``: its stream sends one response, then waits for ever; its unary
    inference waits for ever. Records how each one ended."""

    access_log = None  # no --log-requests

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.ended_event = threading.Event()
        self.infer_started = threading.Event()
        self.shared_memory = SharedMemoryRegistry()
        self.metadata = ModelMetadata(
            "slow", ("1",), "python", (TensorSpec("X", DataType.INT32, (1,)),), (), False
        )

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        return self.metadata

    def _end(self, how: str) -> None:
        self.ended.append(how)
        self.ended_event.set()

    async def stream(self, request: InferenceRequest) -> AsyncIterator[StreamedResponse]:
        outputs = {"Y": np.array([1], np.int32)}
        try:
            yield StreamedResponse(InferenceResponse("slow", "1", outputs), final=False)
            await asyncio.Event().wait()
        except (asyncio.CancelledError, GeneratorExit) as exc:
            self._end(type(exc).__name__)
            raise

    async def infer(self, request: InferenceRequest, **_: object) -> InferenceResponse:
        self.infer_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self._end("infer cancelled")
            raise
        raise AssertionError("unreachable")


@pytest.fixture
def endless(http_server: str) -> Iterator[tuple[Served, EndlessCore]]:
    core = EndlessCore()
    server = Served(core, http_server)
    yield server, core
    server.close()


def _send_then_leave(port: int, path: str, body: bytes, until: bytes) -> bytes:
    """Send a request on a raw socket, read until ``until`` arrives, then hang up."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        while until not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection early: {received!r}"
            received += chunk
    return received


def test_a_client_leaving_mid_stream_cancels_the_request(
    endless: tuple[Served, EndlessCore],
) -> None:
    server, core = endless
    received = _send_then_leave(
        server.frontend.port,
        "/v2/models/slow/generate_stream",
        b'{"X": 1}',
        until=b"\n\n",
    )
    assert b"200 OK" in received and b'data: {"Y":1,"model_name":"slow"' in received
    assert core.ended_event.wait(WAIT_S), "the stream was never closed"
    assert core.ended == ["CancelledError"]


def test_a_client_leaving_an_infer_cancels_it(endless: tuple[Served, EndlessCore]) -> None:
    server, core = endless
    body = json.dumps(
        {"inputs": [{"name": "X", "shape": [1], "datatype": "INT32", "data": [1]}]}
    ).encode()
    request = (
        "POST /v2/models/slow/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server.frontend.port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        assert core.infer_started.wait(WAIT_S), "the inference never started"
    assert core.ended_event.wait(WAIT_S), "the inference was never cancelled"
    assert core.ended == ["infer cancelled"]
