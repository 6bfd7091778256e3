"""bench tune end to end: two settings of the examples' identity model, each really served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve_process import examples_repository

from headrace.cli import main
from headrace.config.text import read_config

pytest.importorskip("tritonclient.http")
pytest.importorskip("psutil")


def test_tune_identity_two_points(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = examples_repository(tmp_path_factory) / "identity_bytes"
    own = (model_dir / "config.pbtxt").read_text()
    out, written = tmp_path / "tune.json", tmp_path / "chosen" / "config.pbtxt"
    code = main([
        "bench", "tune", str(model_dir), "--instances", "1", "--max-batch-sizes", "4",
        "--queue-delays-us", "0", "--concurrency", "2", "--measurement-ms", "300",
        "--generator", "headrace", "--p99-ms", "10000", "--out", str(out),
        "--write-config", str(written),
    ])  # fmt: skip
    assert code == 0
    document = json.loads(out.read_text())
    assert document["study"] == "bench tune"
    points = document["points"]
    assert [p["config"]["max_queue_delay_us"] for p in points] == [-1, 0]  # the model's first
    assert points[0]["baseline"] and not points[1]["baseline"]
    for point in points:
        assert "error" not in point, point
        assert point["throughput"] > 0 and point["p99_ms"] > 0
        assert point["inferences"] > 0 and point["cpu_s"] > 0 and point["cost"] > 0
        assert point["generator"] == "headrace"  # bench load's generator
    assert document["best"] in (0, 1) and document["pareto"]
    chosen = read_config(str(written))
    assert chosen.name == "identity_bytes"
    assert (model_dir / "config.pbtxt").read_text() == own  # never over the model's own file
    assert "chosen" in capsys.readouterr().out


def test_side_by_side_serves_both_and_alternates(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from headrace.bench.tune import Setting
    from headrace.bench.tune_run import TuneOptions, model_setting, run_side_by_side

    model_dir = examples_repository(tmp_path_factory) / "identity_bytes"
    options = TuneOptions(model_dir=model_dir, measurement_ms=300, generator="headrace")
    own = model_setting(read_config(str(model_dir / "config.pbtxt")))
    seen: list[Setting] = []
    pair = run_side_by_side(
        options, Setting(1, 4, 0), own, 2, rounds=2, progress=lambda m: seen.append(m.setting)
    )
    assert seen == [Setting(1, 4, 0), own, own, Setting(1, 4, 0)]
    assert len(pair.chosen) == len(pair.baseline) == 2
    assert all(m.ok and not m.baseline for m in pair.chosen)
    assert all(m.ok and m.baseline for m in pair.baseline)
    assert pair.gain() is not None
