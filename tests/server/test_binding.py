"""The PyTriton-style binding: in-process infer, dynamic batching, background serving."""

from __future__ import annotations

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from headrace.errors import InvalidConfig, InvalidInput, ModelNotFound
from headrace.server.app import FrontendOptions
from headrace.server.binding import DynamicBatching, Server, Tensor
from headrace.types import DataType

NO_DOORS = FrontendOptions(http_port=None, grpc_port=None, metrics_port=None)


def test_infer_in_process_with_dynamic_batching() -> None:
    batches: list[int] = []
    lock = threading.Lock()

    def double(x: np.ndarray) -> dict[str, np.ndarray]:
        with lock:
            batches.append(x.shape[0])
        return {"y": x * 2}

    server = Server(NO_DOORS)
    server.bind(
        "double",
        double,
        inputs=[Tensor("x", np.float32, (3,))],
        outputs=[Tensor("y", DataType.FP32, (3,))],
        max_batch_size=8,
        batching=DynamicBatching(max_queue_delay_microseconds=2_000_000, preferred_batch_size=(4,)),
    )
    try:
        rows = [np.full((1, 3), i, np.float32) for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda x: server.infer("double", {"x": x}), rows))
        for x, result in zip(rows, results):
            np.testing.assert_allclose(result["y"], x * 2)
        assert batches == [4]
        (stats,) = server.core.statistics("double")
        assert stats.execution_count == 1 and stats.inference_count == 4
    finally:
        server.stop()


def test_infer_errors_and_strings() -> None:
    def upper(text: np.ndarray) -> np.ndarray:
        return np.array([[t.upper() for t in row] for row in text], dtype=object)

    server = Server(NO_DOORS)
    server.bind(
        "upper",
        upper,
        inputs=[Tensor("text", bytes, (1,))],
        outputs=[Tensor("out", "BYTES", (1,))],
        max_batch_size=4,
        batching=False,
    )
    try:
        out = server.infer("upper", {"text": np.array([["ab"], ["cd"]])})
        assert out["out"].tolist() == [[b"AB"], [b"CD"]]
        with pytest.raises(ModelNotFound):
            server.infer("nope", {"text": np.array([["x"]])})
        with pytest.raises(
            InvalidInput, match="batch-size must be <= 4 for 'upper'; input 'text' has 5"
        ):
            server.infer("upper", {"text": np.array([["x"]] * 5)})
        # Binding after start registers at once; unbatched models take whole tensors.
        server.bind(
            "total",
            lambda v: {"s": np.array([v.sum()], dtype=np.int64)},
            inputs=[Tensor("v", np.int64, (-1,))],
            outputs=[Tensor("s", np.int64, (1,))],
        )
        assert server.infer("total", {"v": np.arange(5)})["s"].tolist() == [10]
    finally:
        server.stop()


def test_bind_refuses_bad_arguments() -> None:
    server = Server(NO_DOORS)
    with pytest.raises(InvalidConfig, match="binds no outputs"):
        server.bind("f", lambda x: x, inputs=[Tensor("x")], outputs=[])
    with pytest.raises(InvalidConfig, match="unsupported dtype"):
        server.bind("f", lambda x: x, inputs=[Tensor("x", "complex-ish")], outputs=[Tensor("y")])
    with pytest.raises(InvalidConfig, match="instances must be >= 1"):
        server.bind("f", lambda x: x, [Tensor("x")], [Tensor("y")], instances=0)


def test_context_manager_serves_http_and_metrics_on_free_ports() -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    options = FrontendOptions(http_port=0, grpc_port=0, metrics_port=0, gpu_metrics=False)
    server = Server(options)
    server.bind(
        "add1",
        lambda x: x + 1,
        inputs=[Tensor("x", np.float32, (2,))],
        outputs=[Tensor("y", np.float32, (2,))],
        max_batch_size=4,
        instances=2,
    )
    with server:
        assert server.http_port > 0 and server.metrics_port > 0
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        assert client.is_model_ready("add1")
        x = np.ones((3, 2), np.float32)
        data = httpclient.InferInput("x", list(x.shape), "FP32")
        data.set_data_from_numpy(x)
        result = client.infer("add1", [data])
        np.testing.assert_allclose(result.as_numpy("y"), x + 1)
        client.close()
        grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        grpc_input = grpcclient.InferInput("x", list(x.shape), "FP32")
        grpc_input.set_data_from_numpy(x * 3)
        grpc_result = grpc_client.infer("add1", [grpc_input])
        np.testing.assert_allclose(grpc_result.as_numpy("y"), x * 3 + 1)
        grpc_client.close()
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'nv_inference_request_success{model="add1",version="1"} 2' in text
    with pytest.raises(InvalidConfig, match="not open"):
        _ = server.http_port
