"""The model instances of a job: one loaded :class:`ModelInstance` per ``--instances``.

Which model a job runs is resolved by :mod:`headrace.repository.resolve`.
"""

from __future__ import annotations

from headrace.engine.instance import ModelInstance
from headrace.errors import InvalidInput
from headrace.repository.resolve import ResolvedModel

__all__ = ["device_for", "make_instances"]


def device_for(device: str, index: int) -> str:
    """``cpu``, ``cuda:N`` as given, or ``cuda``: instance ``index`` round-robin over GPUs."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise InvalidInput("--device cuda asked for, but torch sees no GPU")
    return f"cuda:{index % count}"


def make_instances(
    model: ResolvedModel, *, count: int, device: str, num_buffers: int
) -> list[ModelInstance]:
    """``count`` loaded instances of ``model``; closes those built so far when one fails."""
    instances: list[ModelInstance] = []
    try:
        for index in range(count):
            backend = model.load_backend(device_for(device, index), f"{model.name}_{index}")
            instances.append(ModelInstance(backend, num_buffers=num_buffers))
    except BaseException:
        for instance in instances:
            instance.close()
        raise
    return instances
