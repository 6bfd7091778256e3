"""Per-batch stage timings and the per-instance statistics built from them.

The pipeline measures every batch it runs (:class:`StageTimes`); the instance folds them into
:class:`InstanceStats`, which the server reads for Triton's ``compute_input`` /
``compute_infer`` / ``compute_output`` and the benchmarks read for stage-by-stage bounds.

Mapping to Triton's statistics: ``compute_input`` = host staging (preprocess + collation into
the slot) + H2D copy; ``compute_infer`` = the model's compute; ``compute_output`` = D2H copy +
hand-over. On the CPU pipeline the copy stages are zero. CUDA stage times come from CUDA
events (device time), host stages from ``time.monotonic_ns()``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

__all__ = [
    "STAGES",
    "InstanceStats",
    "StageTimes",
    "StatsSink",
    "StatsSnapshot",
    "stage_means_ms",
]


class StatsSink(Protocol):
    """Receives timings for Triton-style statistics and metrics (nanoseconds, monotonic)."""

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None: ...

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None: ...


@dataclass(slots=True)
class StageTimes:
    """How long one batch spent in each pipeline stage, in nanoseconds.

    Made once per batch and never changed; slotted rather than frozen, as a frozen
    dataclass costs a microsecond or two more to build, on every batch."""

    batch_size: int = 0
    stage_ns: int = 0
    h2d_ns: int = 0
    compute_ns: int = 0
    d2h_ns: int = 0
    handover_ns: int = 0

    @property
    def compute_input_ns(self) -> int:
        return self.stage_ns + self.h2d_ns

    @property
    def compute_infer_ns(self) -> int:
        return self.compute_ns

    @property
    def compute_output_ns(self) -> int:
        return self.d2h_ns + self.handover_ns

    @property
    def total_ns(self) -> int:
        """The batch's time if its stages ran back to back (the sequential cost)."""
        return self.compute_input_ns + self.compute_infer_ns + self.compute_output_ns


STAGES: tuple[str, ...] = tuple(f.name for f in fields(StageTimes) if f.name.endswith("_ns"))
"""Stage field names of :class:`StageTimes`, in pipeline order."""


@dataclass(frozen=True)
class StatsSnapshot:
    """Totals since the instance started; means are per executed batch."""

    batches: int = 0
    failed_batches: int = 0
    items: int = 0
    totals_ns: dict[str, int] = field(default_factory=dict)
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def mean_ns(self, stage: str) -> float:
        """Mean time of ``stage`` (a :data:`STAGES` name) over successful batches."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self.totals_ns.get(stage, 0) / self.batches if self.batches else 0.0


class InstanceStats:
    """Thread-safe accumulator of :class:`StageTimes`; one per model instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches = 0
        self._failed = 0
        self._items = 0
        self._totals = dict.fromkeys(STAGES, 0)
        self._sizes: dict[int, int] = {}

    def record(self, times: StageTimes) -> None:
        """Add one successful batch."""
        with self._lock:
            self._batches += 1
            self._items += times.batch_size
            for stage in STAGES:
                self._totals[stage] += getattr(times, stage)
            self._sizes[times.batch_size] = self._sizes.get(times.batch_size, 0) + 1

    def record_failure(self) -> None:
        with self._lock:
            self._failed += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                batches=self._batches,
                failed_batches=self._failed,
                items=self._items,
                totals_ns=dict(self._totals),
                batch_sizes=dict(self._sizes),
            )


def stage_means_ms(
    before: Sequence[StatsSnapshot], after: Sequence[StatsSnapshot]
) -> dict[str, float]:
    """Mean milliseconds per batch of each stage (named without ``_ns``) between two sets of
    snapshots of the same instances, over all of them."""
    batches = sum(a.batches for a in after) - sum(b.batches for b in before)
    means = {}
    for stage in STAGES:
        total = sum(a.totals_ns[stage] - b.totals_ns[stage] for a, b in zip(after, before))
        means[stage.removesuffix("_ns")] = total / max(batches, 1) / 1e6
    return means
