"""The summary maths of benchmarks/response_cache.py: medians over rounds, on/off ratios."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "response_cache.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    module = load_script(SCRIPT, "response_cache_benchmark")
    return module


def _load(cached: bool, throughput: float, p50: float, **extra: Any) -> dict[str, Any]:
    record = {
        "system": "headrace",
        "model": "heavy_cached" if cached else "heavy",
        "cached": cached,
        "protocol": "grpc",
        "concurrency": 1,
        "throughput": throughput,
        "p50_us": p50,
        "p99_us": 2 * p50,
        "requests": 100,
        "executions": 0 if cached else 100,
        "hits": 100 if cached else 0,
    }
    record.update(extra)
    return record


def test_ratios_compare_medians_of_cache_on_and_off(bench: ModuleType) -> None:
    records = [
        _load(False, 100.0, 5000.0),
        _load(False, 140.0, 4000.0),
        _load(False, 120.0, 4500.0),
        _load(True, 1000.0, 900.0),
        _load(True, 1300.0, 1000.0, executions=1),
        _load(True, 900.0, 1100.0, error="perf_analyzer exited 1"),
    ]
    (row,) = bench.summarize(records)
    assert (row["throughput_off"], row["throughput_on"]) == (120.0, 1150.0)
    assert row["throughput_ratio"] == pytest.approx(1150.0 / 120.0)
    assert row["p50_ratio"] == pytest.approx(950.0 / 4500.0)
    assert (row["rounds_off"], row["rounds_on"]) == (3, 2)
    assert row["executions_per_request_on"] == pytest.approx(1 / 200)
    assert row["executions_per_request_off"] == 1.0


def test_a_side_without_loads_has_no_ratio(bench: ModuleType) -> None:
    (row,) = bench.summarize([_load(False, 100.0, 5000.0)])
    assert row["throughput_on"] is None and row["throughput_ratio"] is None
    assert row["rounds_on"] == 0
