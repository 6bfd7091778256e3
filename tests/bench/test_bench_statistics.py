"""Statistics of a study on inputs whose answers are known by hand."""

from __future__ import annotations

import math

import pytest

from headrace.bench.statistics import percentile, sem, summarize
from headrace.errors import InvalidInput


def test_mean_std_and_sem_of_known_values() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # mean 5, sample variance 32/7
    summary = summarize(values)
    assert summary.n == 8 and summary.mean == 5.0
    assert summary.std == pytest.approx(math.sqrt(32 / 7))
    assert summary.sem == pytest.approx(math.sqrt(32 / 7) / math.sqrt(8))
    assert sem(values) == summary.sem
    assert (summary.min, summary.max) == (2.0, 9.0)


def test_percentiles_interpolate_between_ranks() -> None:
    values = list(range(1, 101))  # 1..100
    summary = summarize(values)
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p90 == pytest.approx(90.1)
    assert summary.p95 == pytest.approx(95.05)
    assert summary.p99 == pytest.approx(99.01)
    assert percentile([10.0, 20.0], 25) == pytest.approx(12.5)
    assert percentile([3.0], 99) == 3.0


def test_one_value_has_no_error_bar_and_empty_or_bad_input_is_refused() -> None:
    single = summarize([7.0])
    assert (single.mean, single.std, single.sem, single.p99) == (7.0, 0.0, 0.0, 7.0)
    with pytest.raises(InvalidInput, match="no measurements"):
        summarize([])
    with pytest.raises(InvalidInput, match="150"):
        percentile([1.0], 150)
