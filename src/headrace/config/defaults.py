"""Triton's model-file-independent defaults for a ``ModelConfig``.

These are the values Triton itself fills in after a backend has auto-completed inputs and
outputs (``NormalizeModelConfig`` / ``NormalizeInstanceGroup`` in Triton's core): the
platform/backend pair, the default model file name, the version policy, preferred batch sizes,
the sequence idle timeout, pinned-memory flags and instance groups. Filling them here lets the
``v2/models/{m}/config`` endpoint show the same completed configuration Triton would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.config.platforms import (
    ENSEMBLE_PLATFORM,
    backend_of_platform,
    check_platform_backend,
    default_cpu_instances,
    default_model_filename,
    platform_of_backend,
)

__all__ = [
    "SEQUENCE_IDLE_DEFAULT_US",
    "fill_defaults",
    "platform_backend",
]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig
InstanceGroup: TypeAlias = model_config_pb2.ModelInstanceGroup

#: Triton's default ``max_sequence_idle_microseconds`` (one second).
SEQUENCE_IDLE_DEFAULT_US = 1_000_000


def platform_backend(config: ModelConfig, source: str = "") -> str:
    """Complete the platform/backend pair as Triton does and return the backend name.

    ``onnxruntime_onnx`` pairs with ``onnxruntime`` and ``pytorch_libtorch`` with ``pytorch``
    (either side fills the other); ``python`` has no platform. Ensembles have platform
    ``ensemble`` and no backend; for them ``"ensemble"`` is returned.
    """
    if not config.backend:
        config.backend = backend_of_platform(config.platform)
    if not config.platform:
        config.platform = platform_of_backend(config.backend)
    check_platform_backend(config.platform, config.backend, source)
    return ENSEMBLE_PLATFORM if config.platform == ENSEMBLE_PLATFORM else config.backend


def fill_defaults(config: ModelConfig, *, gpus: Sequence[int] = (), source: str = "") -> None:
    """Apply Triton's own defaults to ``config`` in place.

    ``gpus`` lists the GPU device ids the server may use; it decides ``KIND_AUTO`` groups and
    the devices of ``KIND_GPU`` groups. It defaults to none so results do not depend on the
    machine; pass :func:`headrace.devices.available_gpus` to use the real ones.
    """
    backend = platform_backend(config, source)
    if not config.default_model_filename:
        config.default_model_filename = default_model_filename(config.platform, config.backend)
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    _fill_batching(config)
    if config.HasField("ensemble_scheduling") or backend == ENSEMBLE_PLATFORM:
        return
    optimization = config.optimization
    if not optimization.HasField("input_pinned_memory"):
        optimization.input_pinned_memory.enable = True
    if not optimization.HasField("output_pinned_memory"):
        optimization.output_pinned_memory.enable = True
    _fill_instance_groups(config, tuple(gpus))


def _fill_batching(config: ModelConfig) -> None:
    """Preferred batch sizes default to max_batch_size; sequences idle out after 1 s."""
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        if not batching.preferred_batch_size and config.max_batch_size > 0:
            batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        sequence = config.sequence_batching
        if sequence.max_sequence_idle_microseconds == 0:
            sequence.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_US
        if sequence.HasField("oldest"):
            oldest = sequence.oldest
            if not oldest.preferred_batch_size and config.max_batch_size > 0:
                oldest.preferred_batch_size.append(config.max_batch_size)


def _fill_instance_groups(config: ModelConfig, gpus: tuple[int, ...]) -> None:
    """One group named after the model when none is given; then names, kinds, counts, GPUs."""
    if not config.instance_group:
        group = config.instance_group.add()
        group.name = config.name
        group.kind = InstanceGroup.KIND_AUTO
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == InstanceGroup.KIND_AUTO:
            usable = bool(gpus) and all(gpu in gpus for gpu in group.gpus)
            group.kind = InstanceGroup.KIND_GPU if usable else InstanceGroup.KIND_CPU
        if group.count < 1:
            cpu = group.kind == InstanceGroup.KIND_CPU
            group.count = default_cpu_instances(config.backend) if cpu else 1
        if group.kind == InstanceGroup.KIND_GPU and not group.gpus:
            group.gpus.extend(gpus)
