"""The N-way pipeline on the CPU (and, marked gpu, on CUDA): results, order, slots, errors."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from headrace.engine.cpu import CpuSlot, CpuStages
from headrace.engine.pipeline import Pipeline, PipelineOptions, Requests, make_pipeline
from headrace.errors import InvalidInput, Unavailable

RNG = np.random.default_rng(7)
WEIGHT = RNG.standard_normal((6, 3)).astype(np.float32)


def affine(inputs: Mapping[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    return {"y": x @ WEIGHT, "s": x.sum(axis=1)}


def identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Returns its input itself: the output aliases the slot buffer."""
    return {"y": inputs["x"]}


def random_requests(count: int, max_rows: int = 5) -> list[dict[str, np.ndarray]]:
    rows = RNG.integers(1, max_rows + 1, size=count)
    return [{"x": RNG.standard_normal((int(n), 6)).astype(np.float32)} for n in rows]


def merged(requests: Requests) -> np.ndarray:
    return np.concatenate([r["x"] for r in requests])


@pytest.mark.parametrize("num_buffers", [1, 2, 3, 4])
def test_outputs_match_sequential_execution(num_buffers: int) -> None:
    pipeline = make_pipeline(affine, batched=True, options=PipelineOptions(num_buffers))
    batches = [random_requests(int(RNG.integers(1, 4))) for _ in range(40)]
    futures = [pipeline.submit(batch) for batch in batches]
    for batch, future in zip(batches, futures):
        result = future.result(timeout=30)
        expected = affine({"x": merged(batch)})
        np.testing.assert_array_equal(result.outputs["y"], expected["y"])
        np.testing.assert_array_equal(result.outputs["s"], expected["s"])
        assert result.times.batch_size == len(merged(batch))
    pipeline.close()


@pytest.mark.parametrize("num_buffers", [1, 2, 4])
def test_futures_complete_in_submission_order(num_buffers: int) -> None:
    pipeline = make_pipeline(affine, batched=True, options=PipelineOptions(num_buffers))
    completed: list[int] = []
    futures = []
    for index in range(60):
        rows = int(RNG.integers(1, 200))  # uneven work per batch
        future = pipeline.submit([{"x": np.ones((rows, 6), np.float32)}])
        future.add_done_callback(lambda _, index=index: completed.append(index))
        futures.append(future)
    for future in futures:
        future.result(timeout=30)
    pipeline.close()
    assert completed == list(range(60))


@pytest.mark.parametrize("num_buffers", [1, 2, 3, 4])
def test_poisoned_slots_never_leak_into_handed_over_outputs(num_buffers: int) -> None:
    options = PipelineOptions(num_buffers, poison=True)
    pipeline = make_pipeline(identity, batched=True, options=options)
    batches = [random_requests(3) for _ in range(50)]
    futures = [pipeline.submit(batch) for batch in batches]
    results = [future.result(timeout=30) for future in futures]
    pipeline.close()
    for batch, result in zip(batches, results):
        np.testing.assert_array_equal(result.outputs["y"], merged(batch))


class OwnershipCheckingStages(CpuStages):
    """Fails a batch if its slot is restaged before the previous batch was handed over."""

    def __init__(self) -> None:
        super().__init__(identity, True, PipelineOptions())
        self.busy: set[int] = set()
        self.violations: list[int] = []
        self.lock = threading.Lock()

    def stage(self, slot: CpuSlot, requests: Requests) -> None:
        with self.lock:
            if slot.index in self.busy:
                self.violations.append(slot.index)
            self.busy.add(slot.index)
        super().stage(slot, requests)

    def hand_over(self, slot: CpuSlot) -> dict[str, Any]:
        outputs = super().hand_over(slot)
        with self.lock:
            self.busy.discard(slot.index)
        return outputs


def test_a_slot_is_restaged_only_after_its_hand_over() -> None:
    stages = OwnershipCheckingStages()
    pipeline = Pipeline(stages, PipelineOptions(num_buffers=2))
    futures = [pipeline.submit(random_requests(2)) for _ in range(100)]
    for future in futures:
        future.result(timeout=30)
    pipeline.close()
    assert stages.violations == []


