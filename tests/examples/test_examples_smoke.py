"""Each example's tiny mode end to end: build data and model, ``headrace run``, self-check.

The examples are scripts, not a package: each test puts its folder on ``sys.path`` and imports
the script's module, then calls ``run(parse_args([...]))`` and checks the returned result.
Only the local runner is used here; the Ray variant is marked ``ray``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# One torch thread: the models are tiny, and spinning thread pools only slow a shared machine.
THREADS = ["--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _load(monkeypatch: pytest.MonkeyPatch, folder: str, module: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES / folder))
    sys.modules.pop(module, None)
    return importlib.import_module(module)


def test_image_classifier_tiny_classifies_every_held_out_image(tmp_path, monkeypatch):
    classify = _load(monkeypatch, "image_classifier", "classify")
    result = classify.run(classify.parse_args(["--tiny", *THREADS, "--workdir", str(tmp_path)]))
    assert result.model == "classifier"
    assert result.rows == 4 * 2  # 4 classes, 20% of 10 images each held out
    assert result.accuracy is not None and 0.0 <= result.accuracy <= 1.0
    assert result.max_rel_diff < 1e-5  # headrace's logits are the torch module's


def test_image_classifier_resnet50_tiny_reports_throughput(tmp_path, monkeypatch):
    classify = _load(monkeypatch, "image_classifier", "classify")
    args = classify.parse_args(
        ["--tiny", *THREADS, "--model", "resnet50", "--workdir", str(tmp_path)]
    )
    result = classify.run(args)
    assert (result.model, result.rows, result.accuracy) == ("resnet50", 8, None)
    assert result.rows_per_second > 0
    assert result.max_rel_diff < 1e-5


def test_ddpm_tiny_is_deterministic_per_seed_and_resumes(tmp_path, monkeypatch):
    sample = _load(monkeypatch, "ddpm", "sample")
    result = sample.run(sample.parse_args(["--tiny", *THREADS, "--workdir", str(tmp_path)]))
    assert result.rows == 8
    assert result.max_pixel_diff <= 1
    from PIL import Image

    with Image.open(result.grid) as grid:
        assert grid.size == (8 * 17 * 4, 17 * 4)  # 8 tiles of 16 px + 1 px gap, scaled x4
    pngs = sorted(os.listdir(tmp_path / "samples" / "image"))
    assert pngs == [f"{i:08d}.png" for i in range(8)]
    # The same command again (without --overwrite) finds every shard done: nothing recomputed.
    again = sample.headrace_run(
        [
            "run", str(tmp_path / "models" / "ddpm"), "seeds:0:8", "--out",
            str(tmp_path / "samples"), "--format", "images", "--value-range=-1,1",
            "--batch-size", "16", "--shard-size", "32", "--quiet",
        ]
    )  # fmt: skip
    assert (again.rows, again.shards_written) == (0, 0) and again.shards_skipped >= 1


def test_mlp_parquet_tiny_matches_torch(tmp_path, monkeypatch):
    example = _load(monkeypatch, "mlp_parquet", "mlp_parquet")
    result = example.run(example.parse_args(["--tiny", *THREADS, "--workdir", str(tmp_path)]))
    assert result.rows == 5000
    assert result.checked_rows == 8 * 128
    assert result.max_abs_diff < 1e-5
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "features.parquet").metadata.num_rows == 5000


def test_streaming_cleaner_tiny_streams_live_and_offline(tmp_path, monkeypatch):
    example = _load(monkeypatch, "streaming_cleaner", "streaming_cleaner")
    common = ["--tiny", *THREADS, "--workdir", str(tmp_path)]
    live = example.run(example.parse_args(common))  # 2 streams, 20 updates/s, gRPC streaming
    assert (live.mode, live.protocol, live.errors) == ("live", "grpc", 0)
    assert live.answered >= 2 * 20  # 1.5 s at 20 updates/s per stream, bounded by the deadline
    assert live.checked == 8 and live.max_abs_diff < 1e-4  # the torch modules' answers
    assert live.p50_ms > 0 and live.updates_per_second > 0
    offline = example.run(example.parse_args([*common, "--offline", "--protocol", "http"]))
    assert (offline.mode, offline.answered, offline.errors) == ("offline", 2 * 12, 0)
    assert offline.max_abs_diff < 1e-4
    probabilities = np.load(tmp_path / "probabilities.npy")
    assert probabilities.shape == (2, 12) and np.isfinite(probabilities).all()
    import json

    assert json.loads(offline.json_path.read_text())["load"]["answered"] == 24


def test_examples_tiny_env_switch(monkeypatch):
    example = _load(monkeypatch, "mlp_parquet", "mlp_parquet")
    monkeypatch.setenv("HEADRACE_EXAMPLE_TINY", "1")
    assert example.parse_args([]).rows == 5000
    monkeypatch.delenv("HEADRACE_EXAMPLE_TINY")
    assert example.parse_args([]).rows == 1_000_000


@pytest.mark.ray
def test_ddpm_tiny_on_ray_actors(tmp_path, monkeypatch):
    sample = _load(monkeypatch, "ddpm", "sample")
    args = ["--tiny", *THREADS, "--ray", "--instances", "2", "--num-gpus", "0"]
    args += ["--batch-size", "2", "--workdir", str(tmp_path)]  # 2 shards of 4 seeds: both actors
    result = sample.run(sample.parse_args(args))
    assert result.rows == 8
    assert result.max_pixel_diff <= 1
    folder = tmp_path / "samples" / "image"
    tiles = np.stack([_png(folder / f"{i:08d}.png") for i in range(8)])
    assert tiles.shape == (8, 16, 16)


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)
