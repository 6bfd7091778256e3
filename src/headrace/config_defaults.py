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

from headrace.errors import InvalidConfig

__all__ = [
    "ENSEMBLE_PLATFORM",
    "SEQUENCE_IDLE_DEFAULT_US",
    "available_gpus",
    "check_platform_backend",
    "default_model_filename",
    "fill_defaults",
    "platform_backend",
]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig
InstanceGroup: TypeAlias = model_config_pb2.ModelInstanceGroup

ENSEMBLE_PLATFORM = "ensemble"
#: Triton's default ``max_sequence_idle_microseconds`` (one second).
SEQUENCE_IDLE_DEFAULT_US = 1_000_000

# platform -> the backend that serves it (Triton's GetBackendTypeFromPlatform).
_PLATFORM_BACKEND = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorrt_plan": "tensorrt",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}
# backend -> the platform Triton fills in when only the backend is given.
_BACKEND_PLATFORM = {
    "onnxruntime": "onnxruntime_onnx",
    "pytorch": "pytorch_libtorch",
    "tensorrt": "tensorrt_plan",
}
# Backends whose platform is checked against the backend; others accept any platform.
_KNOWN_BACKENDS = frozenset(_PLATFORM_BACKEND.values())

_DEFAULT_FILENAMES = {
    "onnxruntime": "model.onnx",
    "pytorch": "model.pt",
    "python": "model.py",
    "tensorrt": "model.plan",
    "openvino": "model.xml",
    "tensorflow_graphdef": "model.graphdef",
    "tensorflow_savedmodel": "model.savedmodel",
}

# Triton starts two CPU instances by default for these backends, one for every other.
_TWO_CPU_INSTANCE_BACKENDS = frozenset({"onnxruntime", "tensorflow"})


def check_platform_backend(platform: str, backend: str, source: str = "") -> None:
    """Reject a platform/backend pair Triton would refuse (without changing anything)."""
    if platform == ENSEMBLE_PLATFORM:
        if backend:
            raise InvalidConfig(
                f"ensemble models must have an empty backend, got {backend!r}",
                source=source,
                field="backend",
            )
        return
    if not platform and not backend:
        raise InvalidConfig("must specify 'platform' or 'backend'", source=source)
    if backend in _KNOWN_BACKENDS and platform and _PLATFORM_BACKEND.get(platform) != backend:
        raise InvalidConfig(
            f"platform {platform!r} cannot be served by backend {backend!r}",
            source=source,
            field="platform",
        )


def platform_backend(config: ModelConfig, source: str = "") -> str:
    """Complete the platform/backend pair as Triton does and return the backend name.

    ``onnxruntime_onnx`` pairs with ``onnxruntime`` and ``pytorch_libtorch`` with ``pytorch``
    (either side fills the other); ``python`` has no platform. Ensembles have platform
    ``ensemble`` and no backend; for them ``"ensemble"`` is returned.
    """
    if not config.backend and config.platform in _PLATFORM_BACKEND:
        config.backend = _PLATFORM_BACKEND[config.platform]
    if not config.platform and config.backend in _BACKEND_PLATFORM:
        config.platform = _BACKEND_PLATFORM[config.backend]
    check_platform_backend(config.platform, config.backend, source)
    return ENSEMBLE_PLATFORM if config.platform == ENSEMBLE_PLATFORM else config.backend


def default_model_filename(platform: str, backend: str) -> str:
    """The model file Triton looks for in a version directory; empty when unknown."""
    if backend == "tensorflow":
        return _DEFAULT_FILENAMES.get(platform, "")
    return _DEFAULT_FILENAMES.get(backend, "")


def available_gpus() -> tuple[int, ...]:
    """Device ids of the GPUs torch can see; empty without torch or without a GPU."""
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    return tuple(range(torch.cuda.device_count()))


def fill_defaults(config: ModelConfig, *, gpus: Sequence[int] = (), source: str = "") -> None:
    """Apply Triton's own defaults to ``config`` in place.

    ``gpus`` lists the GPU device ids the server may use; it decides ``KIND_AUTO`` groups and
    the devices of ``KIND_GPU`` groups. It defaults to none so results do not depend on the
    machine; pass :func:`available_gpus` to use the real ones.
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
            two = group.kind == InstanceGroup.KIND_CPU and config.backend in (
                _TWO_CPU_INSTANCE_BACKENDS
            )
            group.count = 2 if two else 1
        if group.kind == InstanceGroup.KIND_GPU and not group.gpus:
            group.gpus.extend(gpus)
