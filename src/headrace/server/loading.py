"""Turn one model version's configuration into running instances and a scheduler.

Each ``instance_group`` entry gives ``count`` backend objects per device: on each listed GPU
(all GPUs when none are listed) for ``KIND_GPU`` — and for ``KIND_AUTO`` when torch sees a
GPU — otherwise on the CPU. Backends load on worker threads (loading is blocking file and
device work); the scheduler is built on the event loop. A failure part-way closes whatever
was already built, so nothing leaks into a half-loaded version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.config import ModelConfig
from headrace.errors import HeadraceError, InternalError
from headrace.server.models import LoadedVersion
from headrace.server.statistics import VersionStatistics
from headrace.server.validation import Signature

__all__ = ["BackendFactory", "VersionSource", "gpu_count", "instance_contexts", "load_version"]

BackendFactory = Callable[[BackendContext], Backend]
"""Builds (and loads) one backend object for one instance."""

if TYPE_CHECKING:
    from headrace.engine.instance import ModelInstance

_Group = model_config_pb2.ModelInstanceGroup
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionSource:
    """Where one version comes from: its completed config, directories and backend factory."""

    name: str
    version: int
    config: ModelConfig
    factory: BackendFactory
    model_dir: str = ""
    version_dir: str = ""


def gpu_count() -> int:
    """GPUs torch can see; 0 without torch or without a device."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def instance_contexts(source: VersionSource, gpus: int) -> list[BackendContext]:
    """One BackendContext per instance the config's instance groups ask for."""
    config = source.config
    groups = list(config.instance_group) or [_Group(count=1, kind=_Group.KIND_AUTO)]
    contexts: list[BackendContext] = []
    for group_index, group in enumerate(groups):
        group_name = group.name or f"{source.name}_{group_index}"
        count = group.count if group.count > 0 else 1
        devices = _devices(group, gpus)
        for device in devices:
            for index in range(count):
                suffix = f"_{device.replace(':', '')}" if len(devices) > 1 else ""
                contexts.append(
                    BackendContext(
                        model_name=source.name,
                        version=source.version,
                        model_dir=source.model_dir,
                        version_dir=source.version_dir,
                        config=config,
                        device=device,
                        instance_name=f"{group_name}_{index}{suffix}",
                    )
                )
    return contexts


def _devices(group: model_config_pb2.ModelInstanceGroup, gpus: int) -> list[str]:
    wants_gpu = group.kind == _Group.KIND_GPU or (group.kind == _Group.KIND_AUTO and gpus > 0)
    if not wants_gpu or gpus == 0:
        return ["cpu"]
    listed = list(group.gpus) or list(range(gpus))
    return [f"cuda:{index}" for index in listed if index < gpus] or ["cpu"]


async def load_version(
    source: VersionSource,
    *,
    make_scheduler: Callable[..., object],
    signature: Signature,
    backend_name: str,
    num_buffers: int = 2,
    run_now_below_us: float = 0.0,
) -> LoadedVersion:
    """Build the instances (on threads), the pool and the scheduler of one version."""
    from headrace.scheduling.pool import InstancePool

    contexts = instance_contexts(source, gpu_count())
    instances = await asyncio.to_thread(_build_instances, source, contexts, num_buffers)
    stats = VersionStatistics(source.name, str(source.version))
    try:
        pool = InstancePool(instances, run_now_below_us=run_now_below_us)
    except BaseException:
        await asyncio.to_thread(_close_instances, instances)
        raise
    try:
        scheduler = make_scheduler(source.config, pool, stats)
    except BaseException:
        await asyncio.to_thread(pool.close)
        raise
    return LoadedVersion(
        name=source.name,
        version=source.version,
        config=source.config,
        signature=signature,
        scheduler=scheduler,  # type: ignore[arg-type]
        pool=pool,
        stats=stats,
        backend=backend_name,
    )


def _build_instances(
    source: VersionSource, contexts: list[BackendContext], num_buffers: int
) -> list[ModelInstance]:
    # Imported here, after headrace.scheduling: engine.instance and scheduling import each other.
    from headrace.engine.instance import ModelInstance

    instances: list[ModelInstance] = []
    try:
        for context in contexts:
            backend = source.factory(context)
            instances.append(
                ModelInstance(backend, num_buffers=num_buffers, name=context.instance_name)
            )
    except HeadraceError:
        _close_instances(instances)
        raise
    except Exception as exc:
        _close_instances(instances)
        raise InternalError(
            f"model '{source.name}' version {source.version} failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return instances


def _close_instances(instances: list[ModelInstance]) -> None:
    for instance in instances:
        try:
            instance.close()
        except Exception as exc:  # closing must go on for the others
            _log.warning("closing instance %s failed: %s", instance.name, exc)
