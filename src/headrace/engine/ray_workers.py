"""Scale-out: model instances as Ray actors, one pipeline each (one GPU each when there are GPUs).

    driver ── RayWorkerPool ──┬─► InstanceWorker actor 0: backend + N-way pipeline (GPU 0 / 1 CPU)
                              ├─► InstanceWorker actor 1: backend + N-way pipeline (GPU 1 / 1 CPU)
                              └─► ...

Horizontal scaling is the number of actors, vertical scaling the ``num_buffers`` of each
actor's pipeline. An actor builds its backend itself from a picklable :data:`BackendFactory`
(the model is loaded once per actor, on the actor's device), so the code of an instance is the
one the server and the offline runner use. An actor asked for ``num_gpus=1`` sees exactly one
GPU (Ray sets ``CUDA_VISIBLE_DEVICES``), so it runs on ``cuda:0``; CPU actors take one CPU
each and Ray limits their torch threads to it.

``run`` drives the actor's own pipeline (synthetic inputs made from the model configuration,
``num_buffers + 1`` batches in flight) for throughput studies; ``execute`` runs one batch for
general use. Ray is imported lazily; without it :class:`~headrace.errors.MissingDependency`
names the ``ray`` extra.
"""

from __future__ import annotations

import os
import platform
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.backends.base import Backend
from headrace.engine.instance import ModelInstance
from headrace.engine.pipeline import Preprocess
from headrace.engine.stats import STAGES
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    require,
)
from headrace.types import Outputs

__all__ = [
    "BackendFactory",
    "InstanceWorker",
    "PoolResult",
    "RayWorkerPool",
    "RepositoryBackend",
    "RunSpec",
    "WorkerInfo",
    "WorkerResult",
    "connect_ray",
    "drive_in_flight",
    "synthetic_batch",
]

BackendFactory = Callable[[str], Backend]
"""Builds a loaded backend on the given device (``cpu`` or ``cuda:0``); must be picklable."""


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
class WorkerInfo:
    """Where an actor runs."""

    index: int
    device: str
    hostname: str
    pid: int
    gpu_ids: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class RepositoryBackend:
    """A :data:`BackendFactory` for a model of a Triton-layout repository (``REPO/NAME``, or
    a bare ``.onnx`` file), resolved and loaded inside each actor."""

    path: str
    version: int | None = None
    batch_size: int = 1

    def __call__(self, device: str) -> Backend:
        from headrace.repository.resolve import ModelSource, resolve_model

        model = resolve_model(ModelSource(self.path, self.version), self.batch_size)
        try:
            return model.load_backend(device, f"{model.name}_{os.getpid()}")
        finally:
            model.cleanup()  # a bare model file's scratch repository; loaded backends keep no path


class InstanceWorker:
    """The body of one Ray actor: a backend on this actor's device and its ModelInstance.

    Plain Python so it can be tested without Ray; :class:`RayWorkerPool` wraps it with
    ``ray.remote``. Calls on one actor run one at a time (Ray's default), so ``configure``
    never races ``run``.
    """

    def __init__(
        self,
        factory: BackendFactory,
        *,
        index: int = 0,
        device: str = "cpu",
        num_buffers: int = 2,
        pin_memory: bool = True,
    ) -> None:
        self._factory = factory
        self._index = index
        self._device = device
        self._pin_memory = pin_memory
        self._instance: ModelInstance | None = None
        self.configure(num_buffers)

    def configure(self, num_buffers: int, preprocess: Preprocess | None = None) -> None:
        """(Re)build the instance with ``num_buffers`` slots and an optional CPU stage."""
        self.close()
        self._instance = ModelInstance(
            self._factory(self._device),
            num_buffers=num_buffers,
            name=f"worker{self._index}",
            pin_memory=self._pin_memory,
            preprocess=preprocess,
        )

    def describe(self) -> WorkerInfo:
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "") if self._device != "cpu" else ""
        return WorkerInfo(
            self._index,
            self._device,
            platform.node(),
            os.getpid(),
            tuple(g for g in gpus.split(",") if g),
        )

    def execute(self, inputs: Mapping[str, np.ndarray]) -> Outputs:
        """One batch through this actor's pipeline; host numpy outputs."""
        outputs = self._live().execute(inputs)
        return {name: np.asarray(value) for name, value in outputs.items()}

    def run(self, spec: RunSpec) -> WorkerResult:
        """Warm up, then time ``spec.num_iterations`` batches with ``num_buffers + 1`` in flight."""
        spec.validate()
        instance = self._live()
        config = instance.backend.context.config
        batches = [synthetic_batch(config, spec.batch_size, spec.seed + k) for k in range(4)]
        depth = instance.num_buffers + 1
        drive_in_flight(instance, batches, spec.warmup_iterations, depth)
        before = instance.stats.snapshot()
        start = time.monotonic()
        drive_in_flight(instance, batches, spec.num_iterations, depth)
        elapsed = time.monotonic() - start
        after = instance.stats.snapshot()
        done = after.batches - before.batches
        stage_ms = {
            stage.removesuffix("_ns"): (after.totals_ns[stage] - before.totals_ns[stage])
            / max(done, 1)
            / 1e6
            for stage in STAGES
        }
        return WorkerResult(
            worker=self._index,
            device=self._device,
            hostname=platform.node(),
            num_buffers=instance.num_buffers,
            batches=spec.num_iterations,
            elapsed_s=elapsed,
            batches_per_s=spec.num_iterations / elapsed,
            items_per_s=spec.num_iterations * spec.batch_size / elapsed,
            stage_mean_ms=stage_ms,
        )

    def close(self) -> None:
        if self._instance is not None:
            instance, self._instance = self._instance, None
            instance.close()

    def _live(self) -> ModelInstance:
        if self._instance is None:
            raise Unavailable(f"worker {self._index} is closed")
        return self._instance


