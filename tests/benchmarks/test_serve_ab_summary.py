"""The A/B maths of benchmarks/serve_ab.py and the run merge of serve_overhead.py.

serve_ab's summary rests on report.medians grouped by setting; serve_overhead's
``--summarize`` merges earlier files before report.summarize. Both are checked here on
made-up records, without a server.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def serve_ab() -> Iterator[ModuleType]:
    """serve_ab.py loaded under its own name; the sys.path entries and the top-level modules
    it imports (``report``, ``servers`` ...) are taken away again afterwards."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("serve_ab_benchmark", BENCHMARKS / "serve_ab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def _load(setting: str, throughput: float, **extra: Any) -> dict[str, Any]:
    record = {
        "system": "headrace",
        "setting": setting,
        "model": "mlp_python",
        "protocol": "http",
        "concurrency": 16,
        "throughput": throughput,
        "server_cpu_us_per_inference": 100.0,
    }
    record.update(extra)
    return record


def test_settings_split_environment_from_flags(serve_ab: ModuleType) -> None:
    assert serve_ab.parse_setting("default=") == ("default", {}, [])
    assert serve_ab.parse_setting("t=OMP_NUM_THREADS=1 A=b --run-now-below-us 100") == (
        "t",
        {"OMP_NUM_THREADS": "1", "A": "b"},
        ["--run-now-below-us", "100"],
    )
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=SPEC, got 'nothing'"):
        serve_ab.parse_setting("nothing")
    with pytest.raises(argparse.ArgumentTypeError):
        serve_ab.parse_setting("=x")


def test_summary_ratios_are_medians_over_rounds_against_the_first_setting(
    serve_ab: ModuleType,
) -> None:
    records = [
        _load("default", 100.0, round=0),
        _load("default", 300.0, round=1),
        _load("default", 200.0, round=2, server_cpu_us_per_inference=300.0),
        _load("fast", 250.0, round=0),
        _load("fast", 350.0, round=1),
        _load("fast", 9999.0, round=2, error="perf_analyzer exited 1"),
        _load("slow", 50.0, round=0),
    ]
    (row,) = serve_ab.summarize(records, ["default", "fast", "slow"])
    assert (row["model"], row["protocol"], row["concurrency"]) == ("mlp_python", "http", 16)
    assert row["default"]["throughput"] == 200.0 and row["default"]["rounds"] == 3
    assert row["default"]["server_cpu_us_per_inference"] == 100.0
    assert row["fast"]["throughput"] == 300.0 and row["fast"]["rounds"] == 2  # error left out
    assert row["fast_over_default"] == pytest.approx(1.5)
    assert row["slow_over_default"] == pytest.approx(0.25)
    assert "default_over_default" not in row
    (reversed_row,) = serve_ab.summarize(records, ["fast", "default"])
    assert reversed_row["default_over_fast"] == pytest.approx(200.0 / 300.0)


def test_a_setting_without_a_load_leaves_its_ratio_empty(serve_ab: ModuleType) -> None:
    records = [
        _load("default", 100.0),
        _load("other", 80.0, concurrency=64),
    ]
    rows = serve_ab.summarize(records, ["default", "other"])
    assert [r["concurrency"] for r in rows] == [16, 64]
    assert rows[0]["other"] is None and rows[0]["other_over_default"] is None
    assert rows[1]["default"] is None and rows[1]["other_over_default"] is None


def test_summarize_files_merges_rounds_of_earlier_runs(
    serve_ab: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_overhead = serve_ab.serve_overhead
    machine = {"cpu_model": "test cpu", "cpu_count": 2}

    def run(name: str, throughputs: list[float], concurrency: Any) -> Path:
        records = [
            {
                "system": "headrace",
                "model": "mlp_python",
                "protocol": "grpc",
                "concurrency": concurrency,
                "throughput": tp,
                "p99_us": 1000.0,
                "round": i,
            }
            for i, tp in enumerate(throughputs)
        ]
        path = tmp_path / name
        path.write_text(json.dumps({"machine": machine, "records": records, "date": name}))
        return path

    first = run("a.json", [100.0, 200.0], 4.0)  # early files stored perf_analyzer's float
    second = run("b.json", [600.0], 4)
    out = tmp_path / "merged.json"
    args = argparse.Namespace(summarize=[first, second], out=out)
    assert serve_overhead.summarize_files(args) == 0
    merged = json.loads(out.read_text())
    assert [r["round"] for r in merged["records"]] == [0, 1, 2]
    assert {r["concurrency"] for r in merged["records"]} == {4}
    (row,) = merged["summary"]
    assert row["headrace"]["throughput"] == 200.0 and row["headrace"]["rounds"] == 3
    assert [s["file"] for s in merged["merged_from"]] == ["a.json", "b.json"]
    table = out.with_suffix(".md").read_text()
    assert "medians of 3 rounds" in table
    assert "| -/-/1.0 |" in table  # no p50/p90 in these records: shown as missing
    capsys.readouterr()
