"""The statistics of a load measurement as perf_analyzer defines them.

perf_analyzer measures in windows and calls a load level stable once its last three windows
each lie within ±stability % of their own mean, in throughput and in average latency; the
result is those three windows merged (all their latencies, all their completions over their
summed time). Percentiles are nearest-rank on the sorted latencies: index
``round(p / 100 * (n - 1))``. :func:`summarize_windows` applies both, so the load generator
and its unit tests share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PERCENTILES",
    "STABLE_WINDOWS",
    "Window",
    "WindowSummary",
    "is_stable",
    "percentile_us",
    "summarize_windows",
]

PERCENTILES = (50, 90, 95, 99)
STABLE_WINDOWS = 3
"""How many trailing windows the stability rule compares (perf_analyzer's fixed three)."""


@dataclass(frozen=True)
class Window:
    """One measurement window: what completed in it and how long it lasted."""

    duration_s: float
    latencies_us: np.ndarray
    """One entry per request that completed successfully inside the window."""
    batch_size: int = 1
    errors: int = 0
    responses: int | None = None
    """A decoupled model's responses in the window (None: one per request, not counted)."""

    @property
    def throughput(self) -> float:
        """Inferences per second (requests times batch size)."""
        if self.duration_s <= 0:
            return 0.0
        return len(self.latencies_us) * self.batch_size / self.duration_s

    @property
    def avg_latency_us(self) -> float:
        return float(np.mean(self.latencies_us)) if len(self.latencies_us) else 0.0


@dataclass(frozen=True)
class WindowSummary:
    """Windows merged into one result row's client-side numbers."""

    throughput: float
    requests: int
    errors: int
    avg_us: float
    percentiles_us: dict[int, float]
    response_throughput: float | None = None
    """Responses per second, for a decoupled model (perf_analyzer's "Response Throughput")."""


def percentile_us(sorted_latencies: np.ndarray, percentile: float) -> float:
    """Nearest-rank percentile of already sorted latencies; 0 for none."""
    n = len(sorted_latencies)
    if n == 0:
        return 0.0
    index = int(percentile / 100.0 * (n - 1) + 0.5)
    return float(sorted_latencies[min(index, n - 1)])


def is_stable(windows: Sequence[Window], stability_percent: float) -> bool:
    """True when the last three windows are within ±``stability_percent`` of their mean.

    Both throughput and average latency must hold; fewer than three windows, or a window that
    completed nothing, is never stable.
    """
    if len(windows) < STABLE_WINDOWS:
        return False
    last = windows[-STABLE_WINDOWS:]
    if any(len(w.latencies_us) == 0 for w in last):
        return False
    bound = stability_percent / 100.0
    for values in ([w.throughput for w in last], [w.avg_latency_us for w in last]):
        mean = sum(values) / len(values)
        if any(abs(v - mean) > bound * mean for v in values):
            return False
    return True


def summarize_windows(windows: Sequence[Window]) -> WindowSummary:
    """Merge windows (usually the last three) into throughput, mean and percentiles."""
    duration = sum(w.duration_s for w in windows)
    latencies = (
        np.sort(np.concatenate([w.latencies_us for w in windows]))
        if windows
        else np.empty(0, dtype=np.float64)
    )
    batch = windows[-1].batch_size if windows else 1
    counted = [w.responses for w in windows if w.responses is not None]
    response_throughput = None
    if windows and len(counted) == len(windows) and duration > 0:
        response_throughput = sum(counted) / duration
    return WindowSummary(
        throughput=len(latencies) * batch / duration if duration > 0 else 0.0,
        requests=len(latencies),
        errors=sum(w.errors for w in windows),
        avg_us=float(np.mean(latencies)) if len(latencies) else 0.0,
        percentiles_us={p: percentile_us(latencies, p) for p in PERCENTILES},
        response_throughput=response_throughput,
    )