def drive_in_flight(
    instance: ModelInstance, batches: Sequence[Mapping[str, Any]], iterations: int, depth: int
) -> None:
    """Keep ``depth`` batches in flight: submit while there is room, else wait on the oldest."""
    in_flight: deque[Future[Any]] = deque()
    for index in range(iterations):
        if len(in_flight) >= depth:
            in_flight.popleft().result()
        in_flight.append(instance.submit(batches[index % len(batches)]))
    while in_flight:
        in_flight.popleft().result()


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


def connect_ray(address: str = "", *, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialised: ``address`` "" starts a local Ray, else ``auto`` or
    ``ray://host:10001``. An already initialised Ray is kept as is."""
    ray = require("ray", "ray")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    return ray


class RayWorkerPool:
    """``num_workers`` :class:`InstanceWorker` actors placed by Ray, driven concurrently.

    With ``num_gpus_per_worker > 0`` each actor gets that share of a GPU and runs on
    ``cuda:0`` (its own GPU for 1.0); otherwise each is a CPU actor with one CPU. The pool
    refuses up front when the cluster lacks the resources (Ray would wait for them forever).
    """

    def __init__(
        self,
        num_workers: int,
        factory: BackendFactory,
        *,
        num_gpus_per_worker: float = 0.0,
        num_buffers: int = 2,
        pin_memory: bool = True,
    ) -> None:
        if num_workers < 1:
            raise InvalidInput(f"num_workers must be at least 1, got {num_workers}")
        if num_gpus_per_worker < 0:
            raise InvalidInput(f"num_gpus_per_worker must be >= 0, got {num_gpus_per_worker}")
        self._ray = connect_ray()
        _check_resources(self._ray, num_workers, num_gpus_per_worker)
        remote = self._ray.remote(InstanceWorker)
        device = "cuda:0" if num_gpus_per_worker > 0 else "cpu"
        self.workers = [
            remote.options(num_cpus=1, num_gpus=num_gpus_per_worker).remote(
                factory, index=index, device=device, num_buffers=num_buffers, pin_memory=pin_memory
            )
            for index in range(num_workers)
        ]
        try:
            self.info: list[WorkerInfo] = self._get([w.describe.remote() for w in self.workers])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RayWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def configure(self, num_buffers: int, preprocess: Preprocess | None = None) -> None:
        """Rebuild every worker's instance with ``num_buffers`` slots."""
        self._get([w.configure.remote(num_buffers, preprocess) for w in self.workers])

    def run(self, spec: RunSpec) -> PoolResult:
        """Warm every worker up, then run them all at once and time the whole."""
        spec.validate()
        warm = RunSpec(spec.warmup_iterations or 1, spec.batch_size, 0, spec.seed)
        self._get([w.run.remote(warm) for w in self.workers])
        timed = RunSpec(spec.num_iterations, spec.batch_size, 0, spec.seed)
        start = time.monotonic()
        results = self._get([w.run.remote(timed) for w in self.workers])
        return PoolResult(results, time.monotonic() - start)

    def execute(self, inputs: Mapping[str, np.ndarray], worker: int = 0) -> Outputs:
        """One batch on one worker."""
        if not 0 <= worker < len(self.workers):
            raise InvalidInput(f"worker {worker} out of range [0, {len(self.workers)})")
        return self._get(self.workers[worker].execute.remote(dict(inputs)))  # type: ignore[no-any-return]

    def map(self, batches: Sequence[Mapping[str, np.ndarray]]) -> list[Outputs]:
        """Batches spread round-robin over the workers; results in input order."""
        refs = [
            self.workers[i % len(self.workers)].execute.remote(dict(batch))
            for i, batch in enumerate(batches)
        ]
        return self._get(refs)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close each instance (draining it), then end the actors."""
        workers, self.workers = self.workers, []
        try:
            self._ray.get([w.close.remote() for w in workers])
        except Exception:  # an actor that died has nothing left to close
            pass
        for worker in workers:
            self._ray.kill(worker)

    def _get(self, refs: Any) -> Any:
        """``ray.get`` with the actor's headrace error re-raised as itself."""
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, HeadraceError):
                raise cause from exc
            raise ModelExecutionError(f"Ray worker failed: {cause or exc}") from exc
        except self._ray.exceptions.RayActorError as exc:
            raise InternalError(f"Ray worker died: {exc}") from exc


def _check_resources(ray: Any, num_workers: int, num_gpus_per_worker: float) -> None:
    total = ray.cluster_resources()
    needs = {"CPU": float(num_workers), "GPU": num_workers * num_gpus_per_worker}
    for resource, need in needs.items():
        have = float(total.get(resource, 0.0))
        if need > have:
            raise Unavailable(
                f"{num_workers} Ray workers need {need:g} {resource} in all, the cluster has "
                f"{have:g}"
            )
