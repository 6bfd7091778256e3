"""The HTTP frontend driven by unmodified tritonclient (sync and aio) and by raw requests, on
each HTTP server (``--http-server``: aiohttp, granian), which must answer alike.

The server runs on its own event loop in a background thread, as it would in production,
so the blocking tritonclient.http client can be used from the test thread. The core is a
small fake implementing the InferenceServer interface (see FakeCore).
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from headrace.config import ModelConfig
from headrace.errors import InvalidInput, ModelExecutionError, ModelNotFound
from headrace.server.core import (
    BatchStatistics,
    Duration,
    InferenceServer,
    ModelMetadata,
    ModelStatistics,
    RepositoryIndexEntry,
    ServerMetadata,
)
from headrace.server.http.options import HttpOptions
from headrace.server.http.servers import make_http_frontend
from headrace.server.memory import SharedMemoryRegistry
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

F32 = DataType.FP32


def _meta(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> ModelMetadata:
    return ModelMetadata(name, ("1",), "python", tuple(inputs), tuple(outputs), batched=True)


class FakeCore(InferenceServer):
    """Models: addsub (two FP32 [-1,4] in, sum/diff out), echo (BYTES), half (FP16 x2),
    gate (waits for an event), boom (raises)."""

    def __init__(self) -> None:
        self.models: dict[str, ModelMetadata] = {
            "addsub": _meta(
                "addsub",
                [TensorSpec("INPUT0", F32, (4,)), TensorSpec("INPUT1", F32, (4,))],
                [TensorSpec("OUTPUT0", F32, (4,)), TensorSpec("OUTPUT1", F32, (4,))],
            ),
            "echo": _meta(
                "echo",
                [TensorSpec("IN", DataType.BYTES, (-1,))],
                [TensorSpec("OUT", DataType.BYTES, (-1,))],
            ),
            "half": _meta(
                "half",
                [TensorSpec("X", DataType.FP16, (3,))],
                [TensorSpec("Y", DataType.FP16, (3,))],
            ),
            "gate": _meta("gate", [TensorSpec("X", F32, (1,))], [TensorSpec("Y", F32, (1,))]),
            "boom": _meta("boom", [TensorSpec("X", F32, (1,))], [TensorSpec("Y", F32, (1,))]),
        }
        self.requests: list[InferenceRequest] = []
        self.loaded: list[tuple[str, str | None, dict[str, bytes] | None]] = []
        self.unloaded: list[tuple[str, bool]] = []
        self.gate = asyncio.Event()
        self.gate_entered = threading.Event()
        self.is_ready = True
        self.shared_memory = SharedMemoryRegistry()

    def _get(self, name: str) -> ModelMetadata:
        if name not in self.models:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        return self.models[name]

    async def infer(self, request: InferenceRequest, **_: object) -> InferenceResponse:
        meta = self._get(request.model_name)
        self.requests.append(request)
        expected = {spec.name for spec in meta.inputs}
        if set(request.inputs) != expected:
            raise InvalidInput(
                f"model '{meta.name}' expects inputs {sorted(expected)}, "
                f"got {sorted(request.inputs)}"
            )
        x = request.inputs
        if meta.name == "addsub":
            out = {"OUTPUT0": x["INPUT0"] + x["INPUT1"], "OUTPUT1": x["INPUT0"] - x["INPUT1"]}
        elif meta.name == "echo":
            out = {"OUT": x["IN"]}
        elif meta.name == "half":
            out = {"Y": x["X"] * 2}
        elif meta.name == "gate":
            self.gate_entered.set()
            await self.gate.wait()
            out = {"Y": x["X"]}
        else:
            raise ModelExecutionError(f"model '{meta.name}' raised: ValueError('bad batch')")
        if request.outputs is not None:
            out = {o.name: out[o.name] for o in request.outputs}
        return InferenceResponse(meta.name, "1", out, id=request.id)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def model_ready(self, name: str, version: str = "") -> bool:
        return name in self.models and version in ("", "1")

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("headrace", "0.1.0", ("binary_tensor_data", "statistics"))

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        return self._get(name)

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        meta = self._get(name)
        return ModelConfig(name=meta.name, platform=meta.platform, max_batch_size=8)

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        names = [name] if name else sorted(self.models)
        for n in names:
            self._get(n)
        batch = BatchStatistics(1, Duration(3, 30), Duration(3, 300), Duration(3, 30))
        return [
            ModelStatistics(n, "1", 17, 3, 3, success=Duration(3, 999), batch_stats=(batch,))
            for n in names
        ]

    def repository_index(self, ready_only: bool = False) -> list[RepositoryIndexEntry]:
        entries = [RepositoryIndexEntry(n, "1", "READY") for n in sorted(self.models)]
        if not ready_only:
            entries.append(RepositoryIndexEntry("broken", "", "UNAVAILABLE", "no model file"))
        return entries

    async def load_model(
        self, name: str, config: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self.loaded.append((name, config, files))

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._get(name)
        self.unloaded.append((name, unload_dependents))


class Served:
    """A frontend on its own loop in a daemon thread."""

    def __init__(self, core: InferenceServer, http_server: str, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.frontend = make_http_frontend(
            http_server, core, "127.0.0.1", 0, HttpOptions(**options)
        )
        self.call(self.frontend.start())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return self.frontend.url

    def close(self) -> None:
        self.call(self.frontend.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(http_server: str) -> Iterator[tuple[Served, FakeCore]]:
    core = FakeCore()
    server = Served(core, http_server, max_body_bytes=1 << 20)
    yield server, core
    server.close()


@pytest.fixture
def client(served: tuple[Served, FakeCore]) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(served[0].url) as c:
        yield c


def _addsub_inputs(binary: bool) -> tuple[list[httpclient.InferInput], np.ndarray, np.ndarray]:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    inputs = [httpclient.InferInput("INPUT0", [2, 4], "FP32")]
    inputs.append(httpclient.InferInput("INPUT1", [2, 4], "FP32"))
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs, a, b


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_binary_and_json(client: Any, binary_in: bool, binary_out: bool) -> None:
    inputs, a, b = _addsub_inputs(binary_in)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out),
    ]
    result = client.infer("addsub", inputs, outputs=outputs, request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.get_response()["id"] == "r-7"


def test_infer_without_requested_outputs_gets_all_binary(client: Any, served: Any) -> None:
    inputs, a, b = _addsub_inputs(True)
    result = client.infer("addsub", inputs, model_version="1", priority=3, timeout=2000)
    response = result.get_response()
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    last = served[1].requests[-1]
    assert (last.priority, last.timeout_us, last.model_version) == (3, 2000, "1")


def test_infer_custom_parameters_and_compression(client: Any, served: Any) -> None:
    inputs, a, b = _addsub_inputs(True)
    result = client.infer(
        "addsub",
        inputs,
        parameters={"tag": "x", "n": 2},
        request_compression_algorithm="gzip",
        response_compression_algorithm="deflate",
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert served[1].requests[-1].parameters == {"tag": "x", "n": 2}


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_round_trip_including_empty_and_non_ascii(client: Any, binary: bool) -> None:
    values = np.array([["héllo", "", "日本語"]], dtype=np.object_)
    inp = httpclient.InferInput("IN", [1, 3], "BYTES")
    inp.set_data_from_numpy(values, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUT", binary_data=binary)
    got = client.infer("echo", [inp], outputs=[out]).as_numpy("OUT")
    decoded = [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)]
    assert decoded == ["héllo", "", "日本語"] and got.shape == (1, 3)


def test_fp16_binary_works_and_json_output_is_refused(client: Any) -> None:
    x = np.array([[1.5, -2.0, 0.25]], dtype=np.float16)
    inp = httpclient.InferInput("X", [1, 3], "FP16")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("half", [inp]).as_numpy("Y"), x * 2)
    json_out = [httpclient.InferRequestedOutput("Y", binary_data=False)]
    with pytest.raises(InferenceServerException, match="FP16 data via JSON") as info:
        client.infer("half", [inp], outputs=json_out)
    assert info.value.status() == "400"


def test_errors_map_through_the_status_table(client: Any) -> None:
    inputs, _, _ = _addsub_inputs(True)
    with pytest.raises(InferenceServerException, match="unknown model: 'nope'") as info:
        client.infer("nope", inputs)
    assert info.value.status() == "404"
    x = httpclient.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match="bad batch") as info:
        client.infer("boom", [x])
    assert info.value.status() == "500"
    with pytest.raises(InferenceServerException, match="expects inputs") as info:
        client.infer("addsub", inputs[:1])
    assert info.value.status() == "400"


def test_health_metadata_config_and_ready(client: Any, served: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("addsub") and client.is_model_ready("addsub", "1")
    assert not client.is_model_ready("addsub", "2") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "headrace" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("addsub")
    assert model["versions"] == ["1"] and model["platform"] == "python"
    assert model["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}
    served[1].is_ready = False
    try:
        assert not client.is_server_ready()
    finally:
        served[1].is_ready = True


def test_model_config_endpoint(served: Any) -> None:
    pytest.importorskip("google.protobuf.json_format")
    try:
        from headrace.config import config_to_json

        config_to_json(ModelConfig(name="x"))
    except NotImplementedError:
        pytest.skip("config_to_json is not implemented yet")
    with httpclient.InferenceServerClient(served[0].url) as c:
        config = c.get_model_config("addsub")
    assert config["name"] == "addsub" and config["max_batch_size"] == 8


def test_statistics(client: Any) -> None:
    stats = client.get_inference_statistics("addsub")["model_stats"]
    assert len(stats) == 1 and stats[0]["name"] == "addsub"
    assert stats[0]["inference_stats"]["success"] == {"count": 3, "ns": 999}
    assert stats[0]["batch_stats"][0]["compute_infer"] == {"count": 3, "ns": 300}
    assert stats[0]["last_inference"] == 17
    every = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} == {"addsub", "echo", "half", "gate", "boom"}
    assert client.get_inference_statistics("addsub", "1")["model_stats"][0]["version"] == "1"
    with pytest.raises(InferenceServerException) as info:
        client.get_inference_statistics("nope")
    assert info.value.status() == "404"


def test_repository_index_load_unload(client: Any, served: Any) -> None:
    index = client.get_model_repository_index()
    assert {"name": "broken", "state": "UNAVAILABLE", "reason": "no model file"} in index
    assert {"name": "addsub", "version": "1", "state": "READY"} in index
    client.load_model("addsub")
    client.load_model(
        "newmodel", config='{"backend": "python"}', files={"file:1/model.py": b"print(1)\n"}
    )
    assert served[1].loaded[-2:] == [
        ("addsub", None, None),
        ("newmodel", '{"backend": "python"}', {"file:1/model.py": b"print(1)\n"}),
    ]
    client.unload_model("echo", unload_dependents=True)
    assert served[1].unloaded[-1] == ("echo", True)
    with pytest.raises(InferenceServerException) as info:
        client.unload_model("nope")
    assert info.value.status() == "404"


def test_aio_client(served: Any) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(served[0].url) as c:
            assert await c.is_server_live()
            assert await c.is_model_ready("addsub")
            a = np.arange(4, dtype=np.float32).reshape(1, 4)
            inputs = [aioclient.InferInput("INPUT0", [1, 4], "FP32")]
            inputs.append(aioclient.InferInput("INPUT1", [1, 4], "FP32"))
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(a, binary_data=False)
            results = await asyncio.gather(*(c.infer("addsub", inputs) for _ in range(8)))
            for r in results:
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a * 2)
            assert (await c.get_model_metadata("echo"))["name"] == "echo"
            stats = await c.get_inference_statistics("half")
            assert stats["model_stats"][0]["name"] == "half"

    asyncio.run(run())


def test_async_infer_sync_client(client: Any) -> None:
    inputs, a, b = _addsub_inputs(True)
    handles = [client.async_infer("addsub", inputs) for _ in range(4)]
    for h in handles:
        np.testing.assert_array_equal(h.get_result().as_numpy("OUTPUT0"), a + b)


# --- raw requests: malformed bodies, each followed by one that still works --------------


def _post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _get(url: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _good_json_request() -> bytes:
    data = [0.0, 1.0, 2.0, 3.0]
    return json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": data},
                {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": data},
            ]
        }
    ).encode()


def _check_still_serving(url: str) -> None:
    status, headers, body = _post(url, "/v2/models/addsub/infer", _good_json_request())
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    out = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert out["OUTPUT0"]["data"] == [0.0, 2.0, 4.0, 6.0]


def _binary_request(declared: int, actual: int, header_len: int | None = None) -> tuple:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                },
                {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
            ]
        }
    ).encode()
    length = len(header) if header_len is None else header_len
    return header + b"\0" * actual, {"Inference-Header-Content-Length": str(length)}


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b'{"inputs": [', {}, 400, "failed to parse the request JSON"),
        (b"", {}, 400, "Raw request must only have 1 input (found 1) to be deduced but got 2"),
        (*_binary_request(16, 8), 400, "expecting 8 additional bytes for model 'addsub'"),
        (*_binary_request(16, 20), 400, "unexpected additional input data"),
        (*_binary_request(12, 12), 400, "Expected 16, got 12"),
        (*_binary_request(16, 16, header_len=10_000), 400, "inference header size"),
        (b"{}", {"Inference-Header-Content-Length": "abc"}, 400, "Unable to parse"),
        (b"garbage", {"Content-Encoding": "gzip"}, 400, "failed to decompress"),
        (b"x", {"Content-Encoding": "br"}, 501, "Unsupported compression type"),
        (b"\0" * 10, {"Inference-Header-Content-Length": "0"}, 400, "2 inputs in 'addsub'"),
        (b"x" * ((1 << 20) + 1), {}, 400, "exceeds the limit of 1048576 bytes"),
        (
            gzip.compress(b" " * ((1 << 20) + 10)),
            {"Content-Encoding": "gzip"},
            400,
            "exceeds the limit",
        ),
    ],
    ids=[
        "truncated-json",
        "empty-body",
        "binary-short",
        "binary-extra",
        "binary-size-vs-shape",
        "header-length-too-big",
        "header-length-nan",
        "bad-gzip",
        "unknown-encoding",
        "raw-needs-one-input",
        "too-large",
        "gzip-bomb",
    ],
)
def test_malformed_requests_get_clear_errors(
    served: Any, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    url = served[0].url
    got, _, raw = _post(url, "/v2/models/addsub/infer", body, headers)
    assert got == status
    assert fragment in json.loads(raw)["error"]
    _check_still_serving(url)


def _post_chunked(url: str, path: str, parts: list[bytes]) -> tuple[int, bytes]:
    """POST with ``Transfer-Encoding: chunked``: no Content-Length for the server to check."""
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=iter(parts), encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_chunked_bodies_are_read_and_bounded(served: Any) -> None:
    url = served[0].url
    body = _good_json_request()
    status, raw = _post_chunked(url, "/v2/models/addsub/infer", [body[:10], body[10:]])
    assert status == 200 and json.loads(raw)["model_name"] == "addsub"
    status, raw = _post_chunked(url, "/v2/models/addsub/infer", [b" " * (1 << 19)] * 3)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error == "request body exceeds the limit of 1048576 bytes (--max-body-bytes)"
    _check_still_serving(url)


def _raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as raw bytes on a fresh connection and read one response (the server
    may answer, and stop reading, before the request is all sent)."""
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reader = sock.makefile("rb")
        response = http.client.HTTPResponse(sock)
        response.fp = reader
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def _chunked(path: str, chunks: list[bytes], headers: dict[str, str], end: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + (b"0\r\n\r\n" if end else b"")


def test_chunked_binary_compressed_and_control_bodies(served: Any) -> None:
    """Bodies sent with Transfer-Encoding: chunked, in raw bytes: binary tensors whose JSON
    header is cut across chunks, a gzip body, a control endpoint; as Triton 2.51 takes them."""
    url = served[0].url
    body, headers = _binary_request(16, 16)
    body = body[:-16] + np.arange(4, dtype=np.float32).tobytes()
    request = _chunked("/v2/models/addsub/infer", [body[:7], body[7:50], body[50:]], headers)
    status, _, raw = _raw_exchange(url, request)
    assert status == 200
    out = {o["name"]: o for o in json.loads(raw)["outputs"]}
    assert out["OUTPUT0"]["data"] == [1.0, 2.0, 3.0, 4.0]
    packed = gzip.compress(_good_json_request())
    request = _chunked(
        "/v2/models/addsub/infer", [packed[:5], packed[5:]], {"Content-Encoding": "gzip"}
    )
    status, _, raw = _raw_exchange(url, request)
    assert status == 200 and json.loads(raw)["model_name"] == "addsub"
    request = _chunked("/v2/repository/index", [b'{"ready"', b": true}"], {})
    status, _, raw = _raw_exchange(url, request)
    assert status == 200 and json.loads(raw)[0]["name"] == "addsub"
    _check_still_serving(url)


def test_chunked_body_limit_is_enforced_while_reading(served: Any) -> None:
    """Past --max-body-bytes the server answers at once: the body never ends here (no last
    chunk), so an answer proves it stopped reading rather than buffering to the end."""
    url = served[0].url
    request = _chunked("/v2/models/addsub/infer", [b" " * (1 << 19)] * 3, {}, end=False)
    status, _, raw = _raw_exchange(url, request)
    assert status == 400
    assert json.loads(raw)["error"].startswith("request body exceeds the limit of 1048576 bytes")
    _check_still_serving(url)


def test_empty_body_is_a_raw_request_as_triton_reads_it(served: Any) -> None:
    server, core = served
    server.loop.call_soon_threadsafe(core.gate.set)  # 'gate' answers at once from now on
    status, _, raw = _post(server.url, "/v2/models/gate/infer", b"")
    assert status == 400  # gate's FP32 [1] needs 4 bytes
    assert json.loads(raw)["error"].startswith(
        "input byte size mismatch for input 'X' for model 'gate'. Expected 4, got 0"
    )
    status, _, raw = _post(server.url, "/v2/models/echo/infer", b"")
    assert status == 400  # BYTES dims [-1]: Triton wants dims [1] for a raw BYTES input
    error = json.loads(raw)["error"]
    assert error.startswith("For BYTE datatype raw input 'IN', the model must have input shape [1]")


def test_deeply_nested_json_bodies_get_a_400(served: Any) -> None:
    url = served[0].url
    for depth in (1000, 100_000):
        nested = b"[" * depth + b"]" * depth
        for path, body in (
            ("/v2/models/addsub/infer", b'{"inputs": ' + nested + b"}"),
            ("/v2/repository/index", b'{"ready": ' + nested + b"}"),
            ("/v2/repository/models/addsub/load", b'{"parameters": ' + nested + b"}"),
        ):
            status, _, raw = _post(url, path, body)
            assert status == 400, (path, depth, raw[:200])
            assert len(json.loads(raw)["error"]) < 400
    _check_still_serving(url)


def test_unknown_routes_and_methods(served: Any) -> None:
    url = served[0].url
    status, body = _get(url, "/v2/nothing/here")
    assert status == 404 and json.loads(body) == {"error": "Not Found"}
    status, body = _get(url, "/v2/models/addsub/infer")
    assert status == 405 and json.loads(body) == {"error": "Method Not Allowed"}
    status, _, body = _post(url, "/v2/repository/index", b"[1]")
    assert status == 400 and "must be an object" in json.loads(body)["error"]
    status, _, body = _post(url, "/v2/repository/models/x/load", b'{"parameters": {"k": "v"}}')
    assert status == 400 and "unknown load parameter 'k'" in json.loads(body)["error"]
    _check_still_serving(url)


def test_raw_binary_request(served: Any) -> None:
    server, core = served
    server.loop.call_soon_threadsafe(core.gate.set)  # 'gate' answers at once from now on
    x = np.array([2.5], dtype=np.float32)
    status, headers, body = _post(
        server.url, "/v2/models/gate/infer", x.tobytes(), {"Inference-Header-Content-Length": "0"}
    )
    length = int(headers["Inference-Header-Content-Length"])
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    header = json.loads(body[:length])
    assert header["outputs"][0]["shape"] == [1, 1]
    assert body[length:] == x.tobytes()


def test_bytes_binary_output_framing_on_the_wire(served: Any) -> None:
    payload = struct.pack("<I", 2) + "é".encode() + struct.pack("<I", 0)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IN",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(payload)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    status, headers, body = _post(
        served[0].url,
        "/v2/models/echo/infer",
        header + payload,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    length = int(headers["Inference-Header-Content-Length"])
    assert status == 200 and body[length:] == payload


def test_graceful_stop_finishes_in_flight_requests(http_server: str) -> None:
    core = FakeCore()
    server = Served(core, http_server)
    url = server.url
    result: dict[str, Any] = {}

    def call() -> None:
        body = json.dumps(
            {"inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32", "data": [7.0]}]}
        ).encode()
        result["reply"] = _post(url, "/v2/models/gate/infer", body)

    worker = threading.Thread(target=call)
    worker.start()
    assert core.gate_entered.wait(10)
    stopping = asyncio.run_coroutine_threadsafe(server.frontend.stop(), server.loop)
    # The listening socket closes first: a probe is refused, or (when it raced the close and
    # was accepted but never read) times out quickly without holding up the in-flight reply.
    with pytest.raises(OSError):
        for _ in range(100):
            if stopping.done():
                break
            _get(url, "/v2/health/live", timeout=1)
    server.loop.call_soon_threadsafe(core.gate.set)
    stopping.result(10)
    worker.join(10)
    status, _, body = result["reply"]
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [7.0]
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(10)
    server.loop.close()


