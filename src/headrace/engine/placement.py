"""Placement: the one place that turns a model's ``instance_group`` into model instances.

``headrace serve``, ``headrace run`` and ``headrace bench`` all place a model through here, so
``instance_group [{ count: 2, kind: KIND_CPU }]`` means two instances in every door. Each
group gives ``count`` instances per device: on each listed GPU (all GPUs when none are listed)
for ``KIND_GPU``, and for ``KIND_AUTO`` when there is a GPU, otherwise on the CPU. A door may
override the configuration (``headrace run --instances N --device D``): ``count`` replaces the
groups by one group of that many instances, ``device`` decides their kind and device.

Planning (:func:`plan_instances`) is pure; building loads one backend per planned instance
with the model's :data:`~headrace.backends.base.BackendFactory`. The default builder
(:func:`build_instances`) wraps each in a local :class:`~headrace.engine.instance.ModelInstance`
on this process's threads; :class:`~headrace.engine.ray_executor.RayExecutor` puts each in a Ray
actor instead. Either way the pool gets :class:`~headrace.engine.executor.Executor` objects and
drives them alike. If one fails, those already built are closed, so nothing leaks from a
half-placed model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext, BackendFactory
from headrace.devices import available_gpus, resolve_device
from headrace.engine.executor import Executor
from headrace.engine.instance import ModelInstance
from headrace.engine.slots import Preprocess
from headrace.errors import HeadraceError, InternalError, InvalidInput

__all__ = [
    "InstanceBuilder",
    "InstanceSpec",
    "PlacementOptions",
    "build_instances",
    "close_instances",
    "place_instances",
    "plan_instances",
]

_Group = model_config_pb2.ModelInstanceGroup
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to build: the group it belongs to, its name and its device."""

    group: str
    name: str
    device: str

    @property
    def kind(self) -> str:
        return "gpu" if self.device.startswith("cuda") else "cpu"


@dataclass(frozen=True)
class PlacementOptions:
    """How instances are placed and built; ``count``/``device`` override the configuration."""

    count: int | None = None
    """Instances in all, instead of the configuration's groups (None: the groups decide)."""
    device: str = ""
    """``auto``, ``cpu``, ``cuda`` (round-robin over GPUs) or ``cuda:N``; "" keeps the groups'."""
    num_buffers: int = 2
    pin_memory: bool = True
    preprocess: Preprocess | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise InvalidInput(f"instance count must be at least 1, got {self.count}")
        if self.num_buffers < 1:
            raise InvalidInput(f"num_buffers must be at least 1, got {self.num_buffers}")


def plan_instances(
    config: model_config_pb2.ModelConfig,
    *,
    gpus: Sequence[int] | None = None,
    count: int | None = None,
    device: str = "",
) -> list[InstanceSpec]:
    """The instances ``config`` asks for (or ``count`` on ``device``, when given).

    ``gpus`` are the GPU ids that may be used (default: every GPU torch sees).
    """
    usable = tuple(available_gpus() if gpus is None else gpus)
    name = config.name
    if count is not None or device:
        return _override(name, config, usable, count, device)
    groups = list(config.instance_group) or [_Group(count=1, kind=_Group.KIND_AUTO)]
    specs: list[InstanceSpec] = []
    for group_index, group in enumerate(groups):
        group_name = group.name or f"{name}_{group_index}"
        devices = _group_devices(group, usable)
        for device_name in devices:
            suffix = f"_{device_name.replace(':', '')}" if len(devices) > 1 else ""
            for index in range(max(1, group.count)):
                specs.append(InstanceSpec(group_name, f"{group_name}_{index}{suffix}", device_name))
    return specs


def _override(
    name: str,
    config: model_config_pb2.ModelConfig,
    gpus: tuple[int, ...],
    count: int | None,
    device: str,
) -> list[InstanceSpec]:
    if count is None:
        count = sum(max(1, group.count) for group in config.instance_group) or 1
    group = f"{name}_0"
    return [
        InstanceSpec(group, f"{group}_{index}", _device(device or "auto", index, gpus))
        for index in range(count)
    ]


def _device(device: str, index: int, gpus: tuple[int, ...]) -> str:
    if device in ("auto", "cuda"):
        if not gpus:
            return resolve_device(device, index)  # "auto" → cpu; "cuda" → a clear error
        return f"cuda:{gpus[index % len(gpus)]}"
    return resolve_device(device, index)


def _group_devices(group: model_config_pb2.ModelInstanceGroup, gpus: tuple[int, ...]) -> list[str]:
    wants_gpu = group.kind == _Group.KIND_GPU or (group.kind == _Group.KIND_AUTO and bool(gpus))
    if not wants_gpu or not gpus:
        return ["cpu"]
    listed = list(group.gpus) or list(gpus)
    return [f"cuda:{index}" for index in listed if index in gpus] or ["cpu"]


class InstanceBuilder(Protocol):
    """Builds one instance per spec: here (:func:`build_instances`) or in Ray actors."""

    def __call__(
        self,
        specs: Sequence[InstanceSpec],
        factory: BackendFactory,
        base: BackendContext,
        options: PlacementOptions,
    ) -> Sequence[Executor]: ...


def build_instances(
    specs: Sequence[InstanceSpec],
    factory: BackendFactory,
    base: BackendContext,
    options: PlacementOptions | None = None,
) -> list[ModelInstance]:
    """Load one backend per spec (``factory`` with ``base`` on the spec's device and name)."""
    options = options or PlacementOptions()
    instances: list[ModelInstance] = []
    try:
        for spec in specs:
            context = replace(base, device=spec.device, instance_name=spec.name)
            instances.append(
                ModelInstance(
                    factory(context),
                    num_buffers=options.num_buffers,
                    name=spec.name,
                    pin_memory=options.pin_memory,
                    preprocess=options.preprocess,
                )
            )
    except HeadraceError:
        close_instances(instances)
        raise
    except Exception as exc:
        close_instances(instances)
        raise InternalError(
            f"model '{base.model_name}' version {base.version} failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return instances


def place_instances(
    base: BackendContext,
    factory: BackendFactory,
    options: PlacementOptions | None = None,
    *,
    gpus: Sequence[int] | None = None,
    builder: InstanceBuilder | None = None,
) -> list[Any]:
    """Plan ``base.config``'s instances (with ``options``' overrides) and build them, here
    (local :class:`ModelInstance` objects) or with ``builder`` (Ray actors)."""
    options = options or PlacementOptions()
    specs = plan_instances(base.config, gpus=gpus, count=options.count, device=options.device)
    return list((builder or build_instances)(specs, factory, base, options))


def close_instances(instances: Sequence[Any]) -> None:
    """Close every instance; a failure to close one is logged and the others still close."""
    for instance in instances:
        try:
            instance.close()
        except Exception as exc:
            _log.warning("closing instance %s failed: %s", instance.name, exc)
