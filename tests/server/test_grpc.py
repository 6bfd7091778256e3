"""The gRPC frontend driven by unmodified tritonclient.grpc (sync, async_infer, stream, aio).

A real InferenceServer (explicit model control over a small python-backend repository, plus
models registered from code) and the frontend run on one event loop in a daemon thread, as
in production; the blocking clients run on the test thread.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from server_fakes import model_py, scale_config, scale_factory, write_python_model
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from headrace.backends.base import Backend
from headrace.config import add_tensor, new_config
from headrace.server.core import InferenceServer
from headrace.server.grpc.frontend import GrpcFrontend
from headrace.types import Outputs


class EchoBackend(Backend):
    """BYTES in, the same BYTES out."""

    name = "fake"

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return {"OUT": np.asarray(inputs["IN"], dtype=object)}


class HalfBackend(Backend):
    """FP16 x -> 2x."""

    name = "fake"

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return {"Y": (np.asarray(inputs["X"]) * 2).astype(np.float16)}


class RendezvousBackend(Backend):
    """x == 1 waits until an x == 2 request has run: proves a stream runs requests at once."""

    name = "fake"
    arrived = threading.Event()

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        x = np.asarray(inputs["X"])
        if int(x.reshape(-1)[0]) == 2:
            RendezvousBackend.arrived.set()
        elif not RendezvousBackend.arrived.wait(timeout=10):
            raise RuntimeError("requests of the stream did not run concurrently")
        return {"Y": x.copy()}


def _configs() -> list[tuple[str, Any, Any]]:
    echo = new_config("echo", backend="fake", max_batch_size=8)
    add_tensor(echo, "input", "IN", "BYTES", [-1])
    add_tensor(echo, "output", "OUT", "BYTES", [-1])
    half = new_config("half", backend="fake", max_batch_size=8)
    add_tensor(half, "input", "X", "FP16", [3])
    add_tensor(half, "output", "Y", "FP16", [3])
    pair = new_config("pair", backend="fake", max_batch_size=0)
    add_tensor(pair, "input", "X", "INT32", [1])
    add_tensor(pair, "output", "Y", "INT32", [1])
    pair.instance_group.add(count=2, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    return [
        ("scale", scale_factory(), scale_config(dynamic=True)),
        ("echo", EchoBackend, echo),
        ("half", HalfBackend, half),
        ("pair", RendezvousBackend, pair),
    ]


class Served:
    """The core and the gRPC frontend on their own loop in a daemon thread."""

    def __init__(self, repo: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.core = InferenceServer(repo, model_control_mode="explicit", load_models=["mul"])
        self.frontend = GrpcFrontend(self.core, "127.0.0.1", 0, max_message_bytes=64 << 20)
        self.call(self._start())

    async def _start(self) -> None:
        await self.core.start()
        for name, factory, config in _configs():
            await self.core.register_model(name, factory, config)
        await self.frontend.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return self.frontend.url

    def close(self) -> None:
        self.call(self.frontend.stop(1.0))
        self.call(self.core.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp("grpc-repo")
    write_python_model(repo, "mul", {1: 10})
    write_python_model(repo, "other", {1: 5})
    server = Served(repo)
    mul = [e for e in server.core.repository_index() if e.name == "mul"]
    assert [e.state for e in mul] == ["READY"], f"repository model 'mul' did not load: {mul}"
    yield server
    server.close()


@pytest.fixture
def client(served: Served) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(served.url) as c:
        yield c


def _scale_input(rows: int = 2, dtype: str = "FP32") -> tuple[grpcclient.InferInput, np.ndarray]:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    tensor = grpcclient.InferInput("x", [rows, 4], dtype)
    tensor.set_data_from_numpy(x)
    return tensor, x


def _assert_scale_works(client: grpcclient.InferenceServerClient) -> None:
    tensor, x = _scale_input()
    np.testing.assert_array_equal(client.infer("scale", [tensor]).as_numpy("y"), x * 2)


def _status(exc: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(exc.value.status())


def test_infer_raw_with_requested_outputs_and_id(client: Any) -> None:
    tensor, x = _scale_input()
    result = client.infer(
        "scale",
        [tensor],
        outputs=[grpcclient.InferRequestedOutput("z")],
        request_id="req-42",
        priority=1,
        timeout=10_000_000,
        model_version="1",
    )
    response = result.get_response()
    assert response.id == "req-42" and response.model_version == "1"
    assert [o.name for o in response.outputs] == ["z"]
    np.testing.assert_array_equal(result.as_numpy("z"), x + 1)


def test_infer_typed_contents_input(served: Served) -> None:
    """InferTensorContents instead of raw bytes, as non-Python clients send."""
    import grpc

    request = service_pb2.ModelInferRequest(model_name="scale", id="typed")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
        [1.0, 2.0, 3.0, 4.0]
    )
    with grpc.insecure_channel(served.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=30)
    assert [o.name for o in response.outputs] == ["y", "z"]
    y = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    np.testing.assert_array_equal(y, [2.0, 4.0, 6.0, 8.0])


def test_a_stream_request_that_cannot_be_decoded_is_answered_in_place_and_named(
    served: Served,
) -> None:
    """Stream requests are decoded on arrival (with the unary door's header memo): one whose
    raw contents do not fit its shape gets an error response carrying its model and id, in
    its place in the stream, and requests with the same header after it are served."""
    import grpc

    def request(request_id: str, raw: bytes) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name="scale", id=request_id)
        message.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        message.raw_input_contents.append(raw)
        return message

    good = np.arange(4, dtype=np.float32).tobytes()
    sent = [request("a", good), request("short", good[:12]), request("a", good)]
    sent.append(service_pb2.ModelInferRequest(model_name="nope", id="unknown"))
    with grpc.insecure_channel(served.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answers = list(stub.ModelStreamInfer(iter(sent), timeout=30))
    assert [a.infer_response.id for a in answers] == ["a", "short", "a", "unknown"]
    assert [bool(a.error_message) for a in answers] == [False, True, False, True]
    assert "12" in answers[1].error_message and answers[1].infer_response.model_name == "scale"
    y = np.frombuffer(answers[2].infer_response.raw_output_contents[0], dtype=np.float32)
    np.testing.assert_array_equal(y, np.arange(4) * 2)
    assert "nope" in answers[3].error_message


def test_fp16_and_bytes_including_empty_and_non_ascii(client: Any) -> None:
    x = np.array([[0.5, -1.25, 3.0]], dtype=np.float16)
    tensor = grpcclient.InferInput("X", [1, 3], "FP16")
    tensor.set_data_from_numpy(x)
    half = client.infer("half", [tensor]).as_numpy("Y")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, x * 2)
    words = np.array([[b"", "héllo wörld".encode(), b"\x00\xff", "日本".encode()]], dtype=object)
    tensor = grpcclient.InferInput("IN", [1, 4], "BYTES")
    tensor.set_data_from_numpy(words)
    echoed = client.infer("echo", [tensor]).as_numpy("OUT")
    assert echoed.shape == (1, 4) and list(echoed.reshape(-1)) == list(words.reshape(-1))


def test_async_infer_callback(client: Any) -> None:
    tensor, x = _scale_input(3)
    done: queue.Queue[Any] = queue.Queue()
    client.async_infer("scale", [tensor], lambda result, error: done.put((result, error)))
    result, error = done.get(timeout=30)
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)


def test_stream_keeps_order_runs_concurrently_and_survives_a_bad_request(client: Any) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        # "pair" has two instances; request 1 blocks until request 2 has executed, so this
        # only completes when the stream runs them concurrently, yet answers come back 1, 2.
        for value in (1, 2):
            tensor = grpcclient.InferInput("X", [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
            client.async_stream_infer("pair", [tensor], request_id=f"pair-{value}")
        for i in range(6):
            if i == 3:  # wrong dtype in the middle of the stream
                bad = grpcclient.InferInput("x", [1, 4], "FP64")
                bad.set_data_from_numpy(np.zeros((1, 4), dtype=np.float64))
                client.async_stream_infer("scale", [bad], request_id="bad")
                continue
            tensor = grpcclient.InferInput("x", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
            client.async_stream_infer("scale", [tensor], request_id=f"s-{i}")
        answers = [results.get(timeout=30) for _ in range(8)]
    finally:
        client.stop_stream()
    ids = []
    for result, error in answers:
        if error is not None:
            ids.append("error")
            assert "FP64" in str(error) and "'x'" in str(error)
        else:
            ids.append(result.get_response().id)
    assert ids == ["pair-1", "pair-2", "s-0", "s-1", "s-2", "error", "s-4", "s-5"]
    np.testing.assert_array_equal(answers[-1][0].as_numpy("y"), np.full((1, 4), 10.0))


def test_metadata_config_health(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("scale") and not client.is_model_ready("nope")
    assert not client.is_model_ready("scale", "7")
    server = client.get_server_metadata()
    assert server.name == "triton" and "model_repository" in server.extensions
    meta = client.get_model_metadata("scale")
    assert meta.name == "scale" and list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 4])]
    assert [t.name for t in meta.outputs] == ["y", "z"]
    config = client.get_model_config("half").config
    assert config.name == "half" and config.max_batch_size == 8
    assert config.input[0].name == "X"
    as_json = client.get_model_config("scale", as_json=True)
    assert as_json["config"]["name"] == "scale"


def test_statistics(client: Any) -> None:
    _assert_scale_works(client)
    stats = client.get_inference_statistics("scale").model_stats
    assert len(stats) == 1 and stats[0].name == "scale" and stats[0].version == "1"
    assert stats[0].inference_stats.success.count >= 1
    assert stats[0].last_inference > 0
    names = {s.name for s in client.get_inference_statistics().model_stats}
    assert {"scale", "echo", "mul"} <= names


def test_repository_index_load_and_unload(client: Any) -> None:
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index["mul"] == "READY" and index["other"] == "" and index["scale"] == "READY"
    client.load_model("other")
    assert client.is_model_ready("other")
    override = json.dumps(
        {
            "name": "other",
            "backend": "python",
            "max_batch_size": 2,
            "input": [{"name": "X", "data_type": "TYPE_INT32", "dims": [1]}],
            "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": [1]}],
        }
    )
    client.load_model("other", config=override, files={"file:1/model.py": model_py(3).encode()})
    assert client.get_model_config("other").config.max_batch_size == 2
    tensor = grpcclient.InferInput("X", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[4]], dtype=np.int32))
    np.testing.assert_array_equal(client.infer("other", [tensor]).as_numpy("Y"), [[12]])
    client.unload_model("other")
    assert not client.is_model_ready("other")
    with pytest.raises(InferenceServerException) as exc:
        client.load_model("ghost")
    assert _status(exc) == "StatusCode.INTERNAL"
    assert exc.value.message().startswith("failed to load 'ghost', failed to poll")
    with pytest.raises(InferenceServerException) as exc:
        client.load_model("other", config="{nope")
    assert _status(exc) == "StatusCode.INTERNAL"
    assert exc.value.message().startswith("failed to load 'other', failed to poll")
    _assert_scale_works(client)


def test_errors_map_to_status_codes_and_the_server_keeps_serving(client: Any) -> None:
    tensor, _ = _scale_input()
    with pytest.raises(InferenceServerException) as exc:
        client.infer("nope", [tensor])
    assert _status(exc) == "StatusCode.NOT_FOUND" and "nope" in exc.value.message()
    _assert_scale_works(client)
    wrong_dtype = grpcclient.InferInput("x", [1, 4], "INT32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 4), dtype=np.int32))
    with pytest.raises(InferenceServerException) as exc:
        client.infer("scale", [wrong_dtype])
    assert _status(exc) == "StatusCode.INVALID_ARGUMENT" and "'x'" in exc.value.message()
    _assert_scale_works(client)
    wrong_shape = grpcclient.InferInput("x", [1, 5], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as exc:
        client.infer("scale", [wrong_shape])
    assert _status(exc) == "StatusCode.INVALID_ARGUMENT" and "got [1,5]" in exc.value.message()
    _assert_scale_works(client)
    with pytest.raises(InferenceServerException) as exc:
        client.update_trace_settings(settings={"trace_file": "/elsewhere.json"})
    assert _status(exc) == "StatusCode.UNIMPLEMENTED"
    model_error = grpcclient.InferInput("x", [1, 4], "FP32")
    model_error.set_data_from_numpy(np.full((1, 4), 13, dtype=np.float32))
    with pytest.raises(InferenceServerException) as exc:
        client.infer("scale", [model_error])
    assert _status(exc) == "StatusCode.INTERNAL" and "unlucky 13" in exc.value.message()
    _assert_scale_works(client)


def test_raw_content_count_and_size_errors_name_the_input(served: Served) -> None:
    import grpc

    request = service_pb2.ModelInferRequest(model_name="scale")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(b"\0" * 12)
    with grpc.insecure_channel(served.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.ModelInfer(request, timeout=30)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            "input byte size mismatch for input 'x' for model 'scale'. Expected 16, got 12"
            in str(exc.value.details())
        )
        request.raw_input_contents.append(b"\0" * 16)
        with pytest.raises(grpc.RpcError) as exc:
            stub.ModelInfer(request, timeout=30)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2 raw_input_contents" in str(exc.value.details())
        ready_only = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
        names = {m.name for m in ready_only.models}
        assert "scale" in names and "other" not in names


def test_aio_client_infer_and_stream(served: Served) -> None:
    async def body() -> None:
        async with aioclient.InferenceServerClient(served.url) as client:
            assert await client.is_server_live()
            tensor, x = _scale_input()
            result = await client.infer("scale", [tensor])
            np.testing.assert_array_equal(result.as_numpy("z"), x + 1)

            async def requests() -> Any:
                for i in range(5):
                    t = grpcclient.InferInput("x", [1, 4], "FP32")
                    t.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
                    yield {"model_name": "scale", "inputs": [t], "request_id": str(i)}

            seen = []
            async for result, error in client.stream_infer(requests()):
                assert error is None
                seen.append(result.get_response().id)
                if len(seen) == 5:
                    break
            assert seen == ["0", "1", "2", "3", "4"]

    served.call(body())  # grpc.aio wants one loop per process: the server's


def test_a_burst_of_concurrent_calls_is_accepted_not_cancelled(served: Served) -> None:
    """More calls at once than gRPC core lets wait by default (1000) all succeed."""

    async def body() -> list[Any]:
        async with aioclient.InferenceServerClient(served.url) as client:
            tensor, _ = _scale_input(1)
            calls = [client.is_server_live() for _ in range(1500)]
            calls += [client.infer("scale", [tensor]) for _ in range(200)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = served.call(body())
    assert [r for r in results if isinstance(r, BaseException)] == []


def test_port_zero_is_read_back_and_taken_port_is_refused(served: Served) -> None:
    other = GrpcFrontend(served.core, "127.0.0.1", served.frontend.port)
    with pytest.raises(OSError, match=str(served.frontend.port)):
        served.call(other.start())
    with pytest.raises(RuntimeError, match="unknown until start"):
        _ = GrpcFrontend(served.core).port
    with pytest.raises(ValueError, match="max_message_bytes"):
        GrpcFrontend(served.core, max_message_bytes=0)


def test_frontends_that_reuse_the_port_share_it(served: Served) -> None:
    first = GrpcFrontend(served.core, "127.0.0.1", 0, reuse_port=True)
    served.call(first.start())
    second = GrpcFrontend(served.core, "127.0.0.1", first.port, reuse_port=True)
    try:
        served.call(second.start())
        assert second.port == first.port
        for _ in range(4):  # each client's connection lands on one of the two
            with grpcclient.InferenceServerClient(first.url) as c:
                _assert_scale_works(c)
        served.call(first.stop(1.0))  # the port stays served: the second one listens on it
        with grpcclient.InferenceServerClient(second.url) as c:
            _assert_scale_works(c)
    finally:
        served.call(second.stop(1.0))
        served.call(first.stop(1.0))
