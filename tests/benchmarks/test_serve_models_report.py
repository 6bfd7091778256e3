"""The maths of benchmarks/serve_models/report.py: medians over rounds, ratios, direct match."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_models" / "report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    module = load_script(SCRIPT, "serve_models_report")
    return module


def _load(system: str, throughput: float, **extra: Any) -> dict[str, Any]:
    record = {
        "system": system,
        "model": "mlp_python",
        "protocol": "grpc",
        "concurrency": 4,
        "throughput": throughput,
        "p99_us": 1000.0,
    }
    record.update(extra)
    return record


def _direct(batch_size: int, throughput: float) -> dict[str, Any]:
    return {
        "system": "direct",
        "model": "mlp_python",
        "batch_size": batch_size,
        "throughput": throughput,
    }


def test_medians_are_per_system_model_protocol_and_concurrency(report: ModuleType) -> None:
    records = [
        _load("headrace", 100.0, p50_us=10.0),
        _load("headrace", 300.0, p50_us=30.0),
        _load("headrace", 200.0, p50_us=20.0, stable=False),
        _load("headrace", 50.0, concurrency=1),
        _load("triton", 150.0),
        _load("triton", 170.0),
    ]
    found = report.medians(records)
    ours = found[("headrace", "mlp_python", "grpc", 4)]
    assert ours["throughput"] == 200.0
    assert ours["p50_us"] == 20.0
    assert (ours["throughput_min"], ours["throughput_max"]) == (100.0, 300.0)
    assert ours["rounds"] == 3
    assert ours["unstable_rounds"] == 1
    assert ours["p90_us"] is None  # never measured: no median, not zero
    assert found[("headrace", "mlp_python", "grpc", 1)]["throughput"] == 50.0
    assert (
        found[("triton", "mlp_python", "grpc", 4)]["throughput"] == 160.0
    )  # even count: mean of the middle two


def test_failed_and_unmeasured_loads_do_not_count(report: ModuleType) -> None:
    records = [
        _load("headrace", 100.0),
        _load("headrace", 900.0, error="perf_analyzer exited 1"),
        _load("headrace", None),  # type: ignore[arg-type]
        _load("direct-like", 5.0),
    ]
    found = report.medians(records)
    assert list(found) == [("headrace", "mlp_python", "grpc", 4)]
    assert found[("headrace", "mlp_python", "grpc", 4)]["rounds"] == 1
    assert report.medians(records, keep=())[("direct-like", "mlp_python", "grpc", 4)]["rounds"] == 1


def test_medians_skip_missing_metric_values(report: ModuleType) -> None:
    records = [_load("headrace", 100.0, avg_batch=2.0), _load("headrace", 110.0)]
    assert report.medians(records)[("headrace", "mlp_python", "grpc", 4)]["avg_batch"] == 2.0


def test_summary_ratios_compare_medians_side_by_side(report: ModuleType) -> None:
    records = [
        _load("headrace", 300.0, avg_batch=3.6),
        _load("headrace", 500.0, avg_batch=4.4),
        _load("triton", 200.0),
        _load("triton", 200.0),
        _load("pytriton", 800.0),
        _direct(4, 1000.0),
        _direct(4, 600.0),
        _direct(8, 2000.0),
    ]
    (row,) = report.summarize(records)
    assert row["headrace"]["throughput"] == 400.0
    assert row["headrace_over_triton"] == pytest.approx(2.0)
    assert row["headrace_over_pytriton"] == pytest.approx(0.5)
    # direct at the batch size nearest headrace's median batch (4.0): median of 1000 and 600
    assert row["direct"] == {"batch_size": 4, "throughput": 800.0}
    assert row["headrace_over_direct"] == pytest.approx(0.5)


def test_nearest_direct_batch_prefers_the_smaller_size_on_a_tie(report: ModuleType) -> None:
    direct = {("m", 2): 10.0, ("m", 4): 20.0, ("other", 3): 99.0}
    assert report._nearest_direct(direct, "m", 3.0) == {"batch_size": 2, "throughput": 10.0}
    assert report._nearest_direct(direct, "m", 3.9) == {"batch_size": 4, "throughput": 20.0}
    assert report._nearest_direct(direct, "m", None) is None
    assert report._nearest_direct(direct, "nothing", 2.0) is None


def test_a_missing_system_leaves_its_ratio_empty(report: ModuleType) -> None:
    (row,) = report.summarize([_load("headrace", 100.0)])
    assert row["triton"] is None and row["pytriton"] is None and row["direct"] is None
    assert row["headrace_over_triton"] is None
    assert row["headrace_over_direct"] is None
    (row,) = report.summarize([_load("triton", 100.0)])
    assert row["headrace"] is None and row["headrace_over_triton"] is None
    assert report._ratio(1.0, 0.0) is None
    assert report._ratio(None, 2.0) is None


def test_tables_show_one_line_per_row(report: ModuleType) -> None:
    records = [
        _load("headrace", 123.4, avg_batch=2.0, p50_us=1000.0, p90_us=2000.0, p99_us=3500.0),
        _load("triton", 100.0, p99_us=4200.0),
    ]
    text = report.markdown_table(report.summarize(records))
    header, rule, line = text.strip().splitlines()
    assert header.count("|") == rule.count("|") == line.count("|")
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[:7] == ["mlp_python", "grpc", "4", "123", "1.0/2.0/3.5", "2.0", "100"]
    assert cells[7] == "4.2"
    assert cells[11] == "1.23"
    assert cells[8] == "-" and cells[12] == "-"


def test_failed_direct_runs_do_not_count(report: ModuleType) -> None:
    records = [
        _load("headrace", 400.0, avg_batch=4.0),
        _direct(4, 800.0),
        _direct(4, 10.0) | {"error": "timed out"},
    ]
    (row,) = report.summarize(records)
    assert row["direct"] == {"batch_size": 4, "throughput": 800.0}
    assert row["headrace_over_direct"] == pytest.approx(0.5)


def test_ratios_use_medians_not_single_rounds(report: ModuleType) -> None:
    # headrace 100/500/300 and triton 200/220/1000 over three rounds: medians 300 and 220.
    records = [_load("headrace", tp) for tp in (100.0, 500.0, 300.0)]
    records += [_load("triton", tp) for tp in (200.0, 220.0, 1000.0)]
    (row,) = report.summarize(records)
    assert row["headrace_over_triton"] == pytest.approx(300.0 / 220.0)
