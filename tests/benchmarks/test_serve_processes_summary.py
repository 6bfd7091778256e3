"""benchmarks/serve_processes.py: medians over rounds, ratios, failed loads left out."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_processes.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT, "serve_processes_benchmark")


def _record(system: str, round_no: int, throughput: float) -> dict[str, Any]:
    return {
        "system": system,
        "model": "m",
        "protocol": "grpc",
        "concurrency": 16,
        "round": round_no,
        "throughput": throughput,
        "p50_us": 1000.0,
        "p99_us": 2000.0,
        "avg_batch": None,  # no executions counted
        "server_cpu_us_per_inference": 100.0 * (round_no + 1),
        "client_cpu_us_per_inference": 50.0,
    }


def test_medians_ratios_and_what_is_left_out(bench: ModuleType) -> None:
    records = [
        _record("headrace-1", 0, 100.0),
        _record("headrace-1", 1, 120.0),
        _record("headrace-1", 2, 90.0),
        _record("headrace-2", 0, 130.0),
        _record("headrace-2", 1, 110.0),
        {"system": "triton", "model": "m", "protocol": "grpc", "concurrency": 16, "error": "x"},
    ]
    (row,) = bench.summarize(records)
    assert row["headrace-1"]["throughput"] == 100.0 and row["headrace-1"]["rounds"] == 3
    assert (row["headrace-1"]["throughput_min"], row["headrace-1"]["throughput_max"]) == (90, 120)
    assert row["headrace-2"]["throughput"] == 120.0  # the median of two: their mean
    assert row["headrace-2"]["server_cpu_us_per_inference"] == 150.0
    assert row["headrace-1"]["avg_batch"] is None
    assert row["headrace-2_over_headrace-1"] == pytest.approx(1.2)
    assert "triton" not in row and "headrace-1_over_triton" not in row  # it failed
