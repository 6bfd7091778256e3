"""bench report on small synthetic study files in the shapes bench scan / load / monitor write."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from headrace.bench.report import write_report
from headrace.bench.report_inputs import read_studies
from headrace.cli import main
from headrace.errors import InvalidInput

pytest.importorskip("matplotlib")

_MACHINE = {"hostname": "box", "cpu_model": "Test CPU", "cpu_count": 2, "gpus": []}


def _scan_point(mode: str, batch: int, start: float) -> dict[str, object]:
    return {
        "mode": mode,
        "model": "particlenet",
        "batch_size": batch,
        "trials": 100,
        "throughput_mean": 100.0 * batch,
        "throughput_sem": 2.0 * batch,
        "throughput_std": 20.0 * batch,
        "latency_ms": {"mean": 1.0, "p50": 1.0, "p90": 1.2, "p95": 1.3, "p99": 1.5},
        "start_time": start,
        "end_time": start + 0.5,
    }


def _write_folder(folder: Path) -> None:
    points = [_scan_point(m, b, 1000.0 + i) for i, (m, b) in enumerate(
        (m, b) for m in ("direct", "http") for b in (1, 2, 4))]  # fmt: skip
    scan = {
        "study": "scan",
        "command": ["headrace", "bench", "scan", "repo/particlenet", "--monitor"],
        "machine": _MACHINE,
        "monitor": {"csv": "/elsewhere/scan_monitor.csv", "interval_s": 0.25, "gpu": "none"},
        "points": points,
    }
    rows = [
        {"generator": "headrace", "protocol": "grpc", "batch_size": 1, "concurrency": c,
         "request_rate": None, "stable": True, "throughput": 500.0 * c, "p50_us": 900.0 * c,
         "p90_us": 1000.0 * c, "p95_us": 1100.0 * c, "p99_us": 1500.0 * c}
        for c in (1, 2, 4)
    ]  # fmt: skip
    rows.append({"generator": "headrace", "protocol": "grpc", "batch_size": 1, "concurrency": 8,
                 "request_rate": None, "stable": False, "error": "no stable window"})  # fmt: skip
    load = {"study": "bench load", "command": ["headrace", "bench", "load"], "settings":
            {"model": "mlp"}, "machine": _MACHINE, "rows": rows}  # fmt: skip
    (folder / "scan.json").write_text(json.dumps(scan))
    (folder / "load.json").write_text(json.dumps(load))
    (folder / "other.json").write_text(json.dumps({"results": []}))
    lines = ["Timestamp,GPU Util (%),GPU Mem (%),CPU Util (%),RAM Util (%)"]
    lines += [f"{999.5 + 0.25 * i},,,{10 * (i % 8)},{40 + i % 3}" for i in range(30)]
    (folder / "scan_monitor.csv").write_text("\n".join(lines) + "\n5000,")  # last row cut short


def test_read_studies_sorts_kinds_and_lists_what_it_skips(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    studies = read_studies(tmp_path)
    assert [s.path.name for s in studies.scans] == ["scan.json"]
    assert [s.path.name for s in studies.loads] == ["load.json"]
    assert len(studies.monitors) == 1
    assert len(studies.monitors[0].timestamps) == 30  # the cut row is dropped
    assert [p.name for p, _ in studies.skipped] == ["other.json"]


def test_page_is_self_contained_with_every_plot_and_command(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    page = write_report(tmp_path, plots=True)
    text = page.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 3  # scan, load, monitor timeline
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)
    assert "headrace bench scan repo/particlenet --monitor" in text
    assert "Test CPU" in text and "no stable window" in text and "other.json" in text
    assert "http://" not in text and "<script" not in text  # nothing fetched, nothing run
    for name in ("scan_throughput.png", "load_latency.png", "scan_monitor_timeline.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_tune_document_gets_its_own_plot_and_table(tmp_path: Path) -> None:
    points = [
        {"config": {"instances": 1, "max_batch_size": 8, "max_queue_delay_us": 0},
         "concurrency": 4, "throughput": 100.0, "p99_ms": 5.0, "cost": 9.0},
        {"config": {"instances": 2, "max_batch_size": 8, "max_queue_delay_us": 0},
         "concurrency": 4, "throughput": None, "p99_ms": None, "cost": None, "error": "died"},
    ]  # fmt: skip
    tune = {"study": "bench tune", "model": "mlp", "points": points, "pareto": [0], "best": 0,
            "baseline": 0, "p99_ms_bound": 10.0, "cost_function": "cpu-seconds-per-million"}  # fmt: skip
    (tmp_path / "tune.json").write_text(json.dumps(tune))
    text = write_report(tmp_path, tmp_path / "out" / "page.html").read_text()
    assert text.count("data:image/png;base64,") == 1
    assert "died" in text and "chosen" in text
    assert "Side by side" not in text  # none recorded


def test_tune_side_by_side_rounds_are_on_the_page(tmp_path: Path) -> None:
    def side(config: dict[str, int], rounds: list[float]) -> dict[str, object]:
        return {"config": config, "throughput": sorted(rounds)[1], "p99_ms": 4.0,
                "rounds": [{"throughput": r, "p99_ms": 4.0, "error": None} for r in rounds]}  # fmt: skip

    own = {"instances": 2, "max_batch_size": 64, "max_queue_delay_us": 100, "intra_op_threads": 0}
    pick = {**own, "instances": 1, "intra_op_threads": 1}
    pair = {"concurrency": 16, "chosen": side(pick, [6100.0, 6400.0, 6250.0]),
            "baseline": side(own, [5600.0, 5700.0, 5650.0]), "throughput_gain": 6250 / 5650}  # fmt: skip
    points = [{"config": own, "concurrency": 16, "throughput": 5650.0, "p99_ms": 4.0, "cost": 1.0}]
    tune = {"study": "bench tune", "model": "mlp", "points": points, "pareto": [0], "best": 0,
            "baseline": 0, "p99_ms_bound": 10.0, "cost_function": "c", "side_by_side": [pair]}  # fmt: skip
    (tmp_path / "tune.json").write_text(json.dumps(tune))
    text = write_report(tmp_path, tmp_path / "page.html").read_text()
    assert "Side by side" in text and "gain 1.11x" in text
    assert "6,100.0 / 6,400.0 / 6,250.0" in text and "intra_op_threads 1" in text


def test_cli_writes_the_page_and_refuses_a_missing_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    assert main(["bench", "report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").exists()
    with pytest.raises(InvalidInput, match="nope"):
        read_studies(tmp_path / "nope")


def test_the_load_vs_perf_analyzer_benchmark_file_reads_as_a_load_study(tmp_path: Path) -> None:
    records = [
        {"model": m, "round": 0, "generator": g, "protocol": "http", "batch_size": 1,
         "concurrency": c, "request_rate": None, "stable": True, "throughput": 100.0 * c,
         "p50_us": 800.0, "p90_us": 900.0, "p95_us": 950.0, "p99_us": 1000.0 * c}
        for m in ("identity", "mlp") for g in ("headrace", "perf_analyzer") for c in (1, 4)
    ]  # fmt: skip
    document = {"benchmark": "bench_load_vs_perf_analyzer", "command": "python b.py --rounds 1",
                "machine": _MACHINE, "summary": {}, "records": records}  # fmt: skip
    (tmp_path / "bench_load_vs_perf_analyzer.json").write_text(json.dumps(document))
    studies = read_studies(tmp_path)
    assert len(studies.loads) == 1 and studies.loads[0].command == [
        "python",
        "b.py",
        "--rounds",
        "1",
    ]
    text = write_report(tmp_path).read_text()
    assert text.count("data:image/png;base64,") == 1 and "perf_analyzer" in text


def test_a_load_level_measured_in_several_rounds_is_one_point_at_the_medians() -> None:
    from headrace.bench.report_plots import _median_per_level

    rows = [
        {"concurrency": c, "throughput": t, "p50_us": p, "p99_us": 2 * p}
        for c, t, p in ((16, 300.0, 9.0), (1, 100.0, 1.0), (16, 320.0, 7.0), (16, 280.0, 8.0))
    ]
    merged, rounds = _median_per_level(rows)
    assert [(r["concurrency"], r["throughput"], r["p50_us"], r["p99_us"]) for r in merged] == [
        (1, 100.0, 1.0, 2.0),
        (16, 300.0, 8.0, 16.0),
    ]
    assert rounds == 3
