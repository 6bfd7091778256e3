"""``headrace serve`` on the examples repository, driven by unmodified tritonclient.

One real server process (see serve_process.py) serves a copy of the examples repository plus
an FP16 identity python-backend model; every client flavour Triton ships (http, grpc, their
aio variants) talks to it. Each result is checked against a reference computed here: numpy for
the python models, onnxruntime run directly on the repository's ``mlp/1/model.onnx``.
"""

from __future__ import annotations

import asyncio
import queue
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from google.protobuf import json_format, text_format
from serve_process import (
    ServeProcess,
    examples_repository,
    onnx_reference,
    start_server,
    write_fp16_identity,
)
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

import headrace

FLAVOURS = ("http", "grpc")
WAIT_S = 30.0  # the most any single response may take on a loaded 2-core machine
BATCHING_DELAY_US = 200_000
"""Queue delay of the batching test's model: long enough that a burst of requests always
meets in the queue, however busy the machine (a full batch of 8 leaves at once)."""
BYTES_ROWS = [b"", "h\u00e9llo w\u00f6rld \u2713".encode(), b"plain ascii", b"\x00\xff\x10"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("serve-examples")
    repository = workdir / "repo"
    shutil.copytree(examples_repository(tmp_path_factory), repository)
    write_fp16_identity(repository)
    write_fp16_identity(repository, "batched_identity", batching_delay_us=BATCHING_DELAY_US)
    process = start_server(repository, workdir, ["--http-server", http_server])
    yield process
    code = process.stop()
    assert code == 0, f"headrace serve exited with {code} after SIGTERM\n{process.log_tail()}"


@pytest.fixture(scope="module")
def http(server: ServeProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.http_url, concurrency=4)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server: ServeProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest, http: Any, grpc: Any) -> tuple[ModuleType, Any]:
    """(tritonclient module, its client): the same test runs over HTTP and over gRPC."""
    if request.param == "http":
        return httpclient, http
    return grpcclient, grpc


@pytest.fixture(scope="module")
def mlp_reference(server: ServeProcess) -> Any:
    return onnx_reference(server.repository / "mlp" / "1" / "model.onnx")


# -- helpers ----------------------------------------------------------------------------------


def make_input(mod: ModuleType, name: str, array: np.ndarray, **kwargs: Any) -> Any:
    """A tritonclient InferInput holding ``array``; kwargs go to set_data_from_numpy."""
    tensor = mod.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, **kwargs)
    return tensor


def simple_inputs(mod: ModuleType, seed: int, batch: int = 2, **kwargs: Any) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1000, size=(batch, 16), dtype=np.int32)
    b = rng.integers(-1000, 1000, size=(batch, 16), dtype=np.int32)
    return a, b, [make_input(mod, "INPUT0", a, **kwargs), make_input(mod, "INPUT1", b, **kwargs)]


def mlp_batch(seed: int, batch: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 64)).astype(np.float32)


def disk_config(server: ServeProcess, model: str) -> model_config_pb2.ModelConfig:
    text = (server.repository / model / "config.pbtxt").read_text(encoding="utf-8")
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def served_config(client: Any, model: str) -> model_config_pb2.ModelConfig:
    """The served config as a ModelConfig message, whichever protocol returned it."""
    reply = client.get_model_config(model)
    if isinstance(reply, dict):
        return json_format.ParseDict(
            reply, model_config_pb2.ModelConfig(), ignore_unknown_fields=True
        )
    return reply.config


def as_dict(reply: Any) -> dict[str, Any]:
    """A tritonclient reply as a dict: HTTP already is one, gRPC gives protobuf messages."""
    if isinstance(reply, dict):
        return reply
    return json_format.MessageToDict(reply, preserving_proto_field_name=True)


def stats(client: Any, model: str) -> dict[str, int]:
    """Counts from get_inference_statistics (absent protobuf fields read as 0)."""
    model_stats = as_dict(client.get_inference_statistics(model, "1"))["model_stats"][0]
    inference = model_stats.get("inference_stats", {})
    return {
        "inference": int(model_stats.get("inference_count", 0)),
        "execution": int(model_stats.get("execution_count", 0)),
        "success": int(inference.get("success", {}).get("count", 0)),
    }


def check_simple(mod: ModuleType, client: Any, seed: int, **kwargs: Any) -> None:
    a, b, inputs = simple_inputs(mod, seed, **kwargs)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def metric_value(text: str, name: str, labels: str) -> float:
    """The value of ``name{labels}`` in a Prometheus exposition, or a test failure."""
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    if match is None:
        pytest.fail(f"{name}{{{labels}}} not found in the metrics:\n{text[:3000]}")
    return float(match.group(1))


