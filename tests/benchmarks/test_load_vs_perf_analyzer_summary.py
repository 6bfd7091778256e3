"""The summary maths of benchmarks/bench_load_vs_perf_analyzer.py: medians over rounds, ratios."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_load_vs_perf_analyzer.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    module = load_script(SCRIPT, "load_vs_perf_analyzer_benchmark")
    return module


def _record(generator: str, round_no: int, throughput: float, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "protocol": "grpc-stream",
        "concurrency": 4,
        "generator": generator,
        "round": round_no,
        "throughput": throughput,
        "p50_us": 100.0 * (round_no + 1),
        **extra,
    }


def test_medians_over_rounds_and_their_ratio(bench: ModuleType) -> None:
    records = [
        _record("headrace", 0, 100.0),
        _record("headrace", 1, 130.0),
        _record("headrace", 2, 108.0),
        _record("perf_analyzer", 0, 100.0),
        _record("perf_analyzer", 1, 90.0),
        _record("perf_analyzer", 2, 200.0),
        {"model": "m", "protocol": "grpc-stream", "concurrency": 4, "generator": "headrace"},
    ]  # the last: a failed load, no throughput: left out
    (point,) = bench.summarize(records)["points"]
    assert point["headrace_throughput"] == 108.0 and point["perf_analyzer_throughput"] == 100.0
    assert point["headrace_rounds"] == 3
    assert point["ratio"] == pytest.approx(1.08) and point["within_10pct"]
    # p50s 100, 200, 300 µs by round for both: medians 200 and 200
    assert point["p50_ratio"] == pytest.approx(1.0)
    assert "response_ratio" not in point  # one response per request: nothing to compare


def test_a_decoupled_models_responses_per_second_are_compared_too(bench: ModuleType) -> None:
    records = [
        _record("headrace", 0, 100.0, response_throughput=300.0, p50_us=450.0),
        _record("perf_analyzer", 0, 125.0, response_throughput=375.0, p50_us=600.0),
    ]
    summary = bench.summarize(records)
    (point,) = summary["points"]
    assert point["response_ratio"] == pytest.approx(0.8)
    assert point["p50_ratio"] == pytest.approx(0.75)
    assert point["ratio"] == pytest.approx(0.8) and not point["within_10pct"]
    assert summary["ratio_range"] == [pytest.approx(0.8), pytest.approx(0.8)]