def test_slot_buffers_are_reused_not_reallocated_per_batch() -> None:
    stages = CpuStages(affine, True, PipelineOptions())
    pipeline = Pipeline(stages, PipelineOptions(num_buffers=1))
    slot = pipeline._free.get()
    pipeline._free.put(slot)
    for _ in range(20):
        pipeline.submit([{"x": np.ones((4, 6), np.float32)}] * 2).result(timeout=30)
    pipeline.submit([{"x": np.ones((40, 6), np.float32)}] * 2).result(timeout=30)
    pipeline.close()
    assert isinstance(slot, CpuSlot)
    assert slot.buffers["x"].grow_count == 2


def test_an_error_in_compute_fails_only_its_batch() -> None:
    def fragile(inputs: Mapping[str, Any]) -> dict[str, Any]:
        if inputs["x"][0, 0] < 0:
            raise ValueError("negative input")
        return affine(inputs)

    pipeline = make_pipeline(fragile, batched=True, options=PipelineOptions(3))
    signs = [1, -1, 1, 1, -1, 1]
    futures = [pipeline.submit([{"x": np.full((2, 6), s, np.float32)}] * 2) for s in signs]
    for sign, future in zip(signs, futures):
        if sign < 0:
            with pytest.raises(ValueError, match="negative input"):
                future.result(timeout=30)
        else:
            assert future.result(timeout=30).outputs["y"].shape == (4, 3)
    after = pipeline.submit([{"x": np.ones((1, 6), np.float32)}]).result(timeout=30)
    np.testing.assert_array_equal(after.outputs["s"], [6.0])
    pipeline.close()


def test_a_collation_error_names_the_request() -> None:
    pipeline = make_pipeline(affine, batched=True)
    bad = [{"x": np.ones((2, 6), np.float32)}, {"x": np.ones((2, 5), np.float32)}]
    with pytest.raises(InvalidInput, match="request 1"):
        pipeline.submit(bad).result(timeout=30)
    pipeline.close()


def test_stage_of_the_next_batch_overlaps_compute_only_with_spare_slots() -> None:
    for num_buffers, overlaps in ((1, False), (3, True)):
        release = threading.Event()
        staged = [threading.Event() for _ in range(2)]

        def preprocess(requests: Requests, staged: list[threading.Event] = staged) -> Requests:
            staged[int(requests[0]["x"][0, 0])].set()
            return requests

        def blocking(inputs: Mapping[str, Any], release: threading.Event = release) -> Any:
            assert release.wait(30)
            return affine(inputs)

        options = PipelineOptions(num_buffers, preprocess=preprocess)
        pipeline = make_pipeline(blocking, batched=True, options=options)
        first = pipeline.submit([{"x": np.zeros((1, 6), np.float32)}])
        second = pipeline.submit([{"x": np.ones((1, 6), np.float32)}])
        assert staged[0].wait(30)
        assert staged[1].wait(0.3 if not overlaps else 30) is overlaps
        release.set()
        first.result(timeout=30), second.result(timeout=30)
        pipeline.close()


