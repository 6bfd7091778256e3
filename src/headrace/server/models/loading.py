"""Turn one model version's configuration into running instances and a scheduler.

The instances come from placement (:mod:`headrace.engine.placement`), as in every door: one
per ``instance_group`` entry's ``count`` per device. Python models (Triton python-backend
``model.py`` files and bound callables) run where their runtime says (:func:`python_runtime`):
in a worker process per instance (``process``, off the server's GIL, as Triton's stubs) or on
the server's own threads (``in-server``). An ensemble has none: its scheduler runs
the steps on the other models' schedulers, reached through the registry's router. With
``--ray-address`` (:class:`~headrace.server.options.RayServing`) every other model's instances
are Ray actors instead, python models included, placed through the same planning (``KIND_GPU``
groups count per GPU of the cluster); a decoupled model stays in this server, with a logged line
saying so, because its responses go through its requests' sinks, which cannot leave this
process. With ``--ray-share`` the actors are shared with the namespace's other frontends, and a
sequence model batches in its actors (:mod:`headrace.scheduling.routed_sequence`). Backends load on a worker thread (loading
is blocking file and device work); the pool and scheduler are built on the event loop. A
failure part-way closes whatever was already built, so nothing leaks into a half-loaded
version.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from headrace.backends.base import BackendContext, BackendFactory
from headrace.config import ModelConfig
from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.engine.placement import (
    InstanceBuilder,
    PlacementOptions,
    close_instances,
    place_instances,
)
from headrace.errors import InvalidConfig
from headrace.scheduling import DEFAULT_MAX_QUEUE_SIZE, InstancePool, Scheduler, make_scheduler
from headrace.scheduling.caching import CachingScheduler
from headrace.scheduling.response_cache import ResponseCache
from headrace.scheduling.router import Router
from headrace.server.models.table import LoadedVersion
from headrace.server.options import RayServing
from headrace.server.statistics import VersionStatistics
from headrace.server.validation import Signature

__all__ = [
    "PYTHON_RUNTIMES",
    "PYTHON_RUNTIME_PARAMETER",
    "VersionSource",
    "load_version",
    "python_runtime",
]

PYTHON_RUNTIMES = ("process", "in-server")
PYTHON_RUNTIME_PARAMETER = "HEADRACE_PYTHON_RUNTIME"
"""A model's ``parameters`` key that chooses its python runtime over the server's default."""
_PYTHON_BACKENDS = ("python", "python_callable")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionSource:
    """Where one version comes from: its completed config, directories and backend factory.

    ``backend`` names what executes it (``onnxruntime``…) for the statistics and metrics.
    """

    name: str
    version: int
    config: ModelConfig
    factory: BackendFactory
    model_dir: str = ""
    version_dir: str = ""
    backend: str = ""

    def context(self) -> BackendContext:
        """The instances' common context; placement sets each one's device and name."""
        return BackendContext(
            model_name=self.name,
            version=self.version,
            model_dir=self.model_dir,
            version_dir=self.version_dir,
            config=self.config,
            serving=True,
        )


async def load_version(
    source: VersionSource,
    *,
    router: Router | None = None,
    num_buffers: int = 2,
    run_now_below_us: float = 0.0,
    python_default: str = "in-server",
    cache: ResponseCache | None = None,
    default_max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ray: RayServing | None = None,
) -> LoadedVersion:
    """Place the instances (on a thread), then build the pool and the scheduler.

    ``python_default`` is the runtime of python-backend models that do not choose one. A
    version whose config enables ``response_cache`` schedules through ``cache`` (the
    server's, None when it has none: the version then runs uncached, as in Triton).
    ``default_max_queue_size`` bounds the queues its config leaves unbounded. With ``ray`` the
    instances are Ray actors (see the module's docstring)."""
    config = source.config
    backend = source.backend or config.backend or config.platform or "python_callable"
    signature = Signature.for_config(source.name, config)
    stats = VersionStatistics(source.name, str(source.version))
    pool: InstancePool | None = None
    if config.platform == ENSEMBLE_PLATFORM:
        scheduler = make_scheduler(config, None, stats, router=router)  # steps run elsewhere
    else:
        options = PlacementOptions(num_buffers=num_buffers)
        runtime = python_runtime(config, backend, python_default)
        builder = _ray_builder(source, ray) or _builder(runtime)
        gpus = await asyncio.to_thread(_cluster_gpus, builder)
        instances = await asyncio.to_thread(
            place_instances, source.context(), source.factory, options, gpus=gpus, builder=builder
        )
        try:
            pool = InstancePool(instances, run_now_below_us=run_now_below_us)
        except BaseException:
            await asyncio.to_thread(close_instances, instances)
            raise
        try:
            if ray is not None and ray.share and config.HasField("sequence_batching"):
                scheduler = _routed_sequences(source, pool, stats, default_max_queue_size)
            else:
                scheduler = make_scheduler(
                    config,
                    pool,
                    stats,
                    router=router,
                    model_dir=source.model_dir,
                    default_max_queue_size=default_max_queue_size,
                )
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
    scheduler = _with_cache(source, scheduler, stats, cache)
    return LoadedVersion(
        name=source.name,
        version=source.version,
        config=config,
        signature=signature,
        scheduler=scheduler,
        pool=pool,
        stats=stats,
        backend=backend,
    )


def python_runtime(config: ModelConfig, backend: str, default: str) -> str:
    """Where a model's Python code runs: ``process``, ``in-server``, or "" (not a python model).

    The model's ``HEADRACE_PYTHON_RUNTIME`` parameter wins; otherwise python-backend models
    take ``default`` (``--python-runtime``) and bound callables run in the server.
    """
    entry = config.parameters.get(PYTHON_RUNTIME_PARAMETER)
    chosen = entry.string_value.strip() if entry is not None else ""
    if backend not in _PYTHON_BACKENDS:
        if chosen:
            raise InvalidConfig(
                f"model '{config.name}': parameter {PYTHON_RUNTIME_PARAMETER} applies to "
                f"python models only; this model runs on the '{backend}' backend"
            )
        return ""
    if chosen and chosen not in PYTHON_RUNTIMES:
        raise InvalidConfig(
            f"model '{config.name}': parameter {PYTHON_RUNTIME_PARAMETER} is '{chosen}'; "
            f"use one of {', '.join(PYTHON_RUNTIMES)}"
        )
    return chosen or (default if backend == "python" else "in-server")


def _builder(runtime: str) -> InstanceBuilder | None:
    if runtime != "process":
        return None
    from headrace.engine.process_instance import ProcessExecutor

    return ProcessExecutor()


def _ray_builder(source: VersionSource, ray: RayServing | None) -> InstanceBuilder | None:
    if ray is None:
        return None
    if source.config.model_transaction_policy.decoupled:
        _log.warning(
            "model '%s' is decoupled: its responses go through each request's stream, which "
            "cannot reach a Ray actor, so its instances run in this server (not on "
            "--ray-address)",
            source.name,
        )
        return None
    from headrace.engine.ray_executor import RayExecutor

    return RayExecutor(
        address=ray.address,
        num_gpus=ray.num_gpus_per_instance,
        max_restarts=ray.max_restarts,
        namespace=ray.namespace,
        shared=ray.share,
        placement_timeout_s=ray.placement_timeout_s,
    )


def _routed_sequences(
    source: VersionSource, pool: InstancePool, stats: VersionStatistics, max_queue_size: int
) -> Scheduler:
    """A sequence model shared by several frontends batches in its actors (``--ray-share``)."""
    from headrace.scheduling.routed_sequence import RoutedSequenceScheduler

    instances: list[Any] = [i for i in pool.instances if hasattr(i, "call")]
    if len(instances) != len(pool):  # a model that stayed local (decoupled) keeps its batcher
        return make_scheduler(
            source.config,
            pool,
            stats,
            model_dir=source.model_dir,
            default_max_queue_size=max_queue_size,
        )
    return RoutedSequenceScheduler(
        source.config,
        instances,
        stats,
        model_dir=source.model_dir,
        max_queue_size=max_queue_size,
    )


def _cluster_gpus(builder: InstanceBuilder | None) -> tuple[int, ...] | None:
    """The GPUs placement plans on: the Ray cluster's for Ray actors, else this machine's."""
    cluster_gpus = getattr(builder, "cluster_gpus", None)
    return cluster_gpus() if cluster_gpus is not None else None


def _with_cache(
    source: VersionSource,
    scheduler: Scheduler,
    stats: VersionStatistics,
    cache: ResponseCache | None,
) -> Scheduler:
    config = source.config
    if not config.response_cache.enable:
        return scheduler
    if cache is None:
        _log.warning(
            "model '%s' version %d enables response_cache, but the server has no cache "
            "(--cache-config local,size=BYTES): it runs uncached",
            source.name,
            source.version,
        )
        return scheduler
    if config.model_transaction_policy.decoupled or config.HasField("sequence_batching"):
        return scheduler  # validate_config refuses these; a backend may set decoupled later
    return CachingScheduler(scheduler, cache, stats, name=source.name, version=source.version)
