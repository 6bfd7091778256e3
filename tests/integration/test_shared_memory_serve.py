"""Triton's shared memory extensions end to end: a real ``headrace serve`` process, unmodified
``tritonclient.http`` / ``tritonclient.grpc`` and ``tritonclient.utils.shared_memory``.

The expected answers (response shapes, status lists, error texts and codes) are what NVIDIA
Triton 2.51 gave for the same requests (``../shared/tools/tritonserver``), except where
headrace answers a client's mistake with 400 / INVALID_ARGUMENT and Triton with 500 /
INTERNAL (a key that does not exist, an output window too small for the output).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from serve_process import ServeProcess, start_server
from tritonclient.utils import (
    InferenceServerException,
    serialize_byte_tensor,
    serialized_byte_size,
)

_TWIN_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            outputs = [pb_utils.Tensor("OUTPUT0", x), pb_utils.Tensor("OUTPUT1", x + 1)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""
_TWIN_CONFIG = """\
name: "twin"
backend: "python"
max_batch_size: 0
input { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] }
"""
_TEXT_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())
                ]
            )
            for r in requests
        ]
"""
_TEXT_CONFIG = """\
name: "text"
backend: "python"
max_batch_size: 0
input { name: "IN" data_type: TYPE_STRING dims: [ -1 ] }
output { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] }
"""
X = np.arange(4, dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("shm")
    repository = workdir / "repo"
    for name, config, code in (("twin", _TWIN_CONFIG, _TWIN_PY), ("text", _TEXT_CONFIG, _TEXT_PY)):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (repository / name / "1" / "model.py").write_text(code, encoding="utf-8")
    process = start_server(repository, workdir, ["--http-server", http_server])
    yield process
    assert process.stop() == 0, process.log_tail()


class Regions:
    """Client-side shared memory objects (destroyed after the test) and their unique keys."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def create(self, byte_size: int) -> tuple[str, Any]:
        key = f"/headrace-it-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key, key, byte_size)
        self.handles.append(handle)
        return key, handle


@pytest.fixture
def regions(server: ServeProcess) -> Iterator[Regions]:
    made = Regions()
    yield made
    httpclient.InferenceServerClient(server.http_url).unregister_system_shared_memory()
    for handle in made.handles:
        shm.destroy_shared_memory_region(handle)


@pytest.fixture
def http(server: ServeProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.http_url)
    yield client
    client.close()


@pytest.fixture
def grpc(server: ServeProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


def _io(module: Any, regions: Regions, client: Any) -> tuple[list[Any], list[Any], Any, Any]:
    """INPUT0 from region 'in', OUTPUT0 into region 'out' at offset 8, OUTPUT1 over the wire."""
    in_key, in_handle = regions.create(64)
    out_key, out_handle = regions.create(64)
    shm.set_shared_memory_region(in_handle, [X])
    client.register_system_shared_memory("in", in_key, 64)
    client.register_system_shared_memory("out", out_key, 64)
    x = module.InferInput("INPUT0", [4], "FP32")
    x.set_shared_memory("in", 16)
    y0 = module.InferRequestedOutput("OUTPUT0")
    y0.set_shared_memory("out", 16, offset=8)
    y1 = module.InferRequestedOutput("OUTPUT1")
    return [x], [y0, y1], in_handle, out_handle


def _keeps_serving(client: Any, module: Any) -> None:
    x = module.InferInput("INPUT0", [4], "FP32")
    x.set_data_from_numpy(X)
    np.testing.assert_array_equal(client.infer("twin", [x]).as_numpy("OUTPUT1"), X + 1)


def test_http_inputs_and_outputs_through_shared_memory(
    http: httpclient.InferenceServerClient, regions: Regions
) -> None:
    inputs, outputs, _, out_handle = _io(httpclient, regions, http)
    result = http.infer("twin", inputs, outputs=outputs)
    assert result.get_output("OUTPUT0") == {"name": "OUTPUT0", "datatype": "FP32", "shape": [4]}
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X + 1)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out_handle, np.float32, [4], offset=8), X
    )
    status = http.get_system_shared_memory_status()
    assert [(s["name"], s["offset"], s["byte_size"]) for s in status] == [
        ("in", 0, 64),
        ("out", 0, 64),
    ]
    assert http.get_system_shared_memory_status("in")[0]["key"].startswith("/headrace-it-")
    http.unregister_system_shared_memory("in")
    assert [s["name"] for s in http.get_system_shared_memory_status()] == ["out"]
    with pytest.raises(InferenceServerException) as exc:
        http.infer("twin", inputs, outputs=outputs)
    assert exc.value.status() == "404"
    assert exc.value.message() == "Unable to find shared memory region: 'in'"
    http.unregister_system_shared_memory()
    assert http.get_system_shared_memory_status() == []


def test_grpc_inputs_and_outputs_through_shared_memory(
    grpc: grpcclient.InferenceServerClient, regions: Regions
) -> None:
    inputs, outputs, _, out_handle = _io(grpcclient, regions, grpc)
    result = grpc.infer("twin", inputs, outputs=outputs)
    response = result.get_response()
    assert [(o.name, list(o.shape)) for o in response.outputs] == [
        ("OUTPUT0", [4]),
        ("OUTPUT1", [4]),
    ]
    assert response.raw_output_contents[0] == b""  # the data is in the region, as Triton does
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X + 1)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out_handle, np.float32, [4], offset=8), X
    )
    status = grpc.get_system_shared_memory_status()
    assert sorted(status.regions) == ["in", "out"] and status.regions["in"].byte_size == 64
    assert grpc.get_system_shared_memory_status("out").regions["out"].name == "out"
    grpc.unregister_system_shared_memory("out")
    assert list(grpc.get_system_shared_memory_status().regions) == ["in"]
    grpc.unregister_system_shared_memory()
    assert not grpc.get_system_shared_memory_status().regions


def test_grpc_stream_through_shared_memory(
    grpc: grpcclient.InferenceServerClient, regions: Regions
) -> None:
    inputs, outputs, _, out_handle = _io(grpcclient, regions, grpc)
    results: list[Any] = []
    grpc.start_stream(callback=lambda result, error: results.append((result, error)))
    try:
        grpc.async_stream_infer("twin", inputs, outputs=outputs, request_id="s1")
    finally:
        grpc.stop_stream()  # waits for the stream's responses
    ((result, error),) = results
    assert error is None, error
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X + 1)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out_handle, np.float32, [4], offset=8), X
    )


def test_bytes_tensors_through_shared_memory(
    http: httpclient.InferenceServerClient, regions: Regions
) -> None:
    text = np.array([b"shared", b"memory!"], dtype=np.object_)
    serialized = serialize_byte_tensor(text)
    wire = serialized_byte_size(serialized)
    key, handle = regions.create(64)
    shm.set_shared_memory_region(handle, [serialized])
    http.register_system_shared_memory("text", key, 64)
    x = httpclient.InferInput("IN", [2], "BYTES")
    x.set_shared_memory("text", wire)
    y = httpclient.InferRequestedOutput("OUT")
    y.set_shared_memory("text", 64 - 32, offset=32)
    result = http.infer("text", [x], outputs=[y])
    assert result.get_output("OUT") == {"name": "OUT", "datatype": "BYTES", "shape": [2]}
    assert shm.get_contents_as_numpy(handle, np.object_, [2], offset=32).tolist() == text.tolist()


def _post(server: ServeProcess, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{server.http_url}/{path}", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _bad_calls(module: Any, client: Any, key: str) -> list[tuple[str, str, Any]]:
    """(kind of error, start of Triton's message, the call) for every refused request, with
    'in' (64 bytes) and 'out' (32 bytes) registered."""
    missing = f"/headrace-missing-{uuid.uuid4().hex[:8]}"
    calls: list[tuple[str, str, Any]] = [
        (
            "taken",
            "shared memory region 'in' already in manager",
            lambda: client.register_system_shared_memory("in", key, 64),
        ),
        (
            "internal",  # Triton answers a key it cannot open with INTERNAL (HTTP 500)
            f"Unable to open shared memory region: '{missing}'",
            lambda: client.register_system_shared_memory("m", missing, 64),
        ),
        (
            "bad",
            "failed to register shared memory region 'big': offset 0 + byte_size 128",
            lambda: client.register_system_shared_memory("big", key, 128),
        ),
        (
            "missing",
            "Unable to find system shared memory region: 'zzz'",
            lambda: client.get_system_shared_memory_status("zzz"),
        ),
    ]
    for region, size, offset, what, message in (
        ("zzz", 16, 0, "missing", "Unable to find shared memory region: 'zzz'"),
        ("in", 16, 56, "bad", "Invalid offset + byte size for shared memory region: 'in'"),
        (
            "in",
            12,
            0,
            "bad",
            "input byte size mismatch for input 'INPUT0' for model 'twin'. Expected 16, got 12",
        ),
    ):
        x = module.InferInput("INPUT0", [4], "FP32")
        x.set_shared_memory(region, size, offset)
        calls.append((what, message, lambda x=x: client.infer("twin", [x])))
    good = module.InferInput("INPUT0", [4], "FP32")
    good.set_shared_memory("in", 16)
    for region, size, offset, what, message in (
        ("zzz", 16, 0, "missing", "Unable to find shared memory region: 'zzz'"),
        ("out", 16, 24, "bad", "Invalid offset + byte size for shared memory region: 'out'"),
        (
            "out",
            8,
            0,
            "bad",
            "shared memory size specified with the request for output 'OUTPUT0' (8 bytes) "
            "should be at least 16 bytes to hold the results",
        ),
    ):
        y = module.InferRequestedOutput("OUTPUT0")
        y.set_shared_memory(region, size, offset)
        calls.append((what, message, lambda y=y: client.infer("twin", [good], outputs=[y])))
    return calls


def test_bad_requests_are_refused_and_the_server_keeps_serving(
    server: ServeProcess,
    http: httpclient.InferenceServerClient,
    grpc: grpcclient.InferenceServerClient,
    regions: Regions,
) -> None:
    key, _ = regions.create(64)
    http.register_system_shared_memory("in", key, 64)
    http.register_system_shared_memory("out", key, 32, offset=32)
    codes = {
        httpclient: {"bad": "400", "missing": "404", "taken": "400", "internal": "500"},
        grpcclient: {
            "bad": "StatusCode.INVALID_ARGUMENT",
            "internal": "StatusCode.INTERNAL",
            "missing": "StatusCode.NOT_FOUND",
            "taken": "StatusCode.ALREADY_EXISTS",
        },
    }
    for module, client in ((httpclient, http), (grpcclient, grpc)):
        for what, message, call in _bad_calls(module, client, key):
            with pytest.raises(InferenceServerException) as exc:
                call()
            assert exc.value.status() == codes[module][what], (message, exc.value)
            assert exc.value.message().startswith(message), exc.value.message()
            _keeps_serving(client, module)
    status, body = _post(
        server,
        "v2/models/twin/infer",
        {
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": X.tolist()}],
            "outputs": [
                {
                    "name": "OUTPUT0",
                    "parameters": {
                        "shared_memory_region": "out",
                        "shared_memory_byte_size": 16,
                        "binary_data": True,
                    },
                }
            ],
        },
    )
    assert (status, body) == (
        400,
        {"error": "Output can't set both 'shared_memory_region' and 'binary_data'"},
    )
    status, body = _post(
        server, "v2/systemsharedmemory/region/k/register", {"offset": 0, "byte_size": 16}
    )
    assert (status, body) == (400, {"error": "Shared memory register request has no 'key' field"})
    assert [s["name"] for s in http.get_system_shared_memory_status()] == ["in", "out"]


def test_cuda_shared_memory_without_a_gpu(
    server: ServeProcess,
    http: httpclient.InferenceServerClient,
    grpc: grpcclient.InferenceServerClient,
) -> None:
    from headrace.server.memory.cuda import cuda_supported

    if cuda_supported():
        pytest.skip("this machine has a CUDA device")
    assert "cuda_shared_memory" not in http.get_server_metadata()["extensions"]
    assert "system_shared_memory" in http.get_server_metadata()["extensions"]
    assert http.get_cuda_shared_memory_status() == []
    assert not grpc.get_cuda_shared_memory_status().regions
    with pytest.raises(InferenceServerException) as exc:
        grpc.register_cuda_shared_memory("c", b"\1" * 64, 0, 16)
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert (
        "failed to register shared memory region 'c': CUDA shared memory needs a CUDA device"
        in exc.value.message()
    )
    with pytest.raises(InferenceServerException) as exc:
        http.register_cuda_shared_memory("c", b"\1" * 64, 0, 16)
    assert exc.value.status() == "400"
    status, body = _post(
        server, "v2/cudasharedmemory/region/c/register", {"device_id": 0, "byte_size": 16}
    )
    assert (status, body) == (
        400,
        {"error": "Shared memory register request has no 'raw_handle' field"},
    )
    http.unregister_cuda_shared_memory("c")  # unknown: fine, as in Triton
    grpc.unregister_cuda_shared_memory()


@pytest.mark.gpu
def test_cuda_shared_memory_round_trip(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    import tritonclient.utils.cuda_shared_memory as cudashm

    assert "cuda_shared_memory" in http.get_server_metadata()["extensions"]
    handle_in = cudashm.create_shared_memory_region("cin", 64, 0)
    handle_out = cudashm.create_shared_memory_region("cout", 64, 0)
    try:
        cudashm.set_shared_memory_region(handle_in, [X])
        grpc.register_cuda_shared_memory("cin", cudashm.get_raw_handle(handle_in), 0, 64)
        http.register_cuda_shared_memory("cout", cudashm.get_raw_handle(handle_out), 0, 64)
        status = http.get_cuda_shared_memory_status()
        assert [(s["name"], s["device_id"], s["byte_size"]) for s in status] == [
            ("cin", 0, 64),
            ("cout", 0, 64),
        ]
        for module, client in ((httpclient, http), (grpcclient, grpc)):
            x = module.InferInput("INPUT0", [4], "FP32")
            x.set_shared_memory("cin", 16)
            y = module.InferRequestedOutput("OUTPUT1")
            y.set_shared_memory("cout", 16, offset=16)
            client.infer("twin", [x], outputs=[y])
            out = cudashm.get_contents_as_numpy(handle_out, np.float32, [8])
            np.testing.assert_array_equal(out[4:], X + 1)
        grpc.unregister_cuda_shared_memory()
        assert http.get_cuda_shared_memory_status() == []
    finally:
        cudashm.destroy_shared_memory_region(handle_in)
        cudashm.destroy_shared_memory_region(handle_out)