# -- health, metadata, config -----------------------------------------------------------------


def test_health_and_metadata(flavour: tuple[ModuleType, Any], server: ServeProcess) -> None:
    _, client = flavour
    assert client.is_server_live()
    assert client.is_server_ready()
    for model in ("simple", "mlp", "identity_bytes", "fp16_identity"):
        assert client.is_model_ready(model), model
    assert not client.is_model_ready("no_such_model")

    meta = as_dict(client.get_server_metadata())
    assert meta["name"] == "triton"
    assert meta["version"] == headrace.__version__
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(meta["extensions"])

    model_meta = as_dict(client.get_model_metadata("simple"))
    assert model_meta["name"] == "simple"
    assert model_meta["versions"] == ["1"]
    for key in ("inputs", "outputs"):
        tensors = [
            (t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in model_meta[key]
        ]
        prefix = "INPUT" if key == "inputs" else "OUTPUT"
        assert tensors == [(f"{prefix}0", "INT32", [-1, 16]), (f"{prefix}1", "INT32", [-1, 16])]


@pytest.mark.parametrize("model", ["mlp", "simple", "identity_bytes"])
def test_model_config_matches_repository(
    flavour: tuple[ModuleType, Any], server: ServeProcess, model: str
) -> None:
    _, client = flavour
    served, disk = served_config(client, model), disk_config(server, model)
    assert served.name == model
    assert served.max_batch_size == disk.max_batch_size
    assert list(served.input) == list(disk.input)
    assert list(served.output) == list(disk.output)


# -- inference --------------------------------------------------------------------------------


def test_infer_simple_int32(flavour: tuple[ModuleType, Any]) -> None:
    mod, client = flavour
    check_simple(mod, client, seed=1)


def test_infer_mlp_matches_onnxruntime(flavour: tuple[ModuleType, Any], mlp_reference: Any) -> None:
    mod, client = flavour
    x = mlp_batch(seed=2, batch=5)
    result = client.infer("mlp", [make_input(mod, "INPUT0", x)])
    got = result.as_numpy("OUTPUT0")
    assert got.dtype == np.float32 and got.shape == (5, 1)
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_infer_identity_bytes(flavour: tuple[ModuleType, Any]) -> None:
    mod, client = flavour
    data = np.array([BYTES_ROWS, BYTES_ROWS[::-1]], dtype=np.object_)
    result = client.infer("identity_bytes", [make_input(mod, "INPUT0", data)])
    got = result.as_numpy("OUTPUT0")
    assert got.shape == data.shape
    assert got.tolist() == data.tolist()


def test_http_json_tensors(http: httpclient.InferenceServerClient, mlp_reference: Any) -> None:
    """Tensors as JSON both ways (no binary extension), as a plain KServe v2 client sends."""

    def json_outputs(*names: str) -> list[Any]:
        return [httpclient.InferRequestedOutput(name, binary_data=False) for name in names]

    a, b, inputs = simple_inputs(httpclient, seed=11, binary_data=False)
    result = http.infer("simple", inputs, outputs=json_outputs("OUTPUT0", "OUTPUT1"))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)

    x = mlp_batch(seed=12)
    tensor = make_input(httpclient, "INPUT0", x, binary_data=False)
    result = http.infer("mlp", [tensor], outputs=json_outputs("OUTPUT0"))
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), mlp_reference(x), rtol=1e-5, atol=1e-6)

    text_rows = [row for row in BYTES_ROWS if row != b"\x00\xff\x10"]  # JSON carries UTF-8 only
    data = np.array([text_rows], dtype=np.object_)
    tensor = make_input(httpclient, "INPUT0", data, binary_data=False)
    result = http.infer("identity_bytes", [tensor], outputs=json_outputs("OUTPUT0"))
    got = [
        v if isinstance(v, bytes) else str(v).encode() for v in result.as_numpy("OUTPUT0").ravel()
    ]
    assert got == text_rows


def test_fp16_round_trip(flavour: tuple[ModuleType, Any]) -> None:
    mod, client = flavour
    x = np.array(
        [[0.0, -0.0, 1 / 3, 65504.0, -65504.0, 6e-8], [np.inf, -np.inf, 1e-3, 2.5, -7.25, 1024.5]],
        dtype=np.float16,
    )
    result = client.infer("fp16_identity", [make_input(mod, "INPUT0", x)])
    got = result.as_numpy("OUTPUT0")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), x.view(np.uint16))


