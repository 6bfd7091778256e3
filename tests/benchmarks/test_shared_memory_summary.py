"""The summary maths of benchmarks/shared_memory.py: medians over rounds, socket ratios round by
round, and the recorded result file covering every path (checked answers, the machine)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    module = load_script(BENCHMARKS / "shared_memory.py", "shared_memory_benchmark")
    return module


def _record(path: str, round_no: int, median_ms: float) -> dict[str, Any]:
    return {
        "system": "headrace",
        "protocol": "http",
        "path": path,
        "round": round_no,
        "median_ms": median_ms,
        "checked": True,
    }


def test_ratios_are_taken_round_by_round(bench: ModuleType) -> None:
    records = [
        _record("socket", 0, 50.0),
        _record("shm", 0, 5.0),
        _record("socket", 1, 80.0),
        _record("shm", 1, 4.0),
        _record("socket", 2, 60.0),
        _record("shm", 2, 6.0),
    ]
    rows = {row["path"]: row for row in bench.summarize(records)}
    assert rows["socket"]["median_ms"] == 60.0 and "socket_over_this" not in rows["socket"]
    shm = rows["shm"]
    assert shm["median_ms"] == 5.0 and shm["round_medians_ms"] == [4.0, 6.0]
    assert shm["socket_over_this"] == 10.0 and shm["socket_over_this_rounds"] == [10.0, 20.0]
    assert shm["all_checked"]


def test_rotation_turns_by_one_each_round(bench: ModuleType) -> None:
    assert bench.rotate([1, 2, 3], 0) == [1, 2, 3]
    assert bench.rotate([1, 2, 3], 4) == [2, 3, 1]


def test_the_recorded_run_covers_every_path() -> None:
    document = json.loads((BENCHMARKS / "results" / "shared_memory.json").read_text())
    assert document["error"] is None and document["machine"]["cpu_model"]
    headrace = [r for r in document["summary"] if r["system"] == "headrace"]
    assert {(r["protocol"], r["path"]) for r in headrace} == {
        (protocol, path) for protocol in ("http", "grpc") for path in ("socket", "shm", "shm+copy")
    }
    assert all(row["all_checked"] for row in headrace)
