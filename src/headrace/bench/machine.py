"""What machine a benchmark ran on, recorded next to every result.

Numbers without the machine are not results. Optional sources (torch, nvidia-ml-py, psutil)
are used when installed and skipped silently when not: a missing GPU name is not an error.
"""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["cpu_model", "gpu_info", "machine_info"]


def machine_info() -> dict[str, Any]:
    """Host, CPU, memory, GPUs and library versions, JSON-ready."""
    import numpy

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": _memory_bytes(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": numpy.__version__,
        "gpus": gpu_info(),
    }
    torch = _optional("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["torch_hip"] = getattr(torch.version, "hip", None)
        info["torch_threads"] = torch.get_num_threads()
    return info


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_info() -> list[dict[str, Any]]:
    """One entry per visible GPU: name and memory (torch), driver version (NVML) when known."""
    torch = _optional("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    driver = _nvml_driver()
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "index": index,
                "name": props.name,
                "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
                "driver": driver,
            }
        )
    return gpus


def _nvml_driver() -> str | None:
    pynvml = _optional("pynvml")
    if pynvml is None:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML missing or no NVIDIA driver (e.g. ROCm): not an error here
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def _memory_bytes() -> int | None:
    psutil = _optional("psutil")
    if psutil is not None:
        return int(psutil.virtual_memory().total)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _optional(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None
