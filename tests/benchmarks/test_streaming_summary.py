"""The summary maths of benchmarks/streaming.py: medians over rounds, ratios to Triton."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "streaming.py"


@pytest.fixture(scope="module")
def streaming() -> ModuleType:
    module = load_script(SCRIPT, "streaming_benchmark")
    return module


def _record(system: str, updates: float, p99: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "protocol": "grpc",
        "mode": "closed",
        "streams": 4,
        "rate_per_stream": None,
        "errors": 0,
        "updates_per_s": updates,
        "samples_per_s": updates * 512,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "server_cpu_us_per_update": cpu,
        "client_cpu_us_per_update": 100.0,
        **extra,
    }


def test_medians_over_rounds_and_ratios_to_triton(streaming: ModuleType) -> None:
    records = [
        _record("headrace", 600, 10, 1500, round=0),
        _record("headrace", 500, 14, 1700, round=1),
        _record("headrace", 700, 12, 1600, round=2),
        _record("triton", 400, 20, 2000, round=0),
        _record("triton", 600, 16, 1800, round=1),
        _record("triton", 500, 30, 1900, round=2),
        _record("triton", 10, 1, 1, errors=3, round=3),  # a failed load counts for nothing
    ]
    (row,) = streaming.summarize(records)
    assert (row["protocol"], row["mode"], row["streams"], row["rate"]) == (
        "grpc",
        "closed",
        4,
        None,
    )
    headrace, triton = row["headrace"], row["triton"]
    assert headrace["rounds"] == triton["rounds"] == 3
    assert headrace["updates_per_s"] == 600 and triton["updates_per_s"] == 500
    assert (headrace["updates_per_s_min"], headrace["updates_per_s_max"]) == (500, 700)
    assert headrace["p99_ms"] == 12 and triton["p99_ms"] == 20
    ratio = row["headrace_over_triton"]
    assert ratio == {
        "updates_per_s": 1.2,  # of the medians: 600 / 500
        "p99": 0.6,
        "server_cpu_per_update": pytest.approx(0.842),
        "updates_per_s_by_round": [1.5, 0.833, 1.4],  # within each round
        "p99_by_round": [0.5, 0.875, 0.4],
        "updates_per_s_rounds_won": 2,
    }
    assert "triton_over_triton" not in row


def test_loads_are_kept_apart_and_sorted(streaming: ModuleType) -> None:
    paced = {"mode": "paced", "rate_per_stream": 40.0, "streams": 8}
    records = [
        _record("headrace", 320, 5, 900, **paced),
        _record("triton", 320, 8, 1000, **paced),
        _record("headrace", 300, 3, 1000, streams=1),
        _record("headrace-onnx", 900, 2, 700, streams=1),
    ]
    rows = streaming.summarize(records)
    assert [(r["mode"], r["streams"]) for r in rows] == [("closed", 1), ("paced", 8)]
    assert "headrace_over_triton" not in rows[0]  # no Triton figures for k=1: no ratio
    assert rows[1]["headrace_over_triton"]["p99"] == 0.625


def test_rotation_and_step_statistics(streaming: ModuleType) -> None:
    systems = ["headrace", "triton", "headrace-onnx"]
    assert [streaming.rotate(systems, r)[0] for r in range(4)] == [
        "headrace", "triton", "headrace-onnx", "headrace",
    ]  # fmt: skip
    before = {"cleaner": {"inferences": 10, "executions": 5, "queue_ns": 0, "compute_ns": 1000}}
    after = {
        "cleaner": {"inferences": 110, "executions": 45, "queue_ns": 50_000, "compute_ns": 201_000}
    }
    delta = streaming.stats_delta(before, after, updates=100)["cleaner"]
    assert delta == {
        "inferences": 100,
        "executions": 40,
        "avg_batch": 2.5,
        "queue_us_per_update": 0.5,
        "compute_us_per_update": 2.0,
    }
