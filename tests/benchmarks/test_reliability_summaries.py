"""The verdicts of benchmarks/reliability/: the soak's summary maths and the offline check."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from bench_scripts import load_script

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"


def _load(name: str) -> ModuleType:
    module = load_script(SCRIPTS / f"{name}.py", f"reliability_{name}")
    return module


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    return _load("soak")


@pytest.fixture(scope="module")
def offline() -> ModuleType:
    return _load("offline_kill")


def test_errors_in_an_unload_window_are_expected_and_others_not(soak: ModuleType) -> None:
    recorder = soak.Recorder(started=0.0)
    recorder.windows.append(soak.Window("simple", start=0.0))  # still open
    recorder.error("unary-http", "simple", "unknown model")
    recorder.error("unary-http", "mlp", "unknown model")
    recorder.error("unary-http", "simple", "wrong sum", wrong=True)
    assert [e["expected"] for e in recorder.errors] == [True, False, False]


def test_soak_summary(soak: ModuleType) -> None:
    latencies = {
        ("unary-http", 0): [100.0] * 10,  # warm-up: left out
        ("unary-http", 1): [1.0] * 99 + [4.0],
        ("unary-http", 2): [1.0] * 99 + [8.0],
        ("unary-http", 3): [1.0] * 10,  # partial last minute: left out
    }
    minutes = soak.per_minute(latencies)
    rss = [
        {"t_s": t, "rss": 100 * 2**20 + t * 1000, "tree_rss": 200 * 2**20}
        for t in range(0, 181, 10)
    ]
    errors: list[dict[str, Any]] = [
        {"expected": True, "wrong_answer": False, "client": "c", "model": "m", "message": "gone"}
    ]
    summary = soak.summarize(minutes, errors, rss, [{"error": None}], 1.0, 3.0)
    row = summary["p99_after_warmup"]["unary-http"]
    assert row["requests"] == 220
    assert row["p99_ms_min"] < row["p99_ms_max"] < 8.0
    assert summary["errors_expected"] == 1 and summary["errors_unexpected"] == 0
    assert summary["rss_tree"]["growth_pct"] == 0.0
    assert 0 < summary["rss_server"]["growth_pct"] < 0.2
    assert all(summary["verdict"].values()), summary["verdict"]
    rss[-1]["rss"] = rss[-2]["rss"] = rss[-3]["rss"] = rss[-4]["rss"] = rss[-5]["rss"] = 120 * 2**20
    grown = soak.summarize(minutes, errors, rss, [{"error": None}], 1.0, 3.0)
    assert grown["verdict"]["rss_growth_under_5pct"] is False


def test_offline_check_counts_missing_and_duplicated_rows(
    offline: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import headrace.batch.results as results

    reference = np.arange(6, dtype=np.float32).reshape(6, 1)
    shard = results.ShardResult(-1, np.array([0, 1, 2, 2, 4, 5]), {"OUTPUT0": reference})
    monkeypatch.setattr(results, "load_results", lambda out: shard)
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": [{"files": ["a.parquet"]}]}))
    (tmp_path / "a.parquet").write_bytes(b"")
    (tmp_path / "a.parquet.tmp").write_bytes(b"")
    verdict = offline.check(str(tmp_path), 6, reference)
    assert verdict["missing"] == 1 and verdict["duplicates"] == 1
    assert verdict["stray_files"] == ["a.parquet.tmp"] and not verdict["ok"]


def test_offline_phase_reads_the_manifest(offline: ModuleType, tmp_path: Path) -> None:
    assert offline.phase(str(tmp_path)) == ("start-up", 0)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"shards": [], "complete": False}))
    assert offline.phase(str(tmp_path)) == ("before first shard", 0)
    manifest.write_text(json.dumps({"shards": [{}, {}], "complete": False}))
    assert offline.phase(str(tmp_path)) == ("mid-job", 2)
    manifest.write_text(json.dumps({"shards": [{}, {}], "complete": True}))
    assert offline.phase(str(tmp_path)) == ("complete", 2)