# --- the real InferenceServer behind the frontend ------------------------------------------


@pytest.fixture(scope="module")
def real(http_server: str) -> Iterator[Served]:
    server_fakes = pytest.importorskip("server_fakes")
    from headrace.server.core import InferenceServer as RealServer

    core = RealServer()
    server = Served(core, http_server)

    async def setup() -> None:
        await core.start()
        await core.register_model(
            "scale", server_fakes.scale_factory(), server_fakes.scale_config()
        )

    server.call(setup())
    yield server
    server.call(core.stop())
    server.close()


@pytest.mark.parametrize("binary", [True, False])
def test_real_core_infer(real: Served, binary: bool) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with httpclient.InferenceServerClient(real.url) as c:
        inp = httpclient.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
        result = c.infer("scale", [inp], outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("y"), 2 * x)
        assert result.as_numpy("z") is None


def test_real_core_metadata_stats_index_and_errors(real: Served) -> None:
    with httpclient.InferenceServerClient(real.url) as c:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("scale")
        meta = c.get_model_metadata("scale")
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        config = c.get_model_config("scale")
        assert config["name"] == "scale" and config["max_batch_size"] == 8
        inp = httpclient.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        c.infer("scale", [inp])
        stats = c.get_inference_statistics("scale")["model_stats"]
        assert stats[0]["inference_count"] >= 1
        assert stats[0]["inference_stats"]["success"]["count"] >= 1
        index = c.get_model_repository_index()
        assert any(e["name"] == "scale" and e.get("state") == "READY" for e in index)
        with pytest.raises(InferenceServerException) as info:
            c.infer("missing", [inp])
        assert info.value.status() == "404"
        bad = httpclient.InferInput("x", [1, 5], "FP32")
        bad.set_data_from_numpy(np.ones((1, 5), np.float32))
        with pytest.raises(InferenceServerException) as info:
            c.infer("scale", [bad])
        assert info.value.status() == "400" and "x" in info.value.message()
        np.testing.assert_array_equal(c.infer("scale", [inp]).as_numpy("z"), np.full((1, 4), 2))


