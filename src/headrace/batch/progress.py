"""A ``rich`` progress bar for offline jobs: rows done, rows/s and, on a GPU, utilisation.

Utilisation comes from NVML (``nvidia-ml-py``) when it is installed; without it, or on the
CPU, the bar shows rows/s only. ``enabled=False`` (``--quiet``, or no terminal) draws nothing.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

__all__ = ["JobProgress"]


class JobProgress:
    """Context manager; ``advance(rows)`` may be called from one thread at a time."""

    def __init__(self, total: int, done: int, *, enabled: bool, device: str = "cpu") -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self._progress: Any = None
        self._task: Any = None
        self._nvml: Any = _nvml_handle(device) if enabled else None
        self._started = time.monotonic()
        self._last_refresh = 0.0

    def __enter__(self) -> JobProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]headrace run"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows  {task.fields[rate]:>10} rows/s  {task.fields[gpu]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "run", total=self.total, completed=self.done, rate="-", gpu=""
            )
        return self

    def advance(self, rows: int) -> None:
        self.done += rows
        if self._progress is None:
            return
        now = time.monotonic()
        fields: dict[str, Any] = {}
        if now - self._last_refresh > 0.5:
            self._last_refresh = now
            speed = self._progress.tasks[0].speed
            fields["rate"] = f"{speed:,.0f}" if speed else "-"
            if self._nvml is not None:
                fields["gpu"] = f"GPU {self._nvml()}%"
        self._progress.update(self._task, advance=rows, **fields)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, error, trace)


def _nvml_handle(device: str) -> Any:
    """A zero-argument function giving the GPU's utilisation %, or None when unavailable."""
    if not device.startswith("cuda"):
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        index = int(device.partition(":")[2] or 0)
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None
    return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
