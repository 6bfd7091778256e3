"""Timed throughput runs of model instances, in this process or inside the engine's Ray actors.

:func:`timed_run` takes one :class:`~headrace.engine.instance.ModelInstance`, warms it up and
times batches of synthetic inputs made from its configuration, ``num_buffers + 1`` in flight.
It runs where the instance lives: :func:`run_pool` sends it into every actor of a
:class:`~headrace.engine.ray_workers.RayWorkerPool` with ``pool.apply`` (warm-up first, then
all actors at once, timed by the driver), so the engine's actors know nothing of benchmarks.

:class:`RepositoryBackend` is a picklable backend factory for a model of a Triton-layout
repository (or a bare ``.onnx`` file) that each actor resolves and loads on its own machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.backends.base import Backend, BackendContext
from headrace.engine.inflight import drive_in_flight
from headrace.engine.instance import ModelInstance
from headrace.engine.ray_workers import RayWorkerPool
from headrace.engine.stats import stage_means_ms
from headrace.errors import InvalidInput
from headrace.repository.resolve import ModelSource, resolve_model

__all__ = [
    "PoolResult",
    "RepositoryBackend",
    "RunSpec",
    "WorkerResult",
    "run_pool",
    "synthetic_batch",
    "timed_run",
]


@dataclass(frozen=True)
class RunSpec:
    """One throughput run of a worker: ``warmup_iterations`` untimed, then timed batches."""

    num_iterations: int = 100
    batch_size: int = 64
    warmup_iterations: int = 5
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_iterations", "batch_size", "warmup_iterations"):
            if getattr(self, name) < (0 if name == "warmup_iterations" else 1):
                raise InvalidInput(f"run spec: invalid {name} {getattr(self, name)!r}")


@dataclass(frozen=True)
class WorkerResult:
    """One worker's timed run; ``stage_mean_ms`` per pipeline stage, as the pipeline study."""

    worker: int
    device: str
    hostname: str
    num_buffers: int
    batches: int
    elapsed_s: float
    batches_per_s: float
    items_per_s: float
    stage_mean_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolResult:
    """A run of every worker at once; ``elapsed_s`` is the driver's wall time for all of them."""

    workers: list[WorkerResult]
    elapsed_s: float

    @property
    def batches(self) -> int:
        return sum(worker.batches for worker in self.workers)

    @property
    def batches_per_s(self) -> float:
        return self.batches / self.elapsed_s if self.elapsed_s > 0 else 0.0


def timed_run(instance: ModelInstance, spec: RunSpec, worker: int = 0) -> WorkerResult:
    """Warm up, then time ``spec.num_iterations`` batches with ``num_buffers + 1`` in flight."""
    spec.validate()
    config = instance.backend.context.config
    batches = [synthetic_batch(config, spec.batch_size, spec.seed + k) for k in range(4)]
    depth = instance.num_buffers + 1

    def drive(count: int) -> None:
        drive_in_flight(itertools.islice(itertools.cycle(batches), count), instance.submit, depth)

    drive(spec.warmup_iterations)
    before = instance.stats.snapshot()
    start = time.monotonic()
    drive(spec.num_iterations)
    elapsed = time.monotonic() - start
    after = instance.stats.snapshot()
    return WorkerResult(
        worker=worker,
        device=instance.backend.device,
        hostname=platform.node(),
        num_buffers=instance.num_buffers,
        batches=spec.num_iterations,
        elapsed_s=elapsed,
        batches_per_s=spec.num_iterations / elapsed,
        items_per_s=spec.num_iterations * spec.batch_size / elapsed,
        stage_mean_ms=stage_means_ms([before], [after]),
    )


def run_pool(pool: RayWorkerPool, spec: RunSpec) -> PoolResult:
    """Warm every worker up, then run :func:`timed_run` in all of them at once; time the whole."""
    spec.validate()
    pool.apply(timed_run, RunSpec(spec.warmup_iterations or 1, spec.batch_size, 0, spec.seed))
    timed = RunSpec(spec.num_iterations, spec.batch_size, 0, spec.seed)
    start = time.monotonic()
    results = pool.apply(timed_run, timed)
    elapsed = time.monotonic() - start
    workers = [dataclasses.replace(result, worker=index) for index, result in enumerate(results)]
    return PoolResult(workers, elapsed)


def synthetic_batch(config: Any, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs for every input of ``config`` (a ``ModelConfig``); ``batch_size`` is
    ignored by a model without a batch dimension."""
    from headrace.config import input_specs

    rng = np.random.default_rng(seed)
    batch: dict[str, np.ndarray] = {}
    batched = config.max_batch_size > 0
    for spec in input_specs(config):
        if any(dim < 0 for dim in spec.dims):
            raise InvalidInput(
                f"input '{spec.name}' has variable dims {list(spec.dims)}; synthetic batches "
                "need fixed dims"
            )
        shape = (batch_size, *spec.dims) if batched else spec.dims
        dtype = spec.datatype.numpy_dtype
        if np.issubdtype(dtype, np.floating):
            batch[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            batch[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            raise InvalidInput(f"input '{spec.name}': no synthetic data for {spec.datatype.name}")
    return batch


@dataclass(frozen=True)
class RepositoryBackend:
    """A backend factory for the model at ``path`` (``REPO/NAME``, or a bare ``.onnx`` file).

    Called with an instance's context, it resolves ``path`` on the machine it runs on (an
    actor's node may see other local directories than the driver) at the context's version,
    and loads that version on the context's device. :meth:`context` is the driver's view of
    the model, to give a pool.
    """

    path: str
    version: int | None = None
    batch_size: int = 1

    def context(self, device: str = "cpu") -> BackendContext:
        """The model resolved here: its name, version and completed configuration."""
        model = resolve_model(ModelSource(self.path, self.version), self.batch_size)
        model.cleanup()  # a bare model file's scratch repository; the actors make their own
        return model.context(device, model.name)

    def __call__(self, context: BackendContext) -> Backend:
        model = resolve_model(ModelSource(self.path, context.version), self.batch_size)
        try:
            name = context.instance_name or f"{model.name}_{os.getpid()}"
            return model.load_backend(context.device, name)
        finally:
            model.cleanup()  # loaded backends keep no path
