"""Per model version statistics with Triton's field meanings.

:class:`VersionStatistics` is the :class:`~headrace.scheduling.base.StatsSink` a version's
scheduler reports to. The statistics endpoint reads :meth:`VersionStatistics.snapshot`; the
Prometheus collector reads the same snapshot at scrape time, so the request path pays only for
a lock and a few additions.

Triton's meanings: ``success``/``fail`` count requests and sum their end-to-end time;
``queue`` sums time waiting for an instance; ``inference_count`` counts batch items and
``execution_count`` model executions; ``compute_*`` and ``batch_stats`` are per execution.
A response cache hit is a successful request (with ``cache_hit``) that executes nothing; a
successful miss adds ``cache_miss`` (lookup plus insertion) to the request's time.
"""

from __future__ import annotations

import threading
import time

from headrace.server.reports import BatchStatistics, Duration, ModelStatistics

__all__ = ["FAILURE_REASONS", "VersionStatistics"]

FAILURE_REASONS: tuple[str, ...] = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
"""Triton's ``reason`` label values of ``nv_inference_request_failure``."""


class _Acc:
    """A mutable count + nanoseconds pair."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def frozen(self) -> Duration:
        return Duration(count=self.count, ns=self.ns)


class _BatchAcc:
    __slots__ = ("compute_infer", "compute_input", "compute_output")

    def __init__(self) -> None:
        self.compute_input = _Acc()
        self.compute_infer = _Acc()
        self.compute_output = _Acc()


class VersionStatistics:
    """Thread-safe accumulator for one model version (a ``StatsSink``)."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self._last_inference_ms = 0
        self._inference_count = 0
        self._execution_count = 0
        self._success = _Acc()
        self._fail = _Acc()
        self._queue = _Acc()
        self._compute_input = _Acc()
        self._compute_infer = _Acc()
        self._compute_output = _Acc()
        self._batches: dict[int, _BatchAcc] = {}
        self._failures = dict.fromkeys(FAILURE_REASONS, 0)
        self._cache_hit = _Acc()
        self._cache_miss = _Acc()

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None:
        """One request finished (the scheduler calls this for every request it accepted)."""
        now_ms = int(time.time() * 1000)  # a timestamp for clients, not a deadline
        with self._lock:
            self._last_inference_ms = now_ms
            if success:
                self._success.add(total_ns)
                self._queue.add(queue_ns)
            else:
                self._fail.add(total_ns)

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None:
        """One model execution of ``batch_size`` items succeeded."""
        with self._lock:
            self._execution_count += 1
            self._inference_count += batch_size
            self._compute_input.add(compute_input_ns)
            self._compute_infer.add(compute_infer_ns)
            self._compute_output.add(compute_output_ns)
            acc = self._batches.get(batch_size)
            if acc is None:
                acc = self._batches[batch_size] = _BatchAcc()
            acc.compute_input.add(compute_input_ns)
            acc.compute_infer.add(compute_infer_ns)
            acc.compute_output.add(compute_output_ns)

    def record_cache_hit(self, *, hit_ns: int, total_ns: int) -> None:
        """A request answered from the response cache: a success that queued for nothing."""
        with self._lock:
            self._success.add(total_ns)
            self._queue.add(0)
            self._cache_hit.add(hit_ns)

    def record_cache_miss(self, *, miss_ns: int) -> None:
        """A request missed the cache, ran and had its response stored (the scheduler counts
        the request itself); the lookup and insertion add to its time, as in Triton."""
        with self._lock:
            self._success.ns += miss_ns
            self._cache_miss.add(miss_ns)

    def record_failure_reason(self, reason: str) -> None:
        """Count a failed request under Triton's failure ``reason`` (for the metrics)."""
        key = reason if reason in self._failures else "OTHER"
        with self._lock:
            self._failures[key] += 1

    def failures(self) -> dict[str, int]:
        """Failed requests by reason since the version loaded."""
        with self._lock:
            return dict(self._failures)

    def snapshot(self) -> ModelStatistics:
        """A consistent copy of every counter."""
        with self._lock:
            batches = tuple(
                BatchStatistics(
                    batch_size=size,
                    compute_input=acc.compute_input.frozen(),
                    compute_infer=acc.compute_infer.frozen(),
                    compute_output=acc.compute_output.frozen(),
                )
                for size, acc in sorted(self._batches.items())
            )
            return ModelStatistics(
                name=self.name,
                version=self.version,
                last_inference_ms=self._last_inference_ms,
                inference_count=self._inference_count,
                execution_count=self._execution_count,
                success=self._success.frozen(),
                fail=self._fail.frozen(),
                queue=self._queue.frozen(),
                compute_input=self._compute_input.frozen(),
                compute_infer=self._compute_infer.frozen(),
                compute_output=self._compute_output.frozen(),
                cache_hit=self._cache_hit.frozen(),
                cache_miss=self._cache_miss.frozen(),
                batch_stats=batches,
            )