def test_frontends_that_reuse_the_port_share_it(http_server: str) -> None:
    core = FakeCore()
    first = Served(core, http_server, reuse_port=True)
    try:
        port = first.frontend.port
        second = make_http_frontend(
            http_server, core, "127.0.0.1", port, HttpOptions(reuse_port=True)
        )
        first.call(second.start())
        try:
            assert second.port == first.frontend.port
            for _ in range(4):  # fresh connections land on either socket
                _check_still_serving(first.url)
            url = first.url
            first.call(first.frontend.stop())  # the port stays served: the second listens on it
            _check_still_serving(url)
        finally:
            first.call(second.stop())
    finally:
        first.close()
    taken = Served(core, http_server)
    try:
        with pytest.raises(OSError):
            port = taken.frontend.port
            taken.call(make_http_frontend(http_server, core, "127.0.0.1", port).start())
    finally:
        taken.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_answered_not_cut_off(served: Any, chunked: bool) -> None:
    """The server answers 400 early, then reads and drops the rest of the body before it
    closes (a lingering close): a client still sending reads the 400 and its message, never
    a broken pipe. Eight times the limit outruns the socket buffers, so a server that stopped
    reading would reset the connection under the client. Twenty tries, none may fail."""
    url = served[0].url
    body = b" " * (8 << 20)
    expected = "exceeds the limit of 1048576 bytes (--max-body-bytes)"
    for _ in range(20):
        if chunked:
            status, raw = _post_chunked(url, "/v2/models/addsub/infer", [body[: 1 << 20]] * 8)
        else:
            status, _, raw = _post(url, "/v2/models/addsub/infer", body)
        assert status == 400
        assert expected in json.loads(raw)["error"]
    _check_still_serving(url)