def test_close_drains_batches_in_flight() -> None:
    release = threading.Event()

    def blocking(inputs: Mapping[str, Any]) -> Any:
        assert release.wait(30)
        return affine(inputs)

    pipeline = make_pipeline(blocking, batched=True, options=PipelineOptions(2))
    futures = [pipeline.submit([{"x": np.ones((1, 6), np.float32)}]) for _ in range(6)]
    closer = threading.Thread(target=pipeline.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the batches in flight
    release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert all(f.result(timeout=0).outputs["y"].shape == (1, 3) for f in futures)
    assert not any(worker.thread.is_alive() for worker in pipeline._workers)
    with pytest.raises(Unavailable, match="closed"):
        pipeline.submit([{"x": np.ones((1, 6), np.float32)}])


def test_close_without_drain_refuses_queued_batches() -> None:
    release = threading.Event()
    started = threading.Event()

    def blocking(inputs: Mapping[str, Any]) -> Any:
        started.set()
        assert release.wait(30)
        return affine(inputs)

    pipeline = make_pipeline(blocking, batched=True, options=PipelineOptions(1))
    futures = [pipeline.submit([{"x": np.ones((1, 6), np.float32)}]) for _ in range(5)]
    assert started.wait(30)
    closer = threading.Thread(target=pipeline.close, kwargs={"drain": False})
    closer.start()
    release.set()
    closer.join(30)
    assert futures[0].result(timeout=0).outputs["y"].shape == (1, 3)
    outcomes = [f.exception(timeout=0) for f in futures[1:]]
    assert any(isinstance(error, Unavailable) for error in outcomes)
    assert all(error is None or isinstance(error, Unavailable) for error in outcomes)


def test_submit_from_many_threads_keeps_each_result_with_its_batch() -> None:
    pipeline = make_pipeline(affine, batched=True, options=PipelineOptions(3))
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        pairs: list[tuple[np.ndarray, Future[Any]]] = []
        for _ in range(30):
            x = rng.standard_normal((int(rng.integers(1, 9)), 6)).astype(np.float32)
            pairs.append((x, pipeline.submit([{"x": x}])))
        for x, future in pairs:
            if not np.array_equal(future.result(timeout=30).outputs["y"], x @ WEIGHT):
                failures.append(f"client {seed}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    pipeline.close()
    assert failures == []


def test_an_unbatched_model_takes_one_request_per_batch() -> None:
    pipeline = make_pipeline(lambda i: {"y": i["x"] * 2}, batched=False)
    result = pipeline.submit([{"x": np.arange(4.0)}]).result(timeout=30)
    np.testing.assert_array_equal(result.outputs["y"], np.arange(4.0) * 2)
    with pytest.raises(InvalidInput, match="one request at a time"):
        pipeline.submit([{"x": np.arange(4.0)}] * 2).result(timeout=30)
    pipeline.close()


def test_zero_buffers_is_refused() -> None:
    with pytest.raises(InvalidInput, match="num_buffers must be at least 1, got 0"):
        make_pipeline(affine, batched=True, options=PipelineOptions(0))


# --- CUDA path -------------------------------------------------------------------------


def torch_affine(inputs: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    x = inputs["x"]
    weight = torch.as_tensor(WEIGHT, device=x.device)
    return {"y": x @ weight, "s": x.sum(dim=1)}


@pytest.mark.gpu
@pytest.mark.parametrize("num_buffers", [1, 2, 3, 4])
def test_cuda_outputs_match_sequential_execution(num_buffers: int) -> None:
    import torch

    options = PipelineOptions(num_buffers, poison=True)
    pipeline = make_pipeline(torch_affine, batched=True, device="cuda:0", options=options)
    batches = [random_requests(int(RNG.integers(1, 4)), max_rows=64) for _ in range(40)]
    futures = [pipeline.submit(batch) for batch in batches]
    completed: list[int] = []
    for index, future in enumerate(futures):
        future.add_done_callback(lambda _, index=index: completed.append(index))
    for batch, future in zip(batches, futures):
        result = future.result(timeout=60)
        expected = torch_affine({"x": torch.as_tensor(merged(batch))})
        np.testing.assert_allclose(result.outputs["y"], expected["y"].numpy(), rtol=1e-4, atol=1e-4)
        assert result.times.h2d_ns > 0 and result.times.compute_ns > 0 and result.times.d2h_ns > 0
    pipeline.close()
    assert completed == list(range(40))


@pytest.mark.gpu
def test_cuda_slots_use_pinned_host_buffers_and_per_stage_events() -> None:
    from headrace.engine.cuda import CudaSlot, CudaStages

    options = PipelineOptions(2)
    stages = CudaStages(torch_affine, True, "cuda:0", options)
    pipeline = Pipeline(stages, options)
    pipeline.submit([{"x": np.ones((3, 6), np.float32)}] * 2).result(timeout=60)
    slots: list[CudaSlot] = [pipeline._free.get() for _ in range(2)]
    used = next(slot for slot in slots if slot.host_in)
    assert used.host_in["x"].raw.is_pinned()
    assert used.host_out["y"].raw.is_pinned()
    assert used.device_in["x"].raw.is_cuda
    assert set(used.events) == {
        "h2d_start",
        "h2d_end",
        "compute_start",
        "compute_end",
        "d2h_start",
        "d2h_end",
    }
    for slot in slots:
        pipeline._free.put(slot)
    pipeline.close()


@pytest.mark.gpu
def test_cuda_error_in_compute_fails_only_its_batch() -> None:
    def fragile(inputs: Mapping[str, Any]) -> dict[str, Any]:
        if float(inputs["x"][0, 0]) < 0:
            raise ValueError("negative input")
        return torch_affine(inputs)

    pipeline = make_pipeline(fragile, batched=True, device="cuda:0", options=PipelineOptions(3))
    signs = [1, -1, 1, -1, 1]
    futures = [pipeline.submit([{"x": np.full((2, 6), s, np.float32)}]) for s in signs]
    for sign, future in zip(signs, futures):
        if sign < 0:
            with pytest.raises(ValueError):
                future.result(timeout=60)
        else:
            assert future.result(timeout=60).outputs["y"].shape == (2, 3)
    pipeline.close()
