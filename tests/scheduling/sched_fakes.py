"""Fakes shared by the scheduling tests: a doubling backend that can be held and can fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.engine.instance import ModelInstance
from headrace.scheduling.pool import InstancePool
from headrace.types import Outputs

WAIT_S = 10.0
"""Upper bound for waits on threading events (a failure, never a pacing delay)."""


def make_config(
    max_batch_size: int = 8, dynamic: str | None = None, name: str = "double"
) -> model_config_pb2.ModelConfig:
    """A model with FP32 input 'x' [4] and output 'y' [4]; ``dynamic`` is pbtxt for the batcher."""
    from google.protobuf import text_format

    config = model_config_pb2.ModelConfig(name=name, max_batch_size=max_batch_size)
    config.input.add(name="x", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    config.output.add(name="y", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    if dynamic is not None:
        text_format.Parse(dynamic, config.dynamic_batching)
    return config


class Doubler(Backend):
    """y = 2x. Records every batch (its first-column values); a negative value fails the batch.

    ``gate`` (a threading.Event) holds each batch until set; ``started`` is set when a batch
    begins, so a test can tell the instance is busy. ``threads`` names the thread each batch
    ran on; ``delay_s`` makes every batch take at least that long, ``thread_delay_s`` only
    those off the main thread (as a Python model that waits for the GIL there).
    """

    name = "doubler"

    def __init__(self, context: BackendContext, gate: threading.Event | None = None) -> None:
        super().__init__(context)
        self.gate = gate
        self.started = threading.Event()
        self.batches: list[list[float]] = []
        self.threads: list[str] = []
        self.delay_s = 0.0
        self.thread_delay_s = 0.0
        self._lock = threading.Lock()

    @property
    def sizes(self) -> list[int]:
        with self._lock:
            return [len(batch) for batch in self.batches]

    @property
    def seen(self) -> list[float]:
        with self._lock:
            return [value for batch in self.batches for value in batch]

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        x = np.asarray(inputs["x"])
        with self._lock:
            self.batches.append([float(v) for v in x.reshape(x.shape[0], -1)[:, 0]])
            self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.thread_delay_s and threading.current_thread() is not threading.main_thread():
            time.sleep(self.thread_delay_s)
        if self.gate is not None and not self.gate.wait(WAIT_S):
            raise TimeoutError("test gate was never opened")
        if (x < 0).any():
            raise RuntimeError(f"negative input in a batch of {x.shape[0]}")
        return {"y": x * 2}


def make_pool(
    config: model_config_pb2.ModelConfig,
    count: int = 1,
    *,
    depth: int | None = None,
    gated: bool = False,
    run_now_below_us: float = 0.0,
) -> tuple[InstancePool, list[Doubler]]:
    """``count`` instances of Doubler (each with its own gate when ``gated``)."""
    backends = []
    instances = []
    for index in range(count):
        context = BackendContext(
            model_name=config.name,
            version=1,
            model_dir="",
            version_dir="",
            config=config,
            instance_name=f"{config.name}_{index}",
        )
        backend = Doubler(context, threading.Event() if gated else None)
        backends.append(backend)
        instances.append(ModelInstance(backend, num_buffers=2, pin_memory=False))
    return InstancePool(instances, depth=depth, run_now_below_us=run_now_below_us), backends


def request(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 4), value, dtype=np.float32)}


class RecordingStats:
    """A StatsSink that keeps what it is told."""

    def __init__(self) -> None:
        self.requests: list[tuple[bool, int, int]] = []
        self.batches: list[int] = []

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None:
        self.requests.append((success, queue_ns, total_ns))

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None:
        assert min(compute_input_ns, compute_infer_ns, compute_output_ns) >= 0
        self.batches.append(batch_size)


async def wait_started(backend: Doubler) -> None:
    """Wait (without blocking the loop) until ``backend`` has begun a batch."""
    import asyncio

    assert await asyncio.to_thread(backend.started.wait, WAIT_S), "backend never started"
