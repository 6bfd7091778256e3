"""Which accelerators this process can use, asked in one place.

Every door and layer that needs to know about GPUs (auto-completing instance groups, placing
instances, picking a benchmark device) asks here, so ``KIND_AUTO``, ``--device auto`` and
``--device cuda`` mean the same thing everywhere. torch is the only way headrace reaches a
GPU (``torch.cuda`` is HIP on ROCm builds); without torch there are none.
"""

from __future__ import annotations

from headrace.errors import InvalidInput

__all__ = ["available_gpus", "gpu_count", "resolve_device"]


def available_gpus() -> tuple[int, ...]:
    """Device ids of the GPUs torch can see; empty without torch or without a GPU."""
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    return tuple(range(torch.cuda.device_count()))


def gpu_count() -> int:
    """How many GPUs torch can see (0 without torch or without a device)."""
    return len(available_gpus())


def resolve_device(device: str, index: int = 0) -> str:
    """A concrete device for instance ``index``: ``cpu`` or ``cuda:N``.

    ``auto`` is ``cuda:0`` when there is a GPU, else ``cpu``; ``cuda`` spreads instances
    round-robin over the GPUs (``cuda:index % count``); ``cpu`` and ``cuda:N`` are kept.
    Asking for ``cuda`` without a GPU is an error that says so.
    """
    if device in ("", "auto"):
        gpus = available_gpus()
        return f"cuda:{gpus[index % len(gpus)]}" if gpus else "cpu"
    if device == "cuda":
        gpus = available_gpus()
        if not gpus:
            raise InvalidInput("device 'cuda' asked for, but torch sees no GPU")
        return f"cuda:{gpus[index % len(gpus)]}"
    if device == "cpu" or device.startswith("cuda:"):
        return device
    raise InvalidInput(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
