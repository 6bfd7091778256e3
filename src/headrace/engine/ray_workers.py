"""Model instances as Ray actors, one pipeline each (one GPU each when there are GPUs).

    driver ── RayWorkerPool ──┬─► InstanceWorker actor 0: backend + N-way pipeline (GPU 0 / 1 CPU)
                              ├─► InstanceWorker actor 1: backend + N-way pipeline (GPU 1 / 1 CPU)
                              └─► ...

Horizontal scaling is the number of actors, vertical scaling the ``num_buffers`` of each
actor's pipeline. An actor builds its backend itself, ``factory(context)``, from a picklable
:data:`~headrace.backends.base.BackendFactory` and the
:class:`~headrace.backends.base.BackendContext` of its instance, so the model is loaded once
per actor, on the actor's device, and the code of an instance is the one the server and the
offline runner use. The pool sets each context's device: an actor asked for ``num_gpus > 0``
sees its GPU as ``cuda:0`` (Ray sets ``CUDA_VISIBLE_DEVICES``); CPU actors take one CPU each,
run on ``cpu``, and Ray limits their torch threads to it.

Work reaches an actor's instance three ways: ``execute`` runs one batch (``map`` spreads batches
over the actors); :class:`RayExecutor` places a model's instances as actors and gives the
instance pool a :class:`RayInstance` for each, which it drives like a local instance (see
:mod:`headrace.engine.executor`); and ``apply(fn, *args)`` runs the caller's function as
``fn(instance, *args)`` inside the actor (Ray pickles it with cloudpickle) and returns its
result, so a caller can run its own loop next to the instance (the benchmarks time batches
that way) without the engine knowing what the loop is for. Ray is imported lazily; without it
:class:`~headrace.errors.MissingDependency` names the ``ray`` extra.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from headrace.backends.base import BackendContext, BackendFactory, ShippedContext
from headrace.engine.instance import ModelInstance, TimedRequests
from headrace.engine.pipeline import Preprocess
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    require,
)
from headrace.types import Outputs, WorkItem

__all__ = [
    "InstanceWorker",
    "RayWorkerPool",
    "WorkerInfo",
    "connect_ray",
]

R = TypeVar("R")


@dataclass(frozen=True)
class WorkerInfo:
    """Where an actor runs."""

    index: int
    device: str
    hostname: str
    pid: int
    gpu_ids: tuple[str, ...] = ()
    node: str = ""
    """The Ray node id (set by the serving actors; "" outside Ray)."""


class InstanceWorker:
    """The body of one Ray actor: the backend ``factory(context)`` builds and its ModelInstance.

    Plain Python so it can be tested without Ray; :class:`RayWorkerPool` wraps it with
    ``ray.remote``. Calls on one actor run one at a time (Ray's default), so ``configure``
    never races ``execute`` or ``apply``.
    """

    def __init__(
        self,
        factory: BackendFactory,
        context: BackendContext,
        *,
        index: int = 0,
        num_buffers: int = 2,
        pin_memory: bool = True,
    ) -> None:
        self._factory = factory
        self._context = context
        self._index = index
        self._pin_memory = pin_memory
        self._instance: ModelInstance | None = None
        self.configure(num_buffers)

    def configure(self, num_buffers: int, preprocess: Preprocess | None = None) -> None:
        """(Re)build the instance with ``num_buffers`` slots and an optional CPU stage."""
        self.close()
        self._instance = ModelInstance(
            self._factory(self._context),
            num_buffers=num_buffers,
            name=self._context.instance_name,
            pin_memory=self._pin_memory,
            preprocess=preprocess,
        )

    def describe(self) -> WorkerInfo:
        device = self._context.device
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "") if device != "cpu" else ""
        return WorkerInfo(
            self._index,
            device,
            platform.node(),
            os.getpid(),
            tuple(g for g in gpus.split(",") if g),
        )

    def execute(self, inputs: Mapping[str, np.ndarray]) -> Outputs:
        """One batch through this actor's pipeline; host numpy outputs."""
        outputs = self._live().execute(inputs)
        return {name: np.asarray(value) for name, value in outputs.items()}

    def run_requests(self, requests: Sequence[WorkItem]) -> TimedRequests:
        """One batch of requests through this actor's pipeline (what a :class:`RayInstance`
        submits); each request's outputs or error, and the batch's timings."""
        return self._live().submit_requests_timed(requests).result()

    def apply(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(instance, *args)`` with this actor's ModelInstance; returns what ``fn`` returns.

        ``fn`` may submit to the instance as it likes, but must not close it, and should wait
        for what it submitted before it returns (the next call may reconfigure the instance).
        """
        return fn(self._live(), *args)

    def close(self) -> None:
        if self._instance is not None:
            instance, self._instance = self._instance, None
            instance.close()

    def _live(self) -> ModelInstance:
        if self._instance is None:
            raise Unavailable(f"worker {self._index} is closed")
        return self._instance


class _RayInstanceWorker(InstanceWorker):
    """What :class:`RayWorkerPool` makes actors of: an InstanceWorker given a shipped context."""

    def __init__(self, factory: BackendFactory, shipped: ShippedContext, **options: Any) -> None:
        super().__init__(factory, shipped.unpack(), **options)


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

    Actor ``i`` builds its backend with ``factory(context)``, where ``context`` is the one
    given with its ``device`` set and ``instance_name`` suffixed ``_i``. With
    ``num_gpus_per_worker > 0`` each actor gets that share of a GPU and runs on ``cuda:0``
    (its own GPU for 1.0); otherwise each is a CPU actor with one CPU. The pool refuses up
    front when the cluster lacks the resources (Ray would wait for them forever).
    """

    def __init__(
        self,
        num_workers: int,
        factory: BackendFactory,
        context: BackendContext,
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
        remote = self._ray.remote(_RayInstanceWorker)
        device = "cuda:0" if num_gpus_per_worker > 0 else "cpu"
        name = context.instance_name or context.model_name
        self.workers = [
            remote.options(num_cpus=1, num_gpus=num_gpus_per_worker).remote(
                factory,
                ShippedContext.of(
                    dataclasses.replace(context, device=device, instance_name=f"{name}_{index}")
                ),
                index=index,
                num_buffers=num_buffers,
                pin_memory=pin_memory,
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

    def apply(self, fn: Callable[..., R], *args: Any) -> list[R]:
        """``fn(instance, *args)`` in every worker at once (see :meth:`InstanceWorker.apply`);
        the results in worker order."""
        return self._get([w.apply.remote(fn, *args) for w in self.workers])  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close each instance (draining it), then end the actors."""
        workers, self.workers = self.workers, []
        try:
            self._ray.get([w.close.remote() for w in workers])
        except Exception:  # noqa: S110 - an actor that died has nothing left to close
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
    needs = {"CPU": float(num_workers), "GPU": num_workers * num_gpus_per_worker}
    _check_needs(ray, needs, f"{num_workers} Ray workers")


def _check_needs(ray: Any, needs: dict[str, float], what: str) -> None:
    total = ray.cluster_resources()
    for resource, need in needs.items():
        have = float(total.get(resource, 0.0))
        if need > have:
            raise Unavailable(f"{what} need {need:g} {resource} in all, the cluster has {have:g}")
