"""perf_analyzer's statistics on known inputs: nearest-rank percentiles and the stability rule."""

from __future__ import annotations

import numpy as np
import pytest

from headrace.bench.load_stats import (
    Window,
    is_stable,
    percentile_us,
    summarize_windows,
)


def window(throughput: float, latency_us: float, duration_s: float = 1.0) -> Window:
    """A window of ``throughput`` requests per second, every one taking ``latency_us``."""
    count = round(throughput * duration_s)
    return Window(duration_s, np.full(count, latency_us, dtype=np.float64))


def test_percentiles_are_nearest_rank_on_sorted_latencies() -> None:
    latencies = np.arange(1, 101, dtype=np.float64)  # 1 .. 100
    # index round(p/100 * 99): 50 -> 50 (value 51), 90 -> 89 (90), 95 -> 94 (95), 99 -> 98 (99)
    assert [percentile_us(latencies, p) for p in (50, 90, 95, 99)] == [51, 90, 95, 99]
    assert percentile_us(np.array([7.0]), 99) == 7
    assert percentile_us(np.array([]), 50) == 0
    assert percentile_us(np.array([1.0, 2.0]), 100) == 2


def test_stable_needs_three_windows_within_the_band() -> None:
    assert not is_stable([window(100, 10), window(100, 10)], 10)
    assert is_stable([window(100, 10)] * 3, 10)
    # mean 100: 91 and 109 lie within ±10 %, 89 does not
    assert is_stable([window(91, 10), window(100, 10), window(109, 10)], 10)
    assert not is_stable([window(89, 10), window(100, 10), window(111, 10)], 10)


def test_stable_looks_at_latency_and_only_the_last_three() -> None:
    steady = [window(100, 10), window(100, 10), window(100, 10)]
    assert not is_stable([*steady[:2], window(100, 14)], 10)  # latency 14 vs mean 11.3
    assert is_stable([window(10, 500), *steady], 10)  # an early outlier is forgotten
    assert is_stable([*steady[:2], window(100, 14)], 30)


def test_a_window_that_completed_nothing_is_never_stable() -> None:
    assert not is_stable([window(0, 10)] * 3, 1e6)


def test_summary_merges_windows_like_perf_analyzer() -> None:
    windows = [
        Window(1.0, np.array([1.0, 2.0, 3.0]), batch_size=4),
        Window(0.5, np.array([4.0]), batch_size=4, errors=2),
    ]
    summary = summarize_windows(windows)
    assert summary.requests == 4
    assert summary.errors == 2
    assert summary.throughput == pytest.approx(4 * 4 / 1.5)  # inferences: requests x batch
    assert summary.avg_us == pytest.approx(2.5)
    assert summary.percentiles_us == {50: 3.0, 90: 4.0, 95: 4.0, 99: 4.0}


def test_window_throughput_counts_inferences() -> None:
    assert Window(2.0, np.ones(10), batch_size=8).throughput == pytest.approx(40)
    assert Window(0.0, np.ones(10)).throughput == 0


def test_a_decoupled_models_responses_per_second_over_the_merged_windows() -> None:
    windows = [
        Window(1.0, np.ones(3), responses=9),
        Window(0.5, np.ones(1), responses=3),
    ]
    summary = summarize_windows(windows)
    assert summary.throughput == pytest.approx(4 / 1.5)
    assert summary.response_throughput == pytest.approx(12 / 1.5)
    plain = summarize_windows([Window(1.0, np.ones(3))])
    assert plain.response_throughput is None  # one response per request: not counted
