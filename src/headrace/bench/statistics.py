"""The numbers a study reports about repeated measurements: mean, s.e.m. and percentiles.

The saturation studies' method: n trials, one throughput ``T = items / seconds`` per trial, the
mean and the standard error of the mean ``std / sqrt(n)``. ``std`` is the sample standard
deviation (``ddof = 1``), so one trial has no error bar (s.e.m. 0, reported as such).
Percentiles interpolate linearly between the closest ranks, as numpy's default does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from headrace.errors import InvalidInput

__all__ = ["Summary", "percentile", "sem", "summarize"]

Values = npt.ArrayLike


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation, s.e.m., extremes and percentiles of n values."""

    n: int
    mean: float
    std: float
    sem: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float


def sem(values: Values) -> float:
    """Standard error of the mean: sample std (ddof 1) / sqrt(n); 0 for a single value."""
    data = _array(values)
    if data.size < 2:
        return 0.0
    return float(np.std(data, ddof=1) / math.sqrt(data.size))


def percentile(values: Values, q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not 0.0 <= q <= 100.0:
        raise InvalidInput(f"percentile {q!r} is outside 0-100")
    return float(np.percentile(_array(values), q))


def summarize(values: Values) -> Summary:
    """Every statistic of :class:`Summary` over ``values``."""
    data = _array(values)
    p50, p90, p95, p99 = (float(v) for v in np.percentile(data, [50, 90, 95, 99]))
    return Summary(
        n=int(data.size),
        mean=float(data.mean()),
        std=float(np.std(data, ddof=1)) if data.size > 1 else 0.0,
        sem=sem(data),
        min=float(data.min()),
        max=float(data.max()),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )


def _array(values: Values) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise InvalidInput("no measurements to summarize")
    return data
