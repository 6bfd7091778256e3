"""ModelInstance: backend + pipeline + statistics, through its public API."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext, RequestResult
from headrace.engine.instance import ModelInstance, merge_requests, split_outputs
from headrace.errors import InvalidInput, ModelExecutionError, Unavailable
from headrace.types import Outputs, WorkItem


def context(max_batch_size: int = 8, device: str = "cpu") -> BackendContext:
    config = model_config_pb2.ModelConfig(name="affine", max_batch_size=max_batch_size)
    return BackendContext("affine", 1, "/nowhere", "/nowhere/1", config, device=device)


class Affine(Backend):
    """y = 3x + 1 in numpy; a NaN input raises (a model bug)."""

    name = "affine"

    def __init__(self, ctx: BackendContext | None = None) -> None:
        super().__init__(ctx or context())
        self.unloaded = threading.Event()

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        x = inputs["x"]
        if np.isnan(x).any():
            raise ArithmeticError("nan in input")
        return {"y": 3 * x + 1, "x_out": x}

    def unload(self) -> None:
        self.unloaded.set()


class TorchAffine(Affine):
    """Takes torch tensors as well; on the CPU the instance still hands it numpy."""

    accepts_torch = True

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        import torch

        x = torch.as_tensor(inputs["x"], device=self.device)
        return {"y": 3 * x + 1, "x_out": x}


class PerRequest(Backend):
    """Triton python-backend style: sees each request; a negative request fails alone."""

    name = "per_request"
    handles_request_lists = True

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return {"y": inputs["x"] * 2}

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        return [
            ValueError("negative") if (r.inputs["x"] < 0).any() else {"y": r.inputs["x"] * 2}
            for r in requests
        ]


class Sink:
    def __init__(self) -> None:
        self.batches: list[dict[str, int]] = []

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None:
        raise AssertionError("an instance records batches only")

    def record_batch(self, **timings: int) -> None:
        self.batches.append(timings)


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


@pytest.mark.parametrize("num_buffers", [1, 2, 3])
@pytest.mark.parametrize("backend_class", [Affine, TorchAffine])
def test_submit_returns_every_output(num_buffers: int, backend_class: type[Affine]) -> None:
    instance = ModelInstance(backend_class(), num_buffers=num_buffers)
    batches = [rows(n, seed=n) for n in (1, 5, 2, 9, 3)]
    futures = [instance.submit({"x": x}) for x in batches]
    for x, future in zip(batches, futures):
        outputs = future.result(timeout=30)
        np.testing.assert_allclose(outputs["y"], 3 * x + 1, rtol=1e-6)
        np.testing.assert_array_equal(outputs["x_out"], x)
    np.testing.assert_array_equal(instance.execute({"x": batches[0]})["x_out"], batches[0])
    instance.close()


def test_submit_requests_splits_the_batch_back_per_request() -> None:
    instance = ModelInstance(Affine(), num_buffers=2)
    requests = [{"x": rows(n, seed=n)} for n in (2, 1, 3)]
    results = instance.submit_requests(requests).result(timeout=30)
    assert [r["y"].shape[0] for r in results if isinstance(r, dict)] == [2, 1, 3]
    for request, result in zip(requests, results):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["x_out"], request["x"])
    instance.close()


def test_timed_results_carry_stage_times_and_feed_stats_and_sink() -> None:
    sink = Sink()
    instance = ModelInstance(Affine(), num_buffers=2, stats_sink=sink)
    timed = instance.submit_requests_timed([{"x": rows(2)}, {"x": rows(3)}]).result(timeout=30)
    assert timed.times.batch_size == 5
    assert timed.times.compute_infer_ns > 0
    assert timed.times.total_ns >= timed.times.compute_infer_ns
    single = instance.submit_timed({"x": rows(4)}).result(timeout=30)
    assert single.times.batch_size == 4
    snapshot = instance.stats.snapshot()
    assert (snapshot.batches, snapshot.items, snapshot.batch_sizes) == (2, 9, {5: 1, 4: 1})
    assert snapshot.mean_ns("compute_ns") > 0
    assert [b["batch_size"] for b in sink.batches] == [5, 4]
    assert set(sink.batches[0]) == {
        "batch_size",
        "compute_input_ns",
        "compute_infer_ns",
        "compute_output_ns",
    }
    instance.close()


def test_a_model_error_fails_its_batch_as_model_execution_error() -> None:
    instance = ModelInstance(Affine(), num_buffers=2, name="affine_0")
    bad = rows(2)
    bad[1, 1] = np.nan
    futures = [instance.submit({"x": x}) for x in (rows(1), bad, rows(3))]
    assert futures[0].result(timeout=30)["y"].shape == (1, 4)
    with pytest.raises(ModelExecutionError, match="'affine_0' failed: ArithmeticError: nan"):
        futures[1].result(timeout=30)
    assert futures[2].result(timeout=30)["y"].shape == (3, 4)
    assert instance.stats.snapshot().failed_batches == 1
    instance.close()


def test_request_list_backends_see_each_request() -> None:
    instance = ModelInstance(PerRequest(context()))
    results = instance.submit_requests([{"x": np.ones((1, 4))}, {"x": -np.ones((2, 4))}]).result(
        timeout=30
    )
    assert isinstance(results[0], dict)
    np.testing.assert_array_equal(results[0]["y"], np.full((1, 4), 2.0))
    assert isinstance(results[1], ValueError)
    instance.close()
    with pytest.raises(Unavailable):
        instance.submit_requests([{"x": np.ones((1, 4))}]).result(timeout=30)


def test_run_requests_now_executes_on_the_calling_thread() -> None:
    sink = Sink()
    instance = ModelInstance(Affine(), num_buffers=2, stats_sink=sink)
    assert instance.can_run_now and instance.depth == 1
    requests = [{"x": rows(2, seed=1)}, {"x": rows(3, seed=2)}]
    timed = instance.run_requests_now(requests)
    for request, result in zip(requests, timed.results):
        assert isinstance(result, dict)
        np.testing.assert_allclose(result["y"], 3 * request["x"] + 1, rtol=1e-6)
        np.testing.assert_array_equal(result["x_out"], request["x"])
    assert timed.times.batch_size == 5 and timed.times.compute_infer_ns > 0
    # outputs that alias the batch's buffers were copied out: the next batch cannot touch them
    kept = timed.results[0]["x_out"].copy()  # type: ignore[index]
    instance.run_requests_now([{"x": rows(4, seed=3)}, {"x": rows(1, seed=4)}])
    np.testing.assert_array_equal(timed.results[0]["x_out"], kept)  # type: ignore[index]
    assert [b["batch_size"] for b in sink.batches] == [5, 5]
    bad = rows(1)
    bad[0, 0] = np.nan
    with pytest.raises(ModelExecutionError, match="nan"):
        instance.run_requests_now([{"x": bad}])
    assert instance.stats.snapshot().failed_batches == 1
    instance.close()
    with pytest.raises(Unavailable, match="closed"):
        instance.run_requests_now(requests)


def test_run_requests_now_gives_request_list_backends_each_request() -> None:
    instance = ModelInstance(PerRequest(context()))
    timed = instance.run_requests_now([{"x": np.ones((1, 4))}, {"x": -np.ones((2, 4))}])
    assert isinstance(timed.results[0], dict)
    assert isinstance(timed.results[1], ValueError)
    assert timed.times.batch_size == 3
    instance.close()


def test_concurrent_submitters_get_their_own_results() -> None:
    instance = ModelInstance(Affine(), num_buffers=3)
    mismatches: list[int] = []

    def client(seed: int) -> None:
        pending = [(x, instance.submit({"x": x})) for x in (rows(3, seed + k) for k in range(20))]
        for x, future in pending:
            if not np.array_equal(future.result(timeout=30)["x_out"], x):
                mismatches.append(seed)

    threads = [threading.Thread(target=client, args=(100 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    instance.close()
    assert mismatches == []
    assert instance.stats.snapshot().batches == 80


def test_close_drains_then_unloads_and_refuses_new_work() -> None:
    backend = Affine()
    instance = ModelInstance(backend, num_buffers=2)
    futures = [instance.submit({"x": rows(2, k)}) for k in range(10)]
    instance.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert backend.unloaded.is_set()
    with pytest.raises(Unavailable, match="closed"):
        instance.submit({"x": rows(1)}).result(timeout=30)


def test_unbatched_models_refuse_merged_requests() -> None:
    instance = ModelInstance(Affine(context(max_batch_size=0)))
    with pytest.raises(InvalidInput, match="one request at a time"):
        instance.submit_requests([{"x": rows(1)}, {"x": rows(1)}]).result(timeout=30)
    assert instance.submit({"x": rows(2)}).result(timeout=30)["y"].shape == (2, 4)
    instance.close()


def test_merge_and_split_round_trip() -> None:
    requests = [{"x": rows(2)}, {"x": rows(3, 1)}]
    merged, sizes = merge_requests(requests, batched=True)
    assert sizes == [2, 3] and merged["x"].shape == (5, 4)
    parts = split_outputs({"y": merged["x"]}, sizes)
    np.testing.assert_array_equal(parts[1]["y"], requests[1]["x"])


@pytest.mark.gpu
def test_torch_backend_on_gpu_goes_through_the_cuda_pipeline() -> None:
    from headrace.engine.cuda import CudaStages

    instance = ModelInstance(TorchAffine(context(device="cuda:0")), num_buffers=3)
    assert isinstance(instance.pipeline._stages, CudaStages)
    requests = [{"x": rows(n, n)} for n in (3, 1, 4)]
    timed = instance.submit_requests_timed(requests).result(timeout=60)
    for request, result in zip(requests, timed.results):
        assert isinstance(result, dict)
        np.testing.assert_allclose(result["y"], 3 * request["x"] + 1, rtol=1e-6)
    assert timed.times.h2d_ns > 0 and timed.times.d2h_ns > 0
    instance.close()
