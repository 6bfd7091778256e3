"""A configuration's ``reshape``: the shape logic, and ModelInstance applying it for every
backend (merged batches, request lists and what a decoupled model sends to its sinks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from fixtures_models import context_for, write_rank4_scale_onnx
from headrace.backends.base import Backend, BackendContext, RequestResult
from headrace.config import parse_config
from headrace.engine.instance import ModelInstance
from headrace.engine.reshape import Reshapes, TensorReshape
from headrace.errors import InvalidInput, ModelExecutionError
from headrace.types import Outputs, WorkItem


def _config(text: str) -> model_config_pb2.ModelConfig:
    return parse_config(text)


IMAGE = TensorReshape("x", dims=(3, 4, 4), shape=(1, 3, 4, 4))


@pytest.mark.parametrize(
    ("shape", "batched", "want"),
    [
        ((5, 3, 4, 4), True, (5, 1, 3, 4, 4)),  # batch dimension kept in front
        ((3, 4, 4), False, (1, 3, 4, 4)),
    ],
)
def test_an_input_takes_the_reshape_behind_its_batch_dimension(shape, batched, want) -> None:
    array = np.zeros(shape, dtype=np.float32)
    assert IMAGE.to_model(array, batched).shape == want
    assert IMAGE.to_protocol(np.zeros(want), batched).shape == shape


def test_an_empty_reshape_feeds_a_batching_model_rank_one() -> None:
    scalar = TensorReshape("s", dims=(1,), shape=())
    x = np.arange(6, dtype=np.int32).reshape(6, 1)
    assert scalar.to_model(x, batched=True).shape == (6,)
    assert scalar.to_protocol(np.arange(6), batched=True).shape == (6, 1)


def test_variable_dimensions_pair_up_in_order() -> None:
    # dims [-1, 2, -1] reshaped to [-1, -1, 2]: the first -1 takes the first, and so on.
    tensor = TensorReshape("v", dims=(-1, 2, -1), shape=(-1, -1, 2))
    x = np.zeros((4, 5, 2, 7))
    assert tensor.to_model(x, batched=True).shape == (4, 5, 7, 2)
    assert tensor.to_protocol(np.zeros((4, 5, 7, 2)), batched=True).shape == (4, 5, 2, 7)


def test_a_tensor_that_does_not_fit_its_dims_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"input 'x' has shape \[2, 3, 4, 5\]"):
        IMAGE.to_model(np.zeros((2, 3, 4, 5)), batched=True)
    with pytest.raises(ModelExecutionError, match=r"output 'x' with shape \[2, 48\]"):
        IMAGE.to_protocol(np.zeros((2, 48)), batched=True)


def test_reshape_keeps_torch_tensors_as_views() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(2, 3, 4, 4)
    shaped = IMAGE.to_model(x, batched=True)
    assert tuple(shaped.shape) == (2, 1, 3, 4, 4)
    assert shaped.data_ptr() == x.data_ptr()


def test_a_config_without_reshapes_has_none() -> None:
    config = _config('max_batch_size: 2 input [ { name: "x" data_type: TYPE_FP32 dims: [3] } ]')
    assert Reshapes.of(config) is None


# -- ModelInstance applies it ------------------------------------------------------------------

RESHAPED = """
name: "shaped"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 2, 3 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 3, 2 ] } } ]
"""


def _context(text: str = RESHAPED) -> BackendContext:
    config = _config(text)
    return BackendContext(config.name, 1, "/nowhere", "/nowhere/1", config)


class SeesShapes(Backend):
    """Records the shape it is handed and answers y of shape [batch, 3, 2]."""

    name = "sees_shapes"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.seen: list[tuple[int, ...]] = []

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        x = inputs["x"]
        self.seen.append(tuple(x.shape))
        return {"y": (2 * x).reshape(x.shape[0], 3, 2)}


class SeesRequests(SeesShapes):
    """Python-backend style: answers the first request through its sink (decoupled), the
    others by returning their outputs."""

    handles_request_lists = True

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        results: list[RequestResult] = []
        for index, item in enumerate(requests):
            x = item.inputs["x"]
            self.seen.append(tuple(x.shape))
            outputs = {"y": (2 * x).reshape(x.shape[0], 3, 2)}
            if index == 0:
                item.sink.send(outputs, final=True)
                results.append(None)
            else:
                results.append(outputs)
        return results


class Collect:
    def __init__(self) -> None:
        self.sent: list[Outputs | None] = []

    def send(self, outputs: Outputs | None, *, final: bool = True, parameters=None) -> None:
        self.sent.append(outputs)

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        raise AssertionError(f"unexpected failure {error}")

    @property
    def done(self) -> bool:
        return False


def test_a_merged_batch_reaches_the_model_reshaped_and_returns_in_its_dims() -> None:
    backend = SeesShapes(_context())
    instance = ModelInstance(backend, num_buffers=1)
    try:
        requests = [{"x": np.arange(6, dtype=np.float32).reshape(1, 6)} for _ in range(3)]
        results = instance.submit_requests(requests).result(timeout=30)
    finally:
        instance.close()
    assert backend.seen == [(3, 2, 3)]
    for result in results:
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], 2 * np.arange(6).reshape(1, 6))


def test_request_lists_and_their_sinks_see_the_reshape() -> None:
    backend = SeesRequests(_context())
    instance = ModelInstance(backend, num_buffers=1)
    sinks = [Collect(), Collect()]
    items = [
        WorkItem({"x": np.ones((2, 6), dtype=np.float32)}, sinks[0]),
        WorkItem({"x": np.ones((1, 6), dtype=np.float32)}, sinks[1]),
    ]
    try:
        timed = instance.run_requests_now(items)
    finally:
        instance.close()
    assert backend.seen == [(2, 2, 3), (1, 2, 3)]
    sent = sinks[0].sent[0]
    assert sent is not None and sent["y"].shape == (2, 6)
    assert timed.results[0] is None
    second = timed.results[1]
    assert isinstance(second, dict) and second["y"].shape == (1, 6)


def test_an_onnx_model_of_rank_four_served_with_rank_two_dims(tmp_path) -> None:
    version_dir = tmp_path / "rank4" / "1"
    version_dir.mkdir(parents=True)
    write_rank4_scale_onnx(version_dir / "model.onnx")
    config = _config(
        """
        name: "rank4"
        backend: "onnxruntime"
        max_batch_size: 4
        input [ { name: "X" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 1, 2, 3 ] } } ]
        output [ { name: "Y" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 1, 2, 3 ] } } ]
        """
    )
    from headrace.backends.onnx import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(context_for(config, version_dir))
    with pytest.raises(ModelExecutionError, match=r"rank|dimension|Invalid"):
        backend.execute({"X": np.zeros((2, 2, 3), dtype=np.float32)})  # unshaped: refused
    instance = ModelInstance(backend, num_buffers=1)
    try:
        x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
        out = instance.submit({"X": x}).result(timeout=30)
    finally:
        instance.close()
    assert out["Y"].shape == (2, 6)
    np.testing.assert_array_equal(out["Y"], 2 * x.reshape(2, 6))


class TorchSeesShapes(SeesShapes):
    """Takes (and returns) torch tensors on its device, as the CUDA pipeline hands them."""

    accepts_torch = True

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        import torch

        x = inputs["x"]
        assert torch.is_tensor(x), type(x)
        self.seen.append(tuple(x.shape))
        return {"y": (2 * x).reshape(x.shape[0], 3, 2)}


def test_the_cuda_stages_hand_the_model_reshaped_tensors(monkeypatch) -> None:
    """The CUDA pipeline's stages (torch.cuda faked, as tests/engine/test_pipeline_fake_cuda.py
    does) around ModelInstance's compute: device tensors are reshaped both ways too."""
    import contextlib

    import torch
    from test_pipeline_fake_cuda import FakeEvent, FakeStream

    from headrace.engine.cuda import CudaStages
    from headrace.engine.pipeline import Pipeline, PipelineOptions

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None, raising=False)
    monkeypatch.setattr(CudaStages, "_on_device", lambda self, value: torch.is_tensor(value))

    backend = TorchSeesShapes(_context())
    instance = ModelInstance(backend, num_buffers=1)  # on the CPU: only its compute is used
    options = PipelineOptions(2, pin_memory=False, name="w0")
    stages = CudaStages(instance._compute, True, "cuda:0", options)
    stages.device = torch.device("cpu")
    pipeline = Pipeline(stages, options)
    try:
        x = np.arange(12, dtype=np.float32).reshape(2, 6)
        result = pipeline.submit([{"x": x[:1]}, {"x": x[1:]}]).result(timeout=30)
        outputs = result.results()
    finally:
        pipeline.close()
        instance.close()
    assert backend.seen == [(2, 2, 3)]
    for index, output in enumerate(outputs):
        assert isinstance(output, dict)
        np.testing.assert_array_equal(np.asarray(output["y"]), 2 * x[index : index + 1])


@pytest.mark.gpu
def test_a_gpu_instance_hands_the_model_reshaped_device_tensors() -> None:
    config = _config(RESHAPED)
    backend = TorchSeesShapes(
        BackendContext("shaped", 1, "/nowhere", "/nowhere/1", config, "cuda:0")
    )
    instance = ModelInstance(backend, num_buffers=2)
    assert instance.on_gpu
    try:
        x = np.arange(12, dtype=np.float32).reshape(2, 6)
        results = instance.submit_requests([{"x": x[:1]}, {"x": x[1:]}]).result(timeout=60)
    finally:
        instance.close()
    assert backend.seen == [(2, 2, 3)]
    for index, output in enumerate(results):
        assert isinstance(output, dict)
        np.testing.assert_array_equal(np.asarray(output["y"]), 2 * x[index : index + 1])
