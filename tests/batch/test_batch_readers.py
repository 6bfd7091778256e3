"""Every reader round-trips: rows read by range equal the source, row ids are positions."""

from __future__ import annotations

import numpy as np
import pytest

from headrace.batch.dataset import DataSpec
from headrace.batch.readers import SeedReader, open_reader
from headrace.errors import InvalidInput


def _read_all(spec: DataSpec, step: int = 7) -> dict[str, np.ndarray]:
    reader = open_reader(spec)
    try:
        batches = list(reader.iter_batches(0, reader.num_rows, step))
    finally:
        reader.close()
    ids = np.concatenate([b.row_ids for b in batches])
    assert np.array_equal(ids, np.arange(reader.num_rows))
    return {name: np.concatenate([b.columns[name] for b in batches]) for name in batches[0].columns}


def test_npy_is_memory_mapped_and_named_after_the_file(tmp_path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "feats.npy", data)
    reader = open_reader(DataSpec(str(tmp_path / "feats.npy")))
    assert isinstance(reader.columns["feats"], np.memmap)  # type: ignore[attr-defined]
    assert np.array_equal(_read_all(DataSpec(str(tmp_path / "feats.npy")))["feats"], data)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_members_stored_or_compressed(tmp_path, save) -> None:
    a = np.arange(100, dtype=np.int64)
    b = np.random.default_rng(1).standard_normal((100, 4, 2))
    save(tmp_path / "d.npz", a=a, b=b)
    got = _read_all(DataSpec(str(tmp_path / "d.npz")), step=9)
    assert np.array_equal(got["a"], a) and np.array_equal(got["b"], b)
    only = _read_all(DataSpec(str(tmp_path / "d.npz"), columns=("b",)))
    assert list(only) == ["b"]
    reader = open_reader(DataSpec(str(tmp_path / "d.npz")))
    assert np.array_equal(reader.read(50, 60).columns["b"], b[50:60])  # a backward seek
    assert np.array_equal(reader.read(10, 12).columns["b"], b[10:12])


def test_parquet_across_row_groups_files_and_list_columns(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.random.default_rng(2).standard_normal((50, 8)).astype(np.float32)
    ids = np.arange(50)
    folder = tmp_path / "pq"
    folder.mkdir()
    for part, rows in enumerate((slice(0, 30), slice(30, 50))):
        table = pa.table(
            {
                "id": pa.array(ids[rows]),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].reshape(-1)), 8),
                "ragged": pa.array([[1.0]] * len(ids[rows])),
            }
        )
        pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=7)
    got = _read_all(DataSpec(str(folder), columns=("id", "x")), step=11)
    assert list(got) == ["id", "x"]
    assert np.array_equal(got["id"], ids) and np.array_equal(got["x"], x)
    single = _read_all(DataSpec(str(folder / "part-0.parquet")))
    assert np.array_equal(single["x"], x[:30])
    with pytest.raises(InvalidInput, match="no columns"):
        open_reader(DataSpec(str(folder), columns=("nope",)))


@pytest.mark.parametrize("batch_size", [1, 3, 7, 10, 64])
def test_parquet_batches_decode_each_row_group_once(tmp_path, monkeypatch, batch_size) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=10)
    decoded: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    reader = open_reader(DataSpec(str(tmp_path / "d.parquet")))
    batches = list(reader.iter_batches(5, 95, batch_size))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert np.array_equal(np.concatenate([b.row_ids for b in batches]), np.arange(5, 95))
    assert np.array_equal(np.concatenate([b.columns["x"] for b in batches]), x[5:95])
    assert sorted(decoded) == list(range(10))  # every group touched, each decoded once
    assert len(reader.read(20, 20)) == 0


def test_hdf5_group_and_column_selection(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    x = np.random.default_rng(3).standard_normal((40, 5))
    y = np.arange(40)
    with h5py.File(tmp_path / "exp.h5", "w") as f:
        f.create_dataset("run1/x", data=x)
        f.create_dataset("run1/y", data=y)
        f.create_dataset("top", data=y)
    got = _read_all(DataSpec(f"{tmp_path / 'exp.h5'}:/run1"))
    assert np.array_equal(got["x"], x) and np.array_equal(got["y"], y)
    assert list(_read_all(DataSpec(f"{tmp_path / 'exp.h5'}:/run1", columns=("y",)))) == ["y"]
    assert list(_read_all(DataSpec(str(tmp_path / "exp.h5")))) == ["top"]
    with pytest.raises(InvalidInput, match="no group"):
        open_reader(DataSpec(f"{tmp_path / 'exp.h5'}:/missing"))


def test_image_folder_labels_and_resize(tmp_path) -> None:
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(4)
    pixels = {}
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
            image.fromarray(array).save(tmp_path / "imgs" / label / f"{i}.png")
            pixels[f"{label}/{i}.png"] = array
    got = _read_all(DataSpec(str(tmp_path / "imgs"), decode_threads=2), step=4)
    assert np.array_equal(got["label"], [0, 0, 0, 1, 1, 1])
    assert np.array_equal(got["image"], np.stack([pixels[k] for k in sorted(pixels)]))
    resized = _read_all(DataSpec(str(tmp_path / "imgs"), image_size=(4, 8)))
    assert resized["image"].shape == (6, 4, 8, 3)


def test_seeds_and_bad_sources(tmp_path) -> None:
    got = _read_all(DataSpec("seeds:10:25"))
    assert np.array_equal(got["seed"], np.arange(10, 25))
    assert SeedReader.parse("seeds:5").num_rows == 5
    with pytest.raises(InvalidInput, match="seeds:START:STOP"):
        open_reader(DataSpec("seeds:a:b"))
    with pytest.raises(InvalidInput, match="cannot read"):
        open_reader(DataSpec(str(tmp_path / "nothing.csv")))
    with pytest.raises(InvalidInput, match="outside"):
        open_reader(DataSpec("seeds:3")).read(0, 4)
