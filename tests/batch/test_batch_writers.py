"""Writers round-trip through the results reader; files and the manifest appear atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest

from headrace.batch.manifest import Fingerprint, Manifest, ShardRecord
from headrace.batch.results import load_results
from headrace.batch.writers import ShardResult, make_writer, to_uint8_images
from headrace.errors import InvalidInput
from headrace.files import atomic_write

FP = Fingerprint.of(model="m", input="i", options="o")


def _shard(index: int, rows: range) -> ShardResult:
    ids = np.arange(rows.start, rows.stop, dtype=np.int64)
    return ShardResult(
        index,
        ids,
        {
            "score": ids.astype(np.float32) / 2,
            "image": np.arange(len(ids) * 12, dtype=np.float32).reshape(len(ids), 3, 2, 2),
        },
    )


@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_shards_round_trip_with_row_ids_and_row_shapes(tmp_path, fmt: str) -> None:
    manifest = Manifest.open(str(tmp_path), FP, num_rows=9, shard_size=5, format=fmt)
    writer = make_writer(fmt, str(tmp_path))
    for shard in (_shard(1, range(5, 9)), _shard(0, range(0, 5))):
        files = writer.write(shard)
        assert all(os.path.exists(tmp_path / f) for f in files)
        start, stop = manifest.shard_range(shard.index)
        manifest.record(ShardRecord(shard.index, start, stop, files))
    result = load_results(str(tmp_path))
    assert np.array_equal(result.row_ids, np.arange(9))
    expected = [_shard(0, range(0, 5)), _shard(1, range(5, 9))]
    for name in ("score", "image"):
        assert np.array_equal(
            result.outputs[name], np.concatenate([s.outputs[name] for s in expected])
        )
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert Manifest.load(str(tmp_path)).complete()  # type: ignore[union-attr]


def test_image_writer_writes_a_png_per_row(tmp_path) -> None:
    image = pytest.importorskip("PIL.Image")
    values = np.linspace(-1, 1, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # N C H W
    files = make_writer("images", str(tmp_path), (-1.0, 1.0)).write(
        ShardResult(0, np.array([7, 8]), {"sample": values})
    )
    assert files == [os.path.join("sample", "00000007.png"), os.path.join("sample", "00000008.png")]
    with image.open(tmp_path / files[1]) as opened:
        back = np.asarray(opened)
    assert back.shape == (4, 5, 3)
    assert np.array_equal(back, to_uint8_images(values, "sample", (-1.0, 1.0))[1])
    with pytest.raises(InvalidInput, match="not an image"):
        to_uint8_images(np.zeros((2, 7)), "logits", (0.0, 1.0))


def test_atomic_write_leaves_nothing_when_the_write_fails(tmp_path) -> None:
    target = tmp_path / "out.bin"

    def broken(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(str(target), broken)
    assert os.listdir(tmp_path) == []


def test_a_different_job_is_refused_unless_overwrite(tmp_path) -> None:
    manifest = Manifest.open(str(tmp_path), FP, num_rows=4, shard_size=2, format="npy")
    files = make_writer("npy", str(tmp_path)).write(_shard(0, range(0, 2)))
    manifest.record(ShardRecord(0, 0, 2, files))
    again = Manifest.open(str(tmp_path), FP, num_rows=4, shard_size=2, format="npy")
    assert again.pending() == [1]
    changed = Fingerprint.of(model="m2", input="i", options="o")
    with pytest.raises(InvalidInput, match="changed: model"):
        Manifest.open(str(tmp_path), changed, num_rows=4, shard_size=2, format="npy")
    with pytest.raises(InvalidInput, match="changed: options"):
        Manifest.open(str(tmp_path), FP, num_rows=4, shard_size=3, format="npy")
    fresh = Manifest.open(
        str(tmp_path), changed, num_rows=4, shard_size=2, format="npy", overwrite=True
    )
    assert fresh.pending() == [0, 1]
    assert not (tmp_path / files[0]).exists()