def test_http_async_infer(http: httpclient.InferenceServerClient, mlp_reference: Any) -> None:
    batches = [mlp_batch(seed=10 + i, batch=i + 1) for i in range(6)]
    pending = [
        http.async_infer("mlp", [make_input(httpclient, "INPUT0", x)], request_id=str(i))
        for i, x in enumerate(batches)
    ]
    for x, handle in zip(batches, pending):
        got = handle.get_result(timeout=WAIT_S).as_numpy("OUTPUT0")
        np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_grpc_async_infer_callback(grpc: grpcclient.InferenceServerClient) -> None:
    replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
    expected = {}
    for i in range(6):
        a, b, inputs = simple_inputs(grpcclient, seed=20 + i, batch=1)
        expected[str(i)] = (a + b, a - b)
        grpc.async_infer(
            "simple", inputs, lambda result, error: replies.put((result, error)), request_id=str(i)
        )
    for _ in range(len(expected)):
        result, error = replies.get(timeout=WAIT_S)
        assert error is None, error
        total, diff = expected.pop(result.get_response().id)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), total)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), diff)
    assert not expected


def test_grpc_stream_matches_by_request_id(server: ServeProcess) -> None:
    replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    expected = {}
    try:
        client.start_stream(callback=lambda result, error: replies.put((result, error)))
        for i in range(8):
            a, b, inputs = simple_inputs(grpcclient, seed=40 + i, batch=1 + i % 3)
            expected[f"req-{i}"] = (a + b, a - b)
            client.async_stream_infer("simple", inputs, request_id=f"req-{i}")
        for _ in range(len(expected)):
            result, error = replies.get(timeout=WAIT_S)
            assert error is None, error
            total, diff = expected.pop(result.get_response().id)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), total)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), diff)
    finally:
        client.stop_stream()
        client.close()
    assert not expected


def test_statistics_grow(flavour: tuple[ModuleType, Any]) -> None:
    mod, client = flavour
    before = stats(client, "simple")
    for seed in range(3):
        check_simple(mod, client, seed=60 + seed)  # batch 2 each
    after = stats(client, "simple")
    assert after["inference"] >= before["inference"] + 6
    assert after["success"] >= before["success"] + 3
    assert before["execution"] < after["execution"] <= after["inference"]


# -- aio clients ------------------------------------------------------------------------------


async def _aio_checks(mod: ModuleType, client: Any, server: ServeProcess, reference: Any) -> None:
    """The same checks as the sync tests, awaited; mod is the matching sync module for inputs."""
    assert await client.is_server_live()
    assert await client.is_server_ready()
    assert await client.is_model_ready("mlp")
    assert not await client.is_model_ready("no_such_model")
    meta = as_dict(await client.get_server_metadata())
    assert meta["version"] == headrace.__version__
    model_meta = as_dict(await client.get_model_metadata("mlp"))
    assert [(t["name"], t["datatype"]) for t in model_meta["inputs"]] == [("INPUT0", "FP32")]
    reply = await client.get_model_config("mlp")
    config = (
        json_format.ParseDict(reply, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
        if isinstance(reply, dict)
        else reply.config
    )
    disk = disk_config(server, "mlp")
    assert config.max_batch_size == disk.max_batch_size
    assert list(config.input) == list(disk.input) and list(config.output) == list(disk.output)

    before = as_dict(await client.get_inference_statistics("mlp", "1"))["model_stats"][0]
    batches = [mlp_batch(seed=80 + i, batch=2) for i in range(4)]
    results = await asyncio.gather(
        *(client.infer("mlp", [make_input(mod, "INPUT0", x)]) for x in batches)
    )
    for x, result in zip(batches, results):
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), reference(x), rtol=1e-5, atol=1e-6)
    after = as_dict(await client.get_inference_statistics("mlp", "1"))["model_stats"][0]
    assert int(after["inference_count"]) >= int(before.get("inference_count", 0)) + 8

    a, b, inputs = simple_inputs(mod, seed=90)
    result = await client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    data = np.array([BYTES_ROWS], dtype=np.object_)
    result = await client.infer("identity_bytes", [make_input(mod, "INPUT0", data)])
    assert result.as_numpy("OUTPUT0").tolist() == data.tolist()


def test_http_aio_client(server: ServeProcess, mlp_reference: Any) -> None:
    async def scenario() -> None:
        client = httpaio.InferenceServerClient(server.http_url)
        try:
            await _aio_checks(httpclient, client, server, mlp_reference)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_grpc_aio_client(server: ServeProcess, mlp_reference: Any) -> None:
    async def scenario() -> None:
        client = grpcaio.InferenceServerClient(server.grpc_url)
        try:
            await _aio_checks(grpcclient, client, server, mlp_reference)
            expected = {}

            async def requests() -> Any:
                for i in range(5):
                    a, b, inputs = simple_inputs(grpcclient, seed=100 + i, batch=1)
                    expected[f"aio-{i}"] = a + b
                    yield {"model_name": "simple", "inputs": inputs, "request_id": f"aio-{i}"}

            seen = 0
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                total = expected.pop(result.get_response().id)
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), total)
                seen += 1
                if seen == 5:
                    break
            assert not expected
        finally:
            await client.close()

    asyncio.run(scenario())


# -- concurrency and batching -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", FLAVOURS)
def test_concurrent_clients_are_batched(server: ServeProcess, grpc: Any, protocol: str) -> None:
    """A burst of concurrent requests shares executions, and each gets its own answer.

    The model waits up to ``BATCHING_DELAY_US`` for a full batch, so the test does not depend
    on how fast this machine happens to be (the examples' mlp, with a 100 us delay, answers
    each request alone when the requests arrive more than 100 us apart).
    """
    count = 64
    before = stats(grpc, "batched_identity")
    mod = httpaio if protocol == "http" else grpcaio
    url = server.http_url if protocol == "http" else server.grpc_url
    values = [np.full((1, 3), index, np.float16) for index in range(count)]

    async def burst() -> list[np.ndarray]:
        client = mod.InferenceServerClient(url)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.infer("batched_identity", [make_input(mod, "INPUT0", x)])
                        for x in values
                    )
                ),
                timeout=60,
            )
        finally:
            await client.close()
        return [result.as_numpy("OUTPUT0") for result in results]

    outputs = asyncio.run(burst())
    for x, got in zip(values, outputs):
        np.testing.assert_array_equal(got, x)
    after = stats(grpc, "batched_identity")
    inferences = after["inference"] - before["inference"]
    executions = after["execution"] - before["execution"]
    assert inferences == count
    assert 0 < executions < inferences, f"{inferences} inferences ran in {executions} executions"


# -- bad input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRequest:
    """One malformed request to ``model`` and what each protocol must answer."""

    model: str
    input_name: str
    array: np.ndarray
    http_status: str
    grpc_code: str
    fragments: tuple[str, ...]  # the error message must name each of these


_INVALID = ("400", "StatusCode.INVALID_ARGUMENT")
BAD_REQUESTS = {
    "unknown-model": BadRequest(
        "no_such_model",
        "INPUT0",
        np.zeros((1, 64), np.float32),
        "404",
        "StatusCode.NOT_FOUND",
        ("no_such_model",),
    ),
    "wrong-name": BadRequest(
        "mlp", "WRONG", np.zeros((1, 64), np.float32), *_INVALID, ("WRONG", "INPUT0")
    ),
    "wrong-dtype": BadRequest(
        "mlp", "INPUT0", np.zeros((1, 64), np.float64), *_INVALID, ("INPUT0", "FP64", "FP32")
    ),
    "wrong-shape": BadRequest(
        "mlp", "INPUT0", np.zeros((1, 63), np.float32), *_INVALID, ("INPUT0", "63")
    ),
    "batch-too-big": BadRequest(
        "mlp", "INPUT0", np.zeros((65, 64), np.float32), *_INVALID, ("INPUT0", "65", "64")
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_server_keeps_serving(
    flavour: tuple[ModuleType, Any], case: str, mlp_reference: Any
) -> None:
    mod, client = flavour
    bad = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as caught:
        client.infer(bad.model, [make_input(mod, bad.input_name, bad.array)])
    assert caught.value.status() == (bad.http_status if mod is httpclient else bad.grpc_code)
    for fragment in bad.fragments:
        assert fragment in caught.value.message(), caught.value.message()
    x = mlp_batch(seed=7)
    got = client.infer("mlp", [make_input(mod, "INPUT0", x)]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_batch_over_max_batch_size_on_python_model(flavour: tuple[ModuleType, Any]) -> None:
    mod, client = flavour
    _, _, inputs = simple_inputs(mod, seed=3, batch=9)  # simple's max_batch_size is 8
    with pytest.raises(InferenceServerException) as caught:
        client.infer("simple", inputs)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert "9" in caught.value.message() and "8" in caught.value.message()
    check_simple(mod, client, seed=4)


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_endpoint(server: ServeProcess, grpc: Any, mlp_reference: Any) -> None:
    x = mlp_batch(seed=5)
    got = grpc.infer("mlp", [make_input(grpcclient, "INPUT0", x)]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-5, atol=1e-6)
    with urllib.request.urlopen(server.metrics_url, timeout=WAIT_S) as reply:
        assert reply.status == 200
        text = reply.read().decode("utf-8")
    assert metric_value(text, "nv_inference_request_success", 'model="mlp",version="1"') > 0
    assert metric_value(text, "nv_inference_queue_duration_us", 'model="mlp",version="1"') >= 0
    assert "nv_inference_request_failure" in text
